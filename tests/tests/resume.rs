//! Flows cut off half-way (connection lost, app killed) are finished later: a join cut
//! off after the practice was installed, by joining again with the same invite or by the
//! next sync round; connecting a practice cut off after the relay registered it, by the
//! next sync round; a merge that fails on a full disk, by fetching the entry again. Its own test binary: fail points are process-wide (each test holds
//! `FailScenario`, which runs them one at a time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rapport_core::sync;
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_tests::relay::relay;
use rapport_wire::frames::Role;

const CUT: &str = "join-after-install";

fn members(home: &Home) -> Vec<String> {
    let mut names: Vec<String> = home
        .members()
        .unwrap()
        .into_iter()
        .map(|m| m.display_name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_cut_off_after_its_install_is_finished_by_joining_again_or_by_syncing() {
    let scenario = fail::FailScenario::setup();
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = Home::open(dirs[0].path()).unwrap();
    owner.create_practice("Practice", "Owner").unwrap();
    rapport_tests::practice::add_partner(&owner, PartnerKind::Physician, "Dr. Okafor");
    sync::connect_practice(&owner, &(relay.setup_code)())
        .await
        .unwrap();

    let b = Home::open(dirs[1].path()).unwrap();
    let c = Home::open(dirs[2].path()).unwrap();
    let invite_b = sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    let invite_c = sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    fail::cfg(CUT, "return").unwrap();
    for (joiner, invite, name) in [(&b, &invite_b, "B"), (&c, &invite_c, "C")] {
        let cut = sync::join(joiner, invite, name).await.unwrap_err();
        assert!(cut.to_string().contains("cut off"), "{cut}");
        // The state such a cut leaves: the practice installed, the personal space not
        // registered on the relay and without a key.
        assert!(joiner.identity().unwrap().is_some());
        assert!(
            joiner
                .current_space_key(SpaceKind::Practice)
                .unwrap()
                .is_some()
        );
        assert!(
            joiner
                .current_space_key(SpaceKind::Personal)
                .unwrap()
                .is_none()
        );
    }
    fail::remove(CUT);

    // B joins again with the same invite; C just syncs.
    let identity = sync::join(&b, &invite_b, "B").await.unwrap();
    assert_eq!(identity, b.identity().unwrap().unwrap());
    sync::sync_now(&c).await.unwrap();
    for joiner in [&b, &c] {
        assert!(
            joiner
                .current_space_key(SpaceKind::Personal)
                .unwrap()
                .is_some(),
            "the personal space is registered and keyed"
        );
        sync::sync_now(joiner).await.unwrap();
    }
    sync::sync_now(&owner).await.unwrap();
    for home in [&owner, &b, &c] {
        assert_eq!(members(home), ["B", "C", "Owner"]);
        assert_eq!(home.partners(&Default::default()).unwrap().len(), 1);
    }

    // Their personal spaces sync: a note written on B reaches the relay (a second push
    // has nothing left to send).
    let partner = b.partners(&Default::default()).unwrap().remove(0);
    b.add_note(&partner.id, "prefers email").unwrap();
    assert!(sync::sync_now(&b).await.unwrap().pushed > 0);
    assert_eq!(sync::sync_now(&b).await.unwrap().pushed, 0);

    let _ = relay.stop.send(());
    relay.task.await.unwrap();
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_a_practice_cut_off_after_registering_is_finished_by_syncing() {
    const CONNECT_CUT: &str = "connect-after-register";
    let scenario = fail::FailScenario::setup();
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = Home::open(dirs[0].path()).unwrap();
    owner.create_practice("Practice", "Owner").unwrap();
    let partner =
        rapport_tests::practice::add_partner(&owner, PartnerKind::School, "Lincoln Middle School");
    let setup_code = (relay.setup_code)();
    fail::cfg(CONNECT_CUT, "return").unwrap();
    let cut = sync::connect_practice(&owner, &setup_code)
        .await
        .unwrap_err();
    assert!(cut.to_string().contains("cut off"), "{cut}");
    fail::remove(CONNECT_CUT);
    // The setup code is spent, but the practice already syncs: connecting again says so,
    // and a round registers the personal space.
    assert!(owner.relay().unwrap().is_some());
    assert!(
        owner
            .current_space_key(SpaceKind::Personal)
            .unwrap()
            .is_none()
    );
    let again = sync::connect_practice(&owner, &setup_code)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("sync to finish"), "{again}");
    sync::sync_now(&owner).await.unwrap();
    assert!(
        owner
            .current_space_key(SpaceKind::Personal)
            .unwrap()
            .is_some()
    );

    let colleague = Home::open(dirs[1].path()).unwrap();
    let invite = sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    sync::join(&colleague, &invite, "Colleague").await.unwrap();
    assert_eq!(
        colleague.partner(&partner.id).unwrap().name,
        "Lincoln Middle School"
    );
    owner
        .add_note(&partner.id, "ask about the spring fair")
        .unwrap();
    assert!(sync::sync_now(&owner).await.unwrap().pushed > 0);
    assert_eq!(sync::sync_now(&owner).await.unwrap().pushed, 0);

    let _ = relay.stop.send(());
    relay.task.await.unwrap();
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_cut_off_after_the_relay_took_it_is_finished_by_the_next_round() {
    let scenario = fail::FailScenario::setup();
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let laptop = Home::open(dirs[0].path()).unwrap();
    laptop.create_practice("Practice", "Owner").unwrap();
    sync::connect_practice(&laptop, &(relay.setup_code)())
        .await
        .unwrap();
    let phone = Home::open(dirs[1].path()).unwrap();
    sync::join(
        &phone,
        &sync::create_device_invite(&laptop, 3600).await.unwrap(),
        "",
    )
    .await
    .unwrap();
    sync::sync_now(&phone).await.unwrap();
    sync::sync_now(&laptop).await.unwrap();
    let phone_id = phone.device_identity().unwrap().device_id();
    let personal = laptop
        .current_space_key(SpaceKind::Personal)
        .unwrap()
        .unwrap()
        .epoch;

    // The practice's removal reaches the relay; the app dies before the personal space
    // follows.
    fail::cfg("after-append", "1*return").unwrap();
    let cut = sync::remove_device(&laptop, &phone_id.to_string())
        .await
        .unwrap_err();
    assert!(cut.to_string().contains("cut off"), "{cut}");
    fail::remove("after-append");
    let half = laptop.membership(SpaceKind::Personal).unwrap().unwrap();
    assert!(
        half.is_member(phone_id),
        "the cut left the personal space to finish"
    );
    assert!(
        sync::sync_now(&phone).await.is_err(),
        "the relay refuses the phone on every space already"
    );

    // The next round finishes it: the phone leaves the personal space and its key moves.
    sync::sync_now(&laptop).await.unwrap();
    let done = laptop.membership(SpaceKind::Personal).unwrap().unwrap();
    assert!(!done.is_member(phone_id));
    assert_eq!(done.epoch, personal + 1);
    assert_eq!(
        laptop
            .current_space_key(SpaceKind::Personal)
            .unwrap()
            .unwrap()
            .epoch,
        personal + 1
    );
    // And removing again says it is done rather than failing.
    sync::remove_device(&laptop, &phone_id.to_string())
        .await
        .unwrap();
    scenario.teardown();
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filling_up_during_a_merge_ends_the_round_and_the_entries_come_again() {
    let scenario = fail::FailScenario::setup();
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = Home::open(dirs[0].path()).unwrap();
    owner.create_practice("Practice", "Owner").unwrap();
    sync::connect_practice(&owner, &(relay.setup_code)())
        .await
        .unwrap();
    let colleague = Home::open(dirs[1].path()).unwrap();
    rapport_tests::practice::join_member(&owner, &colleague, "Colleague").await;
    sync::sync_now(&colleague).await.unwrap();

    let names = ["Dr. Okafor", "Lincoln Middle School", "Harbor Clinic"];
    for name in names {
        rapport_tests::practice::add_partner(&owner, PartnerKind::Physician, name);
        sync::sync_now(&owner).await.unwrap();
    }
    let before = colleague.sync_position(SpaceKind::Practice).unwrap().cursor;

    // The colleague's disk is full: the round fails, saying so, and nothing is refused.
    fail::cfg("merge-disk-full", "return").unwrap();
    let full = sync::sync_now(&colleague).await.unwrap_err();
    assert!(full.to_string().contains("full"), "{full}");
    assert_eq!(
        colleague.sync_position(SpaceKind::Practice).unwrap().cursor,
        before,
        "the cursor stays before the entry that could not be stored"
    );
    assert!(colleague.partners(&Default::default()).unwrap().is_empty());

    // Space again: the same entries are fetched and merged, none reported as refused.
    fail::remove("merge-disk-full");
    let report = sync::sync_now(&colleague).await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.merged, names.len() as u64);
    let mut got: Vec<String> = colleague
        .partners(&Default::default())
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(got, want);

    scenario.teardown();
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}
