//! Background sync: edits propagate without explicit rounds, and devices ride out a relay
//! killed with SIGKILL in the middle of sync.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rapport_core::model::{NewPartner, PartnerEdit};
use rapport_core::sync;
use rapport_core::sync::engine::SyncStatus;
use rapport_core::sync::service::SyncService;
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_relay::data::DataDir;
use rapport_wire::frames::Role;

fn serve(dir: &Path, addr: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport-bench"))
        .arg("serve-relay")
        .arg(dir)
        .arg(addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

fn partner(name: &str) -> NewPartner {
    NewPartner {
        kind: Some(PartnerKind::Therapist),
        name: name.into(),
        ..Default::default()
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_sync_propagates_and_survives_a_relay_killed_mid_sync() {
    let relay_dir = tempfile::tempdir().unwrap();
    let data = DataDir::init(relay_dir.path(), "127.0.0.1:1").unwrap();
    let store = data.store().unwrap();
    let (mut child, addr) = serve(relay_dir.path(), "127.0.0.1:0");
    data.set_public_addr(&addr).unwrap();
    let setup = data.new_setup_code(&store).unwrap().encode();
    store.close();

    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(Home::open(da.path()).unwrap());
    a.create_practice("Live Practice", "A").unwrap();
    sync::connect_practice(&a, &setup).await.unwrap();
    let b = Arc::new(Home::open(db.path()).unwrap());
    sync::join(
        &b,
        &sync::create_invite(&a, Role::Member, 3600).await.unwrap(),
        "B",
    )
    .await
    .unwrap();

    let statuses: Arc<Mutex<Vec<SyncStatus>>> = Arc::default();
    let sink = statuses.clone();
    let service_a = SyncService::start(a.clone(), Arc::new(|_: &SyncStatus| {}));
    let service_b = SyncService::start(
        b.clone(),
        Arc::new(move |s: &SyncStatus| sink.lock().unwrap().push(s.clone())),
    );

    // An edit on A shows up on B by itself.
    let p = a.add_partner(partner("Live Partner")).unwrap();
    eventually("B sees A's partner", || b.partner(&p.id).is_ok()).await;
    assert!(
        statuses
            .lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, SyncStatus::UpToDate { .. }))
    );

    // Kill the relay with SIGKILL while both devices keep editing.
    for i in 0..10 {
        a.edit_partner(
            &p.id,
            PartnerEdit {
                city: Some(format!("A {i}")),
                ..Default::default()
            },
        )
        .unwrap();
        b.add_partner(partner(&format!("B during {i}"))).unwrap();
        if i == 4 {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("B notices the relay is gone", || {
        statuses
            .lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, SyncStatus::Offline { .. } | SyncStatus::Error { .. }))
    })
    .await;
    let offline_edit = a
        .add_partner(partner("Made While The Relay Was Down"))
        .unwrap();
    // Restart the relay on the same address and data; both devices reconnect by themselves.
    let (mut child, again) = serve(relay_dir.path(), &addr);
    assert_eq!(again, addr);
    eventually("both devices converge after the restart", || {
        b.partner(&offline_edit.id).is_ok()
            && a.heads(SpaceKind::Practice).unwrap() == b.heads(SpaceKind::Practice).unwrap()
            && a.partner_count().unwrap() == 12
    })
    .await;
    assert_eq!(a.partner(&p.id).unwrap().city.as_deref(), Some("A 9"));
    assert_eq!(b.partner(&p.id).unwrap().city.as_deref(), Some("A 9"));

    // A graceful restart (stdin closes: the relay finishes in-flight requests and closes
    // its connections) while both keep editing.
    drop(child.stdin.take());
    child.wait().unwrap();
    let during = b
        .add_partner(partner("Made During A Graceful Restart"))
        .unwrap();
    let (mut child, again) = serve(relay_dir.path(), &addr);
    assert_eq!(again, addr);
    eventually("both devices converge after a graceful restart", || {
        a.partner(&during.id).is_ok()
            && a.heads(SpaceKind::Practice).unwrap() == b.heads(SpaceKind::Practice).unwrap()
    })
    .await;

    service_a.stop().await;
    service_b.stop().await;
    assert!(
        matches!(
            statuses.lock().unwrap().last(),
            Some(SyncStatus::Offline { .. })
        ),
        "a stopped service reports offline"
    );
    drop(child.stdin.take());
    child.wait().unwrap();
}
