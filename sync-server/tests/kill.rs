//! kill -9 right after an acknowledged push loses nothing: the real `rapport-relay`
//! binary in a child process, killed with SIGKILL, restarted on the same data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rapport_relay::data::DataDir;
use rapport_wire::SpaceId;
use rapport_wire::client::RelayClient;
use rapport_wire::codes::SetupCode;
use rapport_wire::frames::{Request, Response};
use rapport_wire::identity::Identity;
use rapport_wire::membership::SpaceKind;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(dir: &Path, addr: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rapport-relay"))
        .args(["serve", "--data"])
        .arg(dir)
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn connect(addr: SocketAddr, identity: &Identity, fingerprint: [u8; 32]) -> RelayClient {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match RelayClient::connect(addr, identity, fingerprint).await {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("the relay did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn an_acknowledged_push_survives_kill_9() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let init = Command::new(env!("CARGO_BIN_EXE_rapport-relay"))
        .args(["init", "--data"])
        .arg(dir)
        .args(["--public-addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(init.status.success());
    let code = String::from_utf8(init.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("RAPPORT-SETUP-"))
        .unwrap()
        .to_string();
    let setup = SetupCode::decode(&code).unwrap();
    assert_eq!(
        setup.fingerprint,
        DataDir::open(dir).unwrap().identity.fingerprint()
    );

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let identity = Identity::generate("device").unwrap();
    let space = SpaceId::random();
    let mut acked = 0u64;
    for round in 0..5u8 {
        let mut child = serve(dir, addr);
        let client = connect(addr, &identity, setup.fingerprint).await;
        if round == 0 {
            client
                .request(&Request::Register {
                    setup_token: setup.token.clone(),
                    genesis: common::genesis(&identity, space, SpaceKind::Practice),
                })
                .await
                .unwrap();
        }
        // Everything acknowledged before this round's kill is still there.
        let Response::Entries { head, .. } = client
            .request(&Request::Pull {
                space,
                after: 0,
                limit: 1,
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            head, acked,
            "round {round}: the log lost acknowledged entries"
        );
        for i in 0..20u8 {
            let id = [round, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let Response::Pushed { seq, .. } = client
                .request(&Request::Push {
                    space,
                    epoch: 1,
                    client_msg_id: id,
                    blob: vec![i; 256],
                })
                .await
                .unwrap()
            else {
                panic!()
            };
            acked = seq;
        }
        // SIGKILL right after the last acknowledgement.
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut child = serve(dir, addr);
    let client = connect(addr, &identity, setup.fingerprint).await;
    let Response::Entries { head, entries, .. } = client
        .request(&Request::Pull {
            space,
            after: acked - 3,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(head, acked);
    assert_eq!(entries.last().unwrap().blob, vec![19; 256]);
    let stats = Command::new(env!("CARGO_BIN_EXE_rapport-relay"))
        .args(["stats", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8(stats.stdout)
            .unwrap()
            .contains(&format!("entries {acked}"))
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let data = DataDir::init(dir, "127.0.0.1:1").unwrap();
    let fingerprint = data.identity.fingerprint();
    data.store().unwrap().close();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = serve(dir, addr);
    let identity = Identity::generate("device").unwrap();
    let client = connect(addr, &identity, fingerprint).await;
    let connection = client.connection().clone();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reason = tokio::time::timeout(Duration::from_secs(15), connection.closed())
        .await
        .unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                rapport_wire::frames::CLOSE_SHUTDOWN.into()
            )
        }
        other => panic!("closed for another reason: {other}"),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "a graceful shutdown exits 0: {exit:?}");
}
