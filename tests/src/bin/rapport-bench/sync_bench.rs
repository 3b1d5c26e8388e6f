//! `rapport-bench sync`: how long an edit takes to reach ten other devices through the
//! relay, how long a new device takes to join the large practice, and the bytes on the
//! wire per edit.

use std::collections::HashSet;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rapport_core::model::{NewPartner, NewTouchpoint};
use rapport_core::sync;
use rapport_core::sync::service::SyncService;
use rapport_core::vocab::{PartnerKind, TouchpointKind};
use rapport_core::{ChangeEvent, Home, Origin, SpaceKind};
use rapport_wire::codes::SetupCode;
use rapport_wire::frames::Role;
use serde_json::json;

use super::relay_bench::{RelayProcess, start_relay};

const OTHERS: usize = 10;
const SAMPLES: usize = 50;

pub(super) fn setup_code(relay: &RelayProcess) -> String {
    SetupCode {
        addr: relay.addr.to_string(),
        fingerprint: relay.fingerprint,
        token: relay.setup_token.clone(),
    }
    .encode()
}

/// Runs every sync figure, or with `--latency-only` just the edit-to-visible ones, or
/// with `--bootstrap-only` just the join (printed, `sync.json` left alone), for quick
/// iteration on one path.
pub fn run(only: Option<&str>) -> Result<()> {
    if let Some(other) =
        only.filter(|o| !["--latency-only", "--bootstrap-only", "--membership-only"].contains(o))
    {
        anyhow::bail!("unknown option {other}; {}", super::USAGE);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    if only == Some("--bootstrap-only") {
        let b = runtime.block_on(bootstrap())?;
        b.print();
        return Ok(());
    }
    if only == Some("--membership-only") {
        runtime.block_on(super::membership_bench::run())?.print();
        return Ok(());
    }
    let (p50, p99, overhead, change_bytes, wire_bytes) = runtime.block_on(latency_and_overhead())?;
    if only == Some("--latency-only") {
        println!("edit_to_visible_p50_ms {p50:.1}  edit_to_visible_p99_ms {p99:.1}");
        return Ok(());
    }
    let b = runtime.block_on(bootstrap())?;
    let m = runtime.block_on(super::membership_bench::run())?;
    println!("\n{:<26} {:>12}  target", "figure", "value");
    println!(
        "{:<26} {:>12.1}  ≤ 20 ms (edit on one device until in the read model of {OTHERS} others)",
        "edit_to_visible_p50_ms", p50
    );
    println!("{:<26} {:>12.1}  ≤ 100 ms", "edit_to_visible_p99_ms", p99);
    println!(
        "{:<26} {:>12.2}  ≤ 1.5 + 200 bytes ({wire_bytes} bytes sent for a {change_bytes}-byte change)",
        "wire_overhead_ratio", overhead
    );
    b.print();
    m.print();
    let out = super::bench_dir();
    std::fs::create_dir_all(&out)?;
    let figures = json!({
        "edit_to_visible_p50_ms": p50,
        "edit_to_visible_p99_ms": p99,
        "bootstrap_ms": b.bootstrap_ms,
        "naive_document_load_ms": b.naive_load_ms,
        "announce_ms": b.announce_ms,
        "invite_ms": b.invite_ms,
        "snapshot_bytes": b.snapshot_bytes,
        "wire_overhead_ratio": overhead,
        "wire_bytes_per_edit": wire_bytes,
        "change_bytes_per_edit": change_bytes,
        "initial_push_s": b.initial_push_s,
        "membership_op_ms": m.removal_ms,
        "membership_round_ms": m.round_ms,
        "log_verify_ms": m.log_verify_ms,
        "log_rules_ms": m.log_rules_ms,
    });
    std::fs::write(
        out.join("sync.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("\nwrote {}", out.join("sync.json").display());
    Ok(())
}

async fn latency_and_overhead() -> Result<(f64, f64, f64, usize, u64)> {
    let relay = start_relay()?;
    let dir = tempfile::tempdir()?;
    let owner = Arc::new(Home::open(dir.path().join("owner"))?);
    owner.create_practice("Bench Practice", "Owner")?;
    sync::connect_practice(&owner, &setup_code(&relay)).await?;
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let home = Arc::new(Home::open(dir.path().join(format!("device-{i}")))?);
        sync::join(
            &home,
            &sync::create_invite(&owner, Role::Member, 3600).await?,
            &format!("Member {i}"),
        )
        .await?;
        others.push(home);
    }
    sync::sync_now(&owner).await?;
    // Every device reports when a remote change lands in its read model.
    let (seen_tx, seen_rx) = mpsc::channel::<(usize, String, Instant)>();
    let mut subscriptions = Vec::new();
    for (i, home) in others.iter().enumerate() {
        let tx = seen_tx.clone();
        subscriptions.push(home.subscribe(Arc::new(move |event: &ChangeEvent| {
            if event.origin == Origin::Remote {
                let at = Instant::now();
                for entity in &event.entities {
                    let _ = tx.send((i, entity.id.clone(), at));
                }
            }
        })));
    }
    let quiet = Arc::new(|_: &rapport_core::sync::engine::SyncStatus| {});
    let mut services: Vec<SyncService> = others
        .iter()
        .map(|h| SyncService::start(h.clone(), quiet.clone()))
        .collect();
    services.push(SyncService::start(owner.clone(), quiet.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut samples = Vec::new();
    for i in 0..(SAMPLES + 5) {
        while seen_rx.try_recv().is_ok() {}
        let start = Instant::now();
        let partner = owner.add_partner(NewPartner {
            kind: Some(PartnerKind::Therapist),
            name: format!("Edit {i}"),
            ..Default::default()
        })?;
        let mut waiting: HashSet<usize> = (0..OTHERS).collect();
        let deadline = start + Duration::from_secs(10);
        let mut last = start;
        while !waiting.is_empty() {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let (device, id, at) = tokio::task::block_in_place(|| seen_rx.recv_timeout(timeout))
                .context("an edit never arrived")?;
            if id == partner.id && waiting.remove(&device) {
                last = last.max(at);
            }
        }
        if i >= 5 {
            samples.push(last.duration_since(start).as_secs_f64() * 1_000.0);
        }
    }
    for service in services {
        service.stop().await;
    }
    drop(subscriptions);
    let p50 = super::percentile(&mut samples, 0.5);
    let p99 = super::percentile(&mut samples, 0.99);

    // Bytes on the wire for one edit: a round with the edit minus an idle round.
    let conn = sync::connect_known(&owner).await?;
    sync::round(&owner, &conn).await?;
    let tx = |c: &rapport_wire::client::RelayClient| c.connection().stats().udp_tx.bytes;
    let before = tx(&conn);
    sync::round(&owner, &conn).await?;
    let idle = tx(&conn) - before;
    let partner = owner
        .partners(&rapport_core::model::PartnerFilter::default())?
        .into_iter()
        .next()
        .context("no partner")?;
    owner.log_touchpoint(NewTouchpoint {
        partner_id: partner.id,
        kind: TouchpointKind::Call,
        at: None,
        outcome: None,
        note: "Caught up about referrals".into(),
        allow_contact_details: false,
        member_id: None,
    })?;
    let change = owner
        .changes_since(
            SpaceKind::Practice,
            &owner.sync_position(SpaceKind::Practice)?.acked_heads,
        )?
        .len();
    let before = tx(&conn);
    sync::round(&owner, &conn).await?;
    let wire = (tx(&conn) - before).saturating_sub(idle);
    conn.close().await;
    let overhead = wire as f64 / change as f64;
    Ok((p50, p99, overhead, change, wire))
}

/// What joining the large practice costs.
struct Bootstrap {
    bootstrap_ms: f64,
    naive_load_ms: f64,
    announce_ms: f64,
    invite_ms: f64,
    initial_push_s: f64,
    document_bytes: usize,
    snapshot_bytes: usize,
}

impl Bootstrap {
    fn print(&self) {
        println!(
            "{:<26} {:>12.0}  ≤ 2,000 ms (join the large practice until its read model is complete)",
            "bootstrap_ms", self.bootstrap_ms
        );
        println!(
            "{:<26} {:>12.0}  baseline: Automerge::load of the same document, same run ({:.1}× slower than the join)",
            "naive_document_load_ms",
            self.naive_load_ms,
            self.naive_load_ms / self.bootstrap_ms
        );
        println!(
            "{:<26} {:>12.0}  (the joiner's first round: loads the document, writes and pushes its member entry)",
            "announce_ms", self.announce_ms
        );
        println!(
            "{:<26} {:>12.0}  (creating the invite, which refreshes the snapshot)",
            "invite_ms", self.invite_ms
        );
        println!(
            "{:<26} {:>12}  (sealed snapshot: document {} bytes and the read model)",
            "snapshot_bytes", self.snapshot_bytes, self.document_bytes
        );
        println!(
            "{:<26} {:>12.1}  (first push of the large practice)",
            "initial_push_s", self.initial_push_s
        );
    }
}

async fn bootstrap() -> Result<Bootstrap> {
    let relay = start_relay()?;
    let (practice_dir, _) = super::large_practice()?;
    let owner = Home::open(practice_dir.path())?;
    let document = owner.export_document(SpaceKind::Practice)?;
    let started = Instant::now();
    let naive = automerge::Automerge::load(&document)?;
    let naive_load_ms = started.elapsed().as_secs_f64() * 1_000.0;
    drop(naive);
    let started = Instant::now();
    sync::connect_practice(&owner, &setup_code(&relay)).await?;
    let initial_push_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let invite = sync::create_invite(&owner, Role::Member, 3600).await?;
    let invite_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let snapshot_bytes = {
        let conn = sync::connect_known(&owner).await?;
        let space = rapport_wire::SpaceId::parse(&owner.space_id(SpaceKind::Practice)?)
            .ok_or_else(|| anyhow::anyhow!("bad space id"))?;
        let size = match conn
            .request(&rapport_wire::frames::Request::GetSnapshot { space })
            .await?
        {
            rapport_wire::frames::Response::Snapshot(Some(s)) => s.blob.len(),
            _ => bail!("the invite left no snapshot on the relay"),
        };
        conn.close().await;
        size
    };
    let dir = tempfile::tempdir()?;
    let joiner = Home::open(dir.path())?;
    let started = Instant::now();
    sync::join(&joiner, &invite, "New Colleague").await?;
    let bootstrap_ms = started.elapsed().as_secs_f64() * 1_000.0;
    if joiner.partner_count()? != owner.partner_count()? {
        bail!("the joined device does not have the whole practice");
    }
    let started = Instant::now();
    sync::sync_now(&joiner).await?;
    let announce_ms = started.elapsed().as_secs_f64() * 1_000.0;
    sync::sync_now(&owner).await?;
    if !owner
        .members()?
        .iter()
        .any(|m| m.display_name == "New Colleague")
    {
        bail!("the practice never heard of the new colleague");
    }
    Ok(Bootstrap {
        bootstrap_ms,
        naive_load_ms,
        announce_ms,
        invite_ms,
        initial_push_s,
        document_bytes: document.len(),
        snapshot_bytes,
    })
}
