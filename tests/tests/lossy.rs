//! A lossy link: a UDP proxy on loopback between the devices and the relay drops 10 % of
//! packets each way and delays (so reorders) a fifth of the rest; every device still
//! converges.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rapport_core::model::PartnerEdit;
use rapport_core::sync;
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};
use rapport_wire::frames::Role;
use tokio::net::UdpSocket;

const DROP: f64 = 0.10;
const DELAY: f64 = 0.20;

/// Sends `data` to `to` through `socket`, maybe never, maybe late.
fn forward(rng: &mut StdRng, socket: Arc<UdpSocket>, data: Vec<u8>, to: SocketAddr) {
    if rng.random_bool(DROP) {
        return;
    }
    let delay = if rng.random_bool(DELAY) {
        Duration::from_millis(rng.random_range(5..40))
    } else {
        Duration::ZERO
    };
    tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let _ = socket.send_to(&data, to).await;
    });
}

/// A lossy proxy in front of `relay`; returns its address.
async fn lossy_proxy(relay: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(42);
        let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let upstream = match upstreams.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    upstreams.insert(client, upstream.clone());
                    // Relay to client, through the same lossy rules.
                    let (back, front) = (upstream.clone(), front.clone());
                    let seed = rng.random();
                    tokio::spawn(async move {
                        let mut rng = StdRng::seed_from_u64(seed);
                        let mut buf = vec![0u8; 65_536];
                        while let Ok((n, _)) = back.recv_from(&mut buf).await {
                            forward(&mut rng, front.clone(), buf[..n].to_vec(), client);
                        }
                    });
                    upstream
                }
            };
            forward(&mut rng, upstream, buf[..n].to_vec(), relay);
        }
    });
    (addr, task)
}

async fn retry<T>(what: &str, mut f: impl AsyncFnMut() -> rapport_core::Result<T>) -> T {
    // QUIC retransmits lost packets; a whole request only fails when a handshake or an
    // idle timeout gives up, and then the device simply tries again.
    for attempt in 0..10 {
        match f().await {
            Ok(value) => return value,
            Err(e) if attempt < 9 => eprintln!("{what}: {e}; retrying"),
            Err(e) => panic!("{what} kept failing: {e}"),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_over_a_lossy_reordering_link() {
    let relay_dir = tempfile::tempdir().unwrap();
    let data = DataDir::init(relay_dir.path(), "127.0.0.1:1").unwrap();
    let store = data.store().unwrap();
    let relay = Relay::bind(
        store.clone(),
        &data.identity,
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        },
    )
    .unwrap();
    let (proxy, proxy_task) = lossy_proxy(relay.local_addr().unwrap()).await;
    data.set_public_addr(&proxy.to_string()).unwrap();
    let setup = data.new_setup_code(&store).unwrap().encode();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let homes: Vec<Home> = dirs.iter().map(|d| Home::open(d.path()).unwrap()).collect();
    homes[0].create_practice("Lossy Practice", "A").unwrap();
    let shared = rapport_tests::practice::add_partner(&homes[0], PartnerKind::Therapist, "Shared");
    retry("connect", async || {
        sync::connect_practice(&homes[0], &setup).await
    })
    .await;
    for (i, joiner) in homes.iter().enumerate().skip(1) {
        let invite = retry("invite", async || {
            sync::create_invite(&homes[0], Role::Member, 3600).await
        })
        .await;
        retry("join", async || {
            sync::join(joiner, &invite, &format!("Member {i}"))
                .await
                .map(drop)
        })
        .await;
    }
    for round in 0..3 {
        for (i, home) in homes.iter().enumerate() {
            home.edit_partner(
                &shared.id,
                PartnerEdit {
                    city: Some(format!("City {round}-{i}")),
                    ..Default::default()
                },
            )
            .unwrap();
            rapport_tests::practice::add_partner(
                home,
                PartnerKind::Other,
                &format!("From {i} in round {round}"),
            );
            retry("sync", async || sync::sync_now(home).await.map(drop)).await;
        }
    }
    for _ in 0..2 {
        for home in &homes {
            retry("sync", async || sync::sync_now(home).await.map(drop)).await;
        }
    }
    let heads = homes[0].heads(SpaceKind::Practice).unwrap();
    for home in &homes {
        assert_eq!(home.heads(SpaceKind::Practice).unwrap(), heads);
        assert_eq!(home.partner_count().unwrap(), 10);
        let practice = |h: &Home| {
            h.read_model_dump()
                .unwrap()
                .into_iter()
                .filter(|l| !l.starts_with("notes:"))
                .collect::<Vec<_>>()
        };
        assert_eq!(practice(home), practice(&homes[0]), "identical read models");
    }
    let _ = stop.send(());
    serving.await.unwrap();
    proxy_task.abort();
}
