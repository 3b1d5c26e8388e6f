//! End-to-end encrypted sync through a real relay on loopback with several device homes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rapport_core::model::{NewPartner, NewReferral, NewTouchpoint, PartnerEdit, PartnerFilter};
use rapport_core::sealed::crypto::{self, SpaceKey};
use rapport_core::sealed::keyring::InviteSecret;
use rapport_core::sync::engine::SyncStatus;
use rapport_core::sync::service::SyncService;
use rapport_core::sync::{self, SyncReport};
use rapport_core::vocab::{Direction, PartnerKind, TouchpointKind, TouchpointOutcome};
use rapport_core::{Home, SpaceKind, SyncFailure};
use rapport_tests::relay::{Running, relay};
use rapport_wire::SpaceId;
use rapport_wire::frames::{Request, Response, Role};
use rapport_wire::identity::Identity;

fn home(dir: &Path) -> Home {
    Home::open(dir).unwrap()
}

fn partner(name: &str) -> NewPartner {
    NewPartner {
        kind: Some(PartnerKind::Therapist),
        name: name.into(),
        ..Default::default()
    }
}

async fn sync(home: &Home) -> SyncReport {
    sync::sync_now(home).await.unwrap()
}

/// Where the relay's log of a space starts: after its newest snapshot (each invite
/// refreshes the snapshot and prunes what it covers).
async fn log_start(conn: &rapport_wire::client::RelayClient, space: SpaceId) -> u64 {
    match conn.request(&Request::GetSnapshot { space }).await.unwrap() {
        Response::Snapshot(Some(snapshot)) => snapshot.covers,
        _ => 0,
    }
}

fn dump(home: &Home) -> Vec<String> {
    home.read_model_dump()
        .unwrap()
        .into_iter()
        .filter(|l| !l.starts_with("notes:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_converge_through_a_blind_relay() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = home(dirs[0].path());
    a.create_practice("Riverside Counseling", "Ana Ruiz")
        .unwrap();
    let shared = a
        .add_partner(NewPartner {
            ideal_client: "Adults with anxiety".into(),
            ..partner("Dr. Secret Partner")
        })
        .unwrap();
    sync::connect_practice(&a, &(relay.setup_code)())
        .await
        .unwrap();

    let b = home(dirs[1].path());
    let c = home(dirs[2].path());
    for (joiner, name) in [(&b, "Ben Okafor"), (&c, "Cara Lin")] {
        let invite = sync::create_invite(&a, Role::Member, 3600).await.unwrap();
        assert!(invite.starts_with("RAPPORT-INVITE-"));
        sync::join(joiner, &invite, name).await.unwrap();
        assert_eq!(
            joiner.partner(&shared.id).unwrap().name,
            "Dr. Secret Partner",
            "bootstrapped from the relay"
        );
        assert!(
            !joiner.is_document_loaded(SpaceKind::Practice),
            "joined from the snapshot's read model, without loading the document"
        );
        // The first round writes the new member into the document and announces them.
        sync(joiner).await;
        assert!(!joiner.has_pending_join().unwrap());
    }
    sync(&a).await;
    assert_eq!(a.members().unwrap().len(), 3);

    // Everyone works offline at once, on the same partner too.
    a.edit_partner(
        &shared.id,
        PartnerEdit {
            city: Some("Portland".into()),
            specialties: Some(vec!["anxiety".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    b.edit_partner(
        &shared.id,
        PartnerEdit {
            ideal_client: Some("Adults with anxiety and insomnia".into()),
            specialties: Some(vec!["sleep".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    c.edit_partner(
        &shared.id,
        PartnerEdit {
            ideal_client: Some("Young adults with anxiety".into()),
            region: Some("OR".into()),
            ..Default::default()
        },
    )
    .unwrap();
    for (h, name) in [(&a, "Ana's Find"), (&b, "Ben's Find"), (&c, "Cara's Find")] {
        let p = h.add_partner(partner(name)).unwrap();
        h.log_touchpoint(NewTouchpoint {
            partner_id: p.id.clone(),
            kind: TouchpointKind::Email,
            at: None,
            outcome: Some(TouchpointOutcome::NoResponse),
            note: format!("Confidential outreach note by {name}"),
            allow_contact_details: false,
            member_id: None,
        })
        .unwrap();
        h.record_referral(NewReferral {
            partner_id: shared.id.clone(),
            direction: Direction::In,
            at: None,
            concerns: vec!["anxiety".into()],
            age_band: None,
            payer_category: None,
            modality: None,
            status: None,
            member_id: None,
        })
        .unwrap();
    }
    a.add_note(&shared.id, "Private: Lee seems overloaded this spring")
        .unwrap();

    for _ in 0..2 {
        for h in [&a, &b, &c] {
            let report = sync(h).await;
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        }
    }
    let heads = a.heads(SpaceKind::Practice).unwrap();
    for h in [&b, &c] {
        assert_eq!(h.heads(SpaceKind::Practice).unwrap(), heads);
        assert_eq!(dump(h), dump(&a), "identical read models");
    }
    let merged = a.partner(&shared.id).unwrap();
    assert_eq!(
        (merged.city.as_deref(), merged.region.as_deref()),
        (Some("Portland"), Some("OR"))
    );
    assert_eq!(
        merged.specialties,
        vec!["anxiety", "sleep"],
        "concurrent set edits both survive"
    );
    assert!(
        merged.ideal_client.contains("insomnia") && merged.ideal_client.contains("Young"),
        "text edits merge: {}",
        merged.ideal_client
    );
    assert_eq!(a.partners(&PartnerFilter::default()).unwrap().len(), 4);
    assert_eq!(a.referrals_of(&shared.id).unwrap().len(), 3);
    // The personal note stays with its clinician.
    assert_eq!(a.notes_of(&shared.id).unwrap().len(), 1);
    assert!(
        b.notes_of(&shared.id).unwrap().is_empty() && c.notes_of(&shared.id).unwrap().is_empty()
    );

    // The relay holds none of the plaintext the devices wrote.
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(relay.dir.path()).unwrap() {
        raw.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for secret in [
        "Dr. Secret Partner",
        "Riverside Counseling",
        "Confidential outreach",
        "overloaded",
        "insomnia",
        "Ana Ruiz",
        "Portland",
        "anxiety",
    ] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the relay's files contain {secret:?}"
        );
    }

    // Redelivery in any order is harmless: replay the relay's whole log into C, reversed,
    // twice.
    let before = dump(&c);
    let conn = sync::connect_known(&c).await.unwrap();
    let space = SpaceId::parse(&c.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let Response::Entries { entries, .. } = conn
        .request(&Request::Pull {
            space,
            after: log_start(&conn, space).await,
            limit: 1000,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let key = c.current_space_key(SpaceKind::Practice).unwrap().unwrap();
    for _ in 0..2 {
        for entry in entries.iter().rev() {
            let plain = crypto::open(&key, space, entry.sender, &entry.blob).unwrap();
            c.merge(SpaceKind::Practice, &plain).unwrap();
        }
    }
    assert_eq!(dump(&c), before);
    conn.close().await;

    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_wrong_key_and_forged_entries_are_refused_and_do_not_stop_the_rest() {
    let relay = relay().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = home(da.path());
    a.create_practice("Practice", "Owner").unwrap();
    sync::connect_practice(&a, &(relay.setup_code)())
        .await
        .unwrap();
    let b = home(db.path());
    sync::join(
        &b,
        &sync::create_invite(&a, Role::Member, 3600).await.unwrap(),
        "Colleague",
    )
    .await
    .unwrap();
    sync(&a).await;

    // A rogue member of the practice (it joined with an invite and took its keys from
    // the log) pushes three bad blobs.
    let invite = rapport_wire::codes::InviteCode::decode(
        &sync::create_invite(&a, Role::Member, 3600).await.unwrap(),
    )
    .unwrap();
    let addr = rapport_wire::client::resolve(&invite.addr).await.unwrap();
    let rogue_device = rapport_tests::raw::RawDevice::connect(addr, invite.fingerprint)
        .await
        .unwrap();
    let secret = InviteSecret::from_bytes(invite.secret);
    rogue_device.admit(invite.space, &secret).await.unwrap();
    let key = rogue_device
        .keys_of_invite(invite.space, &secret)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let rogue = &rogue_device.identity;
    let conn = &rogue_device.client;
    let good = crypto::seal(
        &key,
        invite.space,
        rogue.key_pkcs8(),
        b"not automerge but validly sealed",
    )
    .unwrap();
    let mut tampered = good.clone();
    tampered[80] ^= 0x40;
    let wrong_key = crypto::seal(
        &SpaceKey::generate(key.epoch),
        invite.space,
        rogue.key_pkcs8(),
        b"x",
    )
    .unwrap();
    let someone_else = Identity::generate("someone").unwrap();
    let forged = crypto::seal(&key, invite.space, someone_else.key_pkcs8(), b"x").unwrap();
    for (i, blob) in [tampered, wrong_key, forged].into_iter().enumerate() {
        let Response::Pushed { .. } = conn
            .request(&Request::Push {
                space: invite.space,
                epoch: key.epoch,
                client_msg_id: [i as u8; 16],
                blob,
            })
            .await
            .unwrap()
        else {
            panic!()
        };
    }
    // Then a real change from B.
    let p = b.add_partner(partner("After The Bad Ones")).unwrap();
    sync(&b).await;

    let report = sync(&a).await;
    assert_eq!(report.rejected.len(), 3, "{:?}", report.rejected);
    assert!(
        report.rejected.iter().any(|r| r.contains("signature")),
        "{:?}",
        report.rejected
    );
    assert!(
        report
            .rejected
            .iter()
            .any(|r| r.contains("cannot be opened")),
        "{:?}",
        report.rejected
    );
    assert_eq!(
        a.partner(&p.id).unwrap().name,
        "After The Bad Ones",
        "entries after the bad ones still merge"
    );
    assert_eq!(dump(&a), dump(&b));
    let _ = SpaceId::random();
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

async fn practice_of_three(relay: &Running) -> (Vec<tempfile::TempDir>, Home, Home, Home) {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = home(dirs[0].path());
    a.create_practice("Practice", "Owner").unwrap();
    sync::connect_practice(&a, &(relay.setup_code)())
        .await
        .unwrap();
    let b = home(dirs[1].path());
    let c = home(dirs[2].path());
    for (joiner, name) in [(&b, "B"), (&c, "C")] {
        sync::join(
            joiner,
            &sync::create_invite(&a, Role::Member, 3600).await.unwrap(),
            name,
        )
        .await
        .unwrap();
        sync(joiner).await;
    }
    (dirs, a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_refused_and_cannot_read_what_follows() {
    let relay = relay().await;
    let (_dirs, a, b, c) = practice_of_three(&relay).await;
    for h in [&a, &b, &c] {
        sync(h).await;
    }
    let devices = sync::devices(&a).await.unwrap();
    assert_eq!(devices.devices.len(), 3);
    let c_id = c.device_identity().unwrap().device_id();
    let old_key = c.current_space_key(SpaceKind::Practice).unwrap().unwrap();
    assert!(
        sync::remove_device(&b, &c_id.to_string()).await.is_err(),
        "a member cannot remove devices"
    );
    assert_eq!(
        sync::remove_device(&a, &c_id.to_string()).await.unwrap(),
        old_key.epoch + 1
    );
    let refused = sync::sync_now(&c).await.unwrap_err();
    assert!(refused.to_string().contains("no longer"), "{refused}");
    assert!(
        matches!(
            refused.sync_failure(),
            Some(SyncFailure::Removed | SyncFailure::NotMember)
        ),
        "typed, so that apps stop retrying: {refused:?}"
    );
    let public = rapport_core::RapportError::from(refused);
    assert!(
        matches!(
            public,
            rapport_core::RapportError::Removed(_) | rapport_core::RapportError::NotMember(_)
        ),
        "{public:?}"
    );

    let after = a.add_partner(partner("Written After Removal")).unwrap();
    sync(&a).await;
    let report = sync(&b).await;
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(
        b.partner(&after.id).unwrap().name,
        "Written After Removal",
        "the remaining devices got the new key"
    );
    assert_eq!(
        b.current_space_key(SpaceKind::Practice)
            .unwrap()
            .unwrap()
            .epoch,
        old_key.epoch + 1
    );

    // Even holding the blob, the removed device's keys cannot open it.
    let conn = sync::connect_known(&a).await.unwrap();
    let space = SpaceId::parse(&a.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let Response::Entries { entries, .. } = conn
        .request(&Request::Pull {
            space,
            after: log_start(&conn, space).await,
            limit: 1000,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let newest = entries
        .iter()
        .filter(|e| e.sender == a.device_identity().unwrap().device_id())
        .last()
        .unwrap();
    assert_eq!(newest.epoch, old_key.epoch + 1);
    assert!(crypto::open(&old_key, space, newest.sender, &newest.blob).is_err());
    assert!(c.partner(&after.id).is_err());
    conn.close().await;

    // Background sync on the removed device stops, says why, and does not retry.
    let statuses: Arc<Mutex<Vec<SyncStatus>>> = Arc::default();
    let sink = statuses.clone();
    let service = SyncService::start(
        Arc::new(c),
        Arc::new(move |s: &SyncStatus| sink.lock().unwrap().push(s.clone())),
    );
    let blocked = |all: &[SyncStatus]| {
        all.iter()
            .position(|s| matches!(s, SyncStatus::Blocked { .. }))
    };
    for _ in 0..100 {
        if blocked(&statuses.lock().unwrap()).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for several reconnects if it still retried (backoff starts at 250 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = statuses.lock().unwrap().clone();
    let at = blocked(&seen).unwrap_or_else(|| panic!("never blocked: {seen:?}"));
    assert!(
        matches!(
            &seen[at],
            SyncStatus::Blocked {
                failure: SyncFailure::Removed | SyncFailure::NotMember,
                ..
            }
        ),
        "{seen:?}"
    );
    assert_eq!(at + 1, seen.len(), "nothing after the block: {seen:?}");
    service.stop().await;
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_catches_up_across_many_changes_and_a_compaction() {
    let relay = relay().await;
    let (_dirs, a, b, c) = practice_of_three(&relay).await;
    for h in [&a, &b, &c] {
        sync(h).await;
    }
    // C goes offline and keeps working.
    let offline = c.add_partner(partner("Added While Offline")).unwrap();
    // Meanwhile A and B make hundreds of changes, syncing each one.
    let a_conn = sync::connect_known(&a).await.unwrap();
    let b_conn = sync::connect_known(&b).await.unwrap();
    let p = a.add_partner(partner("Busy Partner")).unwrap();
    for i in 0..(sync::engine::SNAPSHOT_EVERY + 40) {
        let (h, conn) = if i % 2 == 0 {
            (&a, &a_conn)
        } else {
            (&b, &b_conn)
        };
        if h.partner(&p.id).is_ok() {
            h.edit_partner(
                &p.id,
                PartnerEdit {
                    city: Some(format!("City {i}")),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        sync::round(h, conn).await.unwrap();
    }
    sync::round(&a, &a_conn).await.unwrap();
    let space = SpaceId::parse(&a.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let Response::Snapshot(Some(snapshot)) = a_conn
        .request(&Request::GetSnapshot { space })
        .await
        .unwrap()
    else {
        panic!("no snapshot was uploaded")
    };
    assert!(snapshot.covers >= sync::engine::SNAPSHOT_EVERY);
    assert!(
        a_conn
            .request(&Request::Pull {
                space,
                after: 0,
                limit: 1
            })
            .await
            .is_err(),
        "the covered log was pruned"
    );

    // C comes back: its cursor predates the prune; it recovers through the snapshot and
    // keeps its own offline edit.
    let report = sync(&c).await;
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    sync(&a).await;
    sync(&b).await;
    assert_eq!(
        c.partner(&p.id).unwrap().city,
        a.partner(&p.id).unwrap().city
    );
    assert_eq!(a.partner(&offline.id).unwrap().name, "Added While Offline");
    assert_eq!(dump(&a), dump(&c));
    assert_eq!(dump(&a), dump(&b));

    // A new device joining now starts from the snapshot.
    let late_dir = tempfile::tempdir().unwrap();
    let late = home(late_dir.path());
    sync::join(
        &late,
        &sync::create_invite(&a, Role::Member, 3600).await.unwrap(),
        "Late",
    )
    .await
    .unwrap();
    sync(&a).await;
    sync(&late).await;
    assert_eq!(
        late.partner(&p.id).unwrap().city,
        a.partner(&p.id).unwrap().city
    );
    a_conn.close().await;
    b_conn.close().await;
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

/// Random 40-letter words (incompressible tags).
fn words(mut seed: u64) -> impl FnMut() -> String {
    move || {
        (0..40)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (b'a' + (seed >> 59) as u8 % 26) as char
            })
            .collect::<String>()
    }
}

/// Adds `count` partners with 64 random tags each in one batch: one Automerge change.
fn add_tagged_partners(
    home: &Home,
    prefix: &str,
    count: usize,
    words: &mut impl FnMut() -> String,
) {
    let inputs: Vec<NewPartner> = (0..count)
        .map(|i| NewPartner {
            tags: (0..64).map(|_| words()).collect(),
            ..partner(&format!("{prefix}-{i}"))
        })
        .collect();
    home.batch(SpaceKind::Practice, |b| {
        inputs
            .into_iter()
            .try_for_each(|p| b.add_partner(p).map(drop))
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_change_larger_than_a_relay_entry_travels_in_parts() {
    let relay = relay().await;
    let (_dirs, a, b, c) = practice_of_three(&relay).await;
    // One change of about 1.3 MB: more than two relay entries' worth.
    add_tagged_partners(&a, "Huge", 500, &mut words(11));
    let report = sync(&a).await;
    assert!(report.pushed >= 3, "pushed in {} parts", report.pushed);
    // B pulls the parts; C is offline for a while, then gets them the same way.
    sync(&b).await;
    assert_eq!(b.partner_count().unwrap(), 500);
    b.add_partner(partner("After the big change")).unwrap();
    sync(&b).await;
    sync(&c).await;
    sync(&a).await;
    assert_eq!(dump(&a), dump(&b));
    assert_eq!(dump(&a), dump(&c));
    assert_eq!(c.partner_count().unwrap(), 501);
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_larger_than_one_relay_entry_is_pushed_in_pieces() {
    let relay = relay().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = home(da.path());
    a.create_practice("Big Practice", "Owner").unwrap();
    // About 1.2 MB of incompressible tags in three batches.
    let mut words = words(7);
    for batch in 0..3 {
        add_tagged_partners(&a, &format!("Partner {batch}"), 150, &mut words);
    }
    let report = sync::connect_practice(&a, &(relay.setup_code)())
        .await
        .unwrap();
    assert!(report.pushed >= 3, "pushed in {} pieces", report.pushed);
    let b = home(db.path());
    sync::join(
        &b,
        &sync::create_invite(&a, Role::Member, 3600).await.unwrap(),
        "Joiner",
    )
    .await
    .unwrap();
    assert_eq!(b.partner_count().unwrap(), 450);
    sync(&b).await;
    sync(&a).await;
    // The read model installed from the snapshot is row for row what projecting the
    // document gives.
    assert_eq!(dump(&a), dump(&b));
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinicians_second_device_shares_their_personal_space_and_nothing_is_re_uploaded() {
    let relay = relay().await;
    let (d1, d2, db) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let laptop = home(d1.path());
    laptop.create_practice("Two Devices", "Ana").unwrap();
    let p = laptop.add_partner(partner("Shared Partner")).unwrap();
    sync::connect_practice(&laptop, &(relay.setup_code)())
        .await
        .unwrap();
    let colleague = home(db.path());
    sync::join(
        &colleague,
        &sync::create_invite(&laptop, Role::Member, 3600)
            .await
            .unwrap(),
        "Ben",
    )
    .await
    .unwrap();
    sync(&colleague).await;
    laptop
        .add_note(&p.id, "Private to Ana: prefers email")
        .unwrap();
    sync(&laptop).await;

    let phone = home(d2.path());
    let invite = sync::create_device_invite(&laptop, 3600).await.unwrap();
    let report_before = sync::devices(&laptop).await.unwrap().devices.len();
    let identity = sync::join(&phone, &invite, "ignored for a second device")
        .await
        .unwrap();
    assert_eq!(
        identity.member_id,
        laptop.identity().unwrap().unwrap().member_id,
        "the same clinician"
    );
    assert_eq!(
        phone.notes_of(&p.id).unwrap().len(),
        1,
        "their personal notes came along"
    );
    assert!(
        !phone.is_document_loaded(SpaceKind::Practice),
        "the practice came from the snapshot's read model"
    );
    assert_eq!(
        sync::devices(&laptop).await.unwrap().devices.len(),
        report_before + 1
    );
    // Nothing it downloaded is pushed back: its first round pushes only its own change
    // (this device added to the clinician's devices), and the next one nothing.
    assert_eq!(sync::sync_now(&phone).await.unwrap().pushed, 1);
    assert!(!phone.has_pending_join().unwrap());
    assert_eq!(sync::sync_now(&phone).await.unwrap().pushed, 0);

    phone.add_note(&p.id, "Written on the phone").unwrap();
    phone
        .edit_partner(
            &p.id,
            PartnerEdit {
                city: Some("Eugene".into()),
                ..Default::default()
            },
        )
        .unwrap();
    for h in [&phone, &laptop, &colleague] {
        sync(h).await;
    }
    assert_eq!(
        laptop.notes_of(&p.id).unwrap().len(),
        2,
        "notes sync between the clinician's devices"
    );
    assert!(
        colleague.notes_of(&p.id).unwrap().is_empty(),
        "and never to colleagues"
    );
    assert_eq!(
        colleague.partner(&p.id).unwrap().city.as_deref(),
        Some("Eugene")
    );
    assert_eq!(
        laptop.members().unwrap().len(),
        2,
        "no new member for a second device"
    );
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}
