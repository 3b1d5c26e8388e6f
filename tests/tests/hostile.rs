//! Devices keep working while the relay is under hostile load: a flood of unvalidated
//! QUIC Initials (spoofed sources that never answer) takes none of the relay's slots.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rapport_core::sync;
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_relay::server::Config;
use rapport_tests::flood;
use rapport_tests::relay::relay_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unvalidated_initials_takes_no_slot_and_members_sync_through_it() {
    // Few slots, a long handshake timeout: without address validation, a few hundred
    // Initials would hold every handshake and connection slot for the whole timeout.
    let relay = relay_with(Config {
        max_connections: 8,
        max_handshakes: 8,
        handshake_timeout: Duration::from_secs(30),
        ..Config::default()
    })
    .await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = Home::open(dirs[0].path()).unwrap();
    owner.create_practice("Practice", "Owner").unwrap();
    sync::connect_practice(&owner, &(relay.setup_code)())
        .await
        .unwrap();

    let packets = flood::initials(relay.addr, relay.fingerprint, 2_000).unwrap();
    let _sources = flood::send_from_many(relay.addr, &packets, 200)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Through the flood a colleague joins, and an edit reaches it.
    let colleague = Home::open(dirs[1].path()).unwrap();
    rapport_tests::practice::join_member(&owner, &colleague, "Colleague").await;
    let partner =
        rapport_tests::practice::add_partner(&owner, PartnerKind::School, "Lincoln Middle School");
    sync::sync_now(&owner).await.unwrap();
    let report = sync::sync_now(&colleague).await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(
        colleague.partner(&partner.id).unwrap().name,
        "Lincoln Middle School"
    );
    assert!(colleague.membership(SpaceKind::Practice).unwrap().is_some());
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}
