//! What a user waits for on the first edit after a cold start: a new process opens the
//! home and makes one durable write (or merges one colleague's change), and its peak RSS.
//! The naive baseline, measured in the same run, loads the whole practice as one
//! Automerge document, makes the same kind of change and writes it durably.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use automerge::transaction::Transactable as _;
use automerge::{ActorId, Automerge, ROOT, ReadDoc as _};
use rapport_core::model::{NewTouchpoint, PartnerFilter};
use rapport_core::vocab::{TouchpointKind, TouchpointOutcome};
use rapport_core::{Home, SpaceKind};

use super::{ms, percentile};

/// The figures, each the median of `RUNS` new processes.
pub struct ColdWrite {
    pub write_ms: f64,
    pub write_rss_mb: f64,
    pub merge_ms: f64,
    pub merge_rss_mb: f64,
    pub naive_write_ms: f64,
    pub naive_write_rss_mb: f64,
}

const RUNS: usize = 7;

/// This process's peak resident set, in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Internal: one touchpoint written from a new process; prints `ms rss_mb`.
pub fn child_write(dir: &Path) -> Result<()> {
    let start = Instant::now();
    let home = Home::open(dir)?;
    let partner = home
        .partners(&PartnerFilter::default())?
        .into_iter()
        .next()
        .context("the practice has no partner")?;
    home.log_touchpoint(NewTouchpoint {
        partner_id: partner.id,
        kind: TouchpointKind::Email,
        at: None,
        outcome: Some(TouchpointOutcome::NoResponse),
        note: String::new(),
        allow_contact_details: false,
        member_id: None,
    })?;
    let elapsed = ms(start);
    println!("{elapsed} {}", peak_rss_mb());
    Ok(())
}

/// Internal: one colleague's change (a file of Automerge bytes) merged from a new
/// process; prints `ms rss_mb`.
pub fn child_merge(dir: &Path, change: &Path) -> Result<()> {
    let bytes = std::fs::read(change)?;
    let start = Instant::now();
    let home = Home::open(dir)?;
    let outcome = home.merge_from_relay(SpaceKind::Practice, &bytes)?;
    let elapsed = ms(start);
    if !outcome.changed {
        bail!("the colleague's change merged as nothing");
    }
    println!("{elapsed} {}", peak_rss_mb());
    Ok(())
}

/// Internal: the naive baseline, from a new process: the whole practice loaded as one
/// document, one change, appended durably; prints `ms rss_mb`.
pub fn child_naive(document: &Path) -> Result<()> {
    let start = Instant::now();
    let bytes = std::fs::read(document)?;
    let mut doc = Automerge::load(&bytes)?;
    let heads = doc.get_heads();
    doc.transact(|tx| {
        let (_, touchpoints) = tx.get(ROOT, "touchpoints")?.context("no touchpoints")?;
        let record = tx.put_object(&touchpoints, "naive-touchpoint", automerge::ObjType::Map)?;
        tx.put(&record, "kind", "email")?;
        tx.put(&record, "outcome", "no_response")?;
        Ok::<_, anyhow::Error>(())
    })
    .map_err(|f| f.error)?;
    let change = doc.save_after(&heads);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(document.with_extension("log"))?;
    file.write_all(&change)?;
    file.sync_all()?;
    let elapsed = ms(start);
    println!("{elapsed} {}", peak_rss_mb());
    Ok(())
}

/// Runs `RUNS` children of `args` and returns the medians of their two figures.
fn children(args: &[&str], per_run: impl Fn(usize) -> Vec<String>) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for run in 0..RUNS {
        let mut command = Command::new(std::env::current_exe()?);
        for arg in args {
            command.arg(arg);
        }
        command.args(per_run(run));
        let out = command.output()?;
        if !out.status.success() {
            bail!(
                "a cold run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(out.stdout)?;
        let mut figures = text.split_whitespace().map(str::parse::<f64>);
        times.push(figures.next().context("no time")??);
        rss.push(figures.next().context("no rss")??);
    }
    Ok((percentile(&mut times, 0.5), percentile(&mut rss, 0.5)))
}

/// Measures the large practice's home in `dir` (left with the writes and merges made).
pub fn measure(dir: &Path) -> Result<ColdWrite> {
    let home_dir = dir.display().to_string();
    let (write_ms, write_rss_mb) = children(&["cold-write", &home_dir], |_| Vec::new())?;

    // Colleagues' changes, one per run, each from its own actor on the same heads.
    let scratch = tempfile::tempdir()?;
    let document = {
        let home = Home::open(dir)?;
        home.export_document(SpaceKind::Practice)?
    };
    let base = Automerge::load(&document)?;
    let partner = {
        let (_, partners) = base.get(ROOT, "partners")?.context("no partners")?;
        base.keys(&partners).next().context("no partner")?
    };
    for run in 0..RUNS {
        let mut doc = base
            .fork()
            .with_actor(ActorId::from([run as u8 + 1; 16].as_slice()));
        let heads = doc.get_heads();
        doc.transact(|tx| {
            let (_, partners) = tx.get(ROOT, "partners")?.context("no partners")?;
            let (_, record) = tx.get(&partners, partner.as_str())?.context("no partner")?;
            tx.put(&record, "city", format!("Bend {run}"))?;
            Ok::<_, anyhow::Error>(())
        })
        .map_err(|f| f.error)?;
        std::fs::write(
            scratch.path().join(format!("change-{run}")),
            doc.save_after(&heads),
        )?;
    }
    drop(base);
    let changes = scratch.path().to_path_buf();
    let (merge_ms, merge_rss_mb) = children(&["cold-merge", &home_dir], |run| {
        vec![changes.join(format!("change-{run}")).display().to_string()]
    })?;

    let whole = scratch.path().join("practice.automerge");
    std::fs::write(&whole, &document)?;
    std::fs::write(whole.with_extension("log"), b"")?;
    drop(document);
    let whole_path = whole.display().to_string();
    let (naive_write_ms, naive_write_rss_mb) =
        children(&["naive-write", &whole_path], |_| Vec::new())?;
    Ok(ColdWrite {
        write_ms,
        write_rss_mb,
        merge_ms,
        merge_rss_mb,
        naive_write_ms,
        naive_write_rss_mb,
    })
}
