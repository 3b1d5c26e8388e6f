//! `rapport-bench relay`: push throughput from 100 concurrent devices, pull latency, the
//! relay's memory while holding 1,000 idle connections, its memory while strangers announce
//! huge frames on 100 streams, and how long a member takes to connect and sync while 5,000
//! unvalidated Initials arrive from other addresses (against the same without the flood).
//! The relay runs in its own process (this binary in `serve-relay` mode) on loopback.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};
use rapport_tests::raw::RawDevice;
use rapport_wire::frames::{Request, Response, Role};
use rapport_wire::identity::Identity;
use serde_json::json;

const DEVICES: usize = 100;
const PUSHES_PER_DEVICE: usize = 50;
const IDLE_CONNECTIONS: usize = 1_000;
/// Loopback addresses the idle connections come from (the relay allows 256 per address,
/// and a thousand devices do not share one).
const IDLE_SOURCES: u8 = 8;
const HOSTILE_STREAMS: usize = 100;
const FLOOD_INITIALS: usize = 5_000;

/// Runs the relay of `dir` on `listen` (a free loopback port by default) and prints its
/// address; used by the benchmark and by tests that kill the relay.
pub fn serve(dir: &Path, listen: &str) -> Result<()> {
    let data = DataDir::open(dir)?;
    let store = data.store()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let config = Config {
            listen: listen.parse()?,
            rate_per_sec: 10_000.0,
            burst: 10_000.0,
            ..Config::default()
        };
        let relay = Relay::bind(store, &data.identity, config)?;
        println!("{}", relay.local_addr()?);
        // Serve until stdin closes (the bench ends).
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        });
        relay
            .run(async {
                let _ = stdin_closed.await;
            })
            .await;
        anyhow::Ok(())
    })
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// A relay in its own process; it stops when this is dropped (stdin closes).
pub struct RelayProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate fingerprint.
    pub fingerprint: [u8; 32],
    /// A one-time setup token.
    pub setup_token: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Starts a relay process with a fresh data directory.
pub fn start_relay() -> Result<RelayProcess> {
    let dir = tempfile::tempdir()?;
    let data = DataDir::init(dir.path(), "127.0.0.1:0")?;
    let store = data.store()?;
    let setup_token = data.new_setup_code(&store)?.token;
    store.close();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve-relay")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .parse()
        .context("the relay did not print its address")?;
    Ok(RelayProcess {
        child,
        addr,
        fingerprint: data.identity.fingerprint(),
        setup_token,
        _dir: dir,
    })
}

/// Runs the benchmark.
pub fn run() -> Result<()> {
    let relay = start_relay()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let figures = runtime.block_on(measure(&relay));
    drop(relay);
    let Figures {
        pushes_per_sec,
        pull_p50_ms,
        idle_connections,
        rss_mb,
        baseline_rss_mb,
        hostile_streams_rss_mb,
        member_connect_ms,
        flood_member_connect_ms,
    } = figures?;
    println!("\n{:<24} {:>12}  target", "figure", "value");
    println!(
        "{:<24} {:>12.0}  ≥ 2,000 (1 KiB blobs, {DEVICES} concurrent devices)",
        "pushes_per_sec", pushes_per_sec
    );
    println!("{:<24} {:>12.3}", "pull_p50_ms", pull_p50_ms);
    println!("{:<24} {:>12}", "idle_connections", idle_connections);
    println!(
        "{:<24} {:>12.1}  ≤ 200 MB with 1,000 idle connections",
        "rss_mb", rss_mb
    );
    println!(
        "{:<24} {:>12.1}  (the relay before any connection)",
        "baseline_rss_mb", baseline_rss_mb
    );
    println!(
        "{:<24} {:>12.1}  ≤ 200 MB ({HOSTILE_STREAMS} stranger streams announcing 32 MiB frames)",
        "hostile_streams_rss_mb", hostile_streams_rss_mb
    );
    println!(
        "{:<24} {:>12.1}  (connect, Hello, pull 100 entries; median of 5, no flood)",
        "member_connect_ms", member_connect_ms
    );
    println!(
        "{:<24} {:>12.1}  ≤ 2,000 ({FLOOD_INITIALS} unvalidated Initials from 200 other addresses; {:.1}× the same without)",
        "flood_member_connect_ms",
        flood_member_connect_ms,
        flood_member_connect_ms / member_connect_ms.max(0.001)
    );
    let out = super::bench_dir();
    std::fs::create_dir_all(&out)?;
    let figures = json!({
        "pushes_per_sec": pushes_per_sec,
        "pull_p50_ms": pull_p50_ms,
        "idle_connections": idle_connections,
        "rss_mb": rss_mb,
        "baseline_rss_mb": baseline_rss_mb,
        "hostile_streams_rss_mb": hostile_streams_rss_mb,
        "member_connect_ms": member_connect_ms,
        "flood_member_connect_ms": flood_member_connect_ms,
    });
    std::fs::write(
        out.join("relay.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("\nwrote {}", out.join("relay.json").display());
    Ok(())
}

struct Figures {
    pushes_per_sec: f64,
    pull_p50_ms: f64,
    idle_connections: usize,
    rss_mb: f64,
    baseline_rss_mb: f64,
    hostile_streams_rss_mb: f64,
    member_connect_ms: f64,
    flood_member_connect_ms: f64,
}

async fn measure(relay: &RelayProcess) -> Result<Figures> {
    let pid = relay.child.id();
    let baseline_rss_mb = rss_mb(pid)?;
    let owner = RawDevice::connect(relay.addr, relay.fingerprint).await?;
    let space = owner.register(relay.setup_token.clone()).await?;

    // 100 devices join the space, each with an invite in its membership log.
    let mut devices = Vec::with_capacity(DEVICES);
    for _ in 0..DEVICES {
        let secret = owner.invite(space, Role::Member).await?;
        let device = RawDevice::connect(relay.addr, relay.fingerprint).await?;
        device.admit(space, &secret).await?;
        devices.push(Arc::new(device.client));
    }

    // Pushes: every device pushes 1 KiB blobs as fast as acknowledgements come back.
    let blob = vec![0x5a; 1024];
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (d, client) in devices.iter().enumerate() {
        let client = client.clone();
        let blob = blob.clone();
        tasks.spawn(async move {
            for i in 0..PUSHES_PER_DEVICE {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(d as u64).to_be_bytes());
                id[8..].copy_from_slice(&(i as u64).to_be_bytes());
                client
                    .request(&Request::Push {
                        space,
                        epoch: 1,
                        client_msg_id: id,
                        blob: blob.clone(),
                    })
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let pushes_per_sec = (DEVICES * PUSHES_PER_DEVICE) as f64 / started.elapsed().as_secs_f64();

    // Pulls of 100 entries from spread-out cursors.
    let total = (DEVICES * PUSHES_PER_DEVICE) as u64;
    let mut pulls = Vec::new();
    for i in 0..200u64 {
        let after = (i * 7_919) % (total - 100);
        let start = Instant::now();
        let response = devices[0]
            .request(&Request::Pull {
                space,
                after,
                limit: 100,
            })
            .await?;
        pulls.push(start.elapsed().as_secs_f64() * 1_000.0);
        if !matches!(response, Response::Entries { ref entries, .. } if entries.len() == 100) {
            bail!("a pull returned the wrong entries");
        }
    }
    let pull_p50_ms = super::percentile(&mut pulls, 0.5);
    drop(devices);

    // 1,000 idle connections, each a distinct device, from a few client endpoints.
    let mut endpoints = Vec::new();
    for i in 0..IDLE_SOURCES {
        endpoints.push(quinn::Endpoint::client(SocketAddr::from((
            [127, 0, 0, 2 + i],
            0,
        )))?);
    }
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let identity = Identity::generate("idle")?;
        let config = rapport_wire::tls::client_config(&identity, relay.fingerprint)?;
        let connection = endpoints[i % endpoints.len()]
            .connect_with(config, relay.addr, "rapport-relay")?
            .await?;
        idle.push(connection);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = idle.iter().filter(|c| c.close_reason().is_none()).count();
    let rss = rss_mb(pid)?;
    for connection in &idle {
        connection.close(0u32.into(), b"done");
    }
    for endpoint in &endpoints {
        endpoint.wait_idle().await;
    }
    drop(idle);

    let hostile_streams_rss_mb = hostile_streams(relay).await?;

    // A member connects and syncs: alone, then while a flood of Initials arrives.
    let mut alone = Vec::new();
    for _ in 0..5 {
        alone.push(member_round(relay, &owner.identity, space).await?);
    }
    let member_connect_ms = super::percentile(&mut alone, 0.5);
    let packets = rapport_tests::flood::initials(relay.addr, relay.fingerprint, FLOOD_INITIALS)?;
    let target = relay.addr;
    let flood =
        tokio::spawn(
            async move { rapport_tests::flood::send_from_many(target, &packets, 200).await },
        );
    let flood_member_connect_ms = member_round(relay, &owner.identity, space).await?;
    let _sources = flood.await??;
    Ok(Figures {
        pushes_per_sec,
        pull_p50_ms,
        idle_connections: open,
        rss_mb: rss,
        baseline_rss_mb,
        hostile_streams_rss_mb,
        member_connect_ms,
        flood_member_connect_ms,
    })
}

/// Milliseconds for a member to connect, say Hello and pull 100 entries.
async fn member_round(
    relay: &RelayProcess,
    identity: &Identity,
    space: rapport_wire::SpaceId,
) -> Result<f64> {
    let started = Instant::now();
    let client =
        rapport_wire::client::RelayClient::connect(relay.addr, identity, relay.fingerprint).await?;
    let response = client
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 100,
        })
        .await?;
    let ms = started.elapsed().as_secs_f64() * 1_000.0;
    if !matches!(response, Response::Entries { ref entries, .. } if entries.len() == 100) {
        bail!("the member's pull returned the wrong entries");
    }
    client.close().await;
    Ok(ms)
}

/// The relay's RSS while strangers (connected, Hello said, members of nothing) hold 100
/// streams that each announce a 32 MiB snapshot frame and send a megabyte of it.
async fn hostile_streams(relay: &RelayProcess) -> Result<f64> {
    let per_connection = 25;
    let mut strangers = Vec::new();
    for _ in 0..HOSTILE_STREAMS.div_ceil(per_connection) {
        let identity = Identity::generate("stranger")?;
        strangers.push(
            rapport_wire::client::RelayClient::connect(relay.addr, &identity, relay.fingerprint)
                .await?,
        );
    }
    let mut streams = Vec::new();
    let chunk = vec![0u8; 64 * 1024];
    for i in 0..HOSTILE_STREAMS {
        let connection = strangers[i / per_connection].connection();
        let (mut send, recv) = connection.open_bi().await?;
        let announced = u32::try_from(rapport_wire::frames::MAX_FRAME)?;
        send.write_all(&announced.to_be_bytes()).await?;
        // The body of a PutSnapshot starts with its kind.
        send.write_all(&[9]).await?;
        let send_some = async {
            for _ in 0..16 {
                if send.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        };
        // A relay that stops reading leaves the rest blocked on flow control.
        let _ = tokio::time::timeout(Duration::from_millis(200), send_some).await;
        streams.push((send, recv));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_mb(relay.child.id())?;
    drop(streams);
    for stranger in strangers {
        stranger.close().await;
    }
    Ok(rss)
}
