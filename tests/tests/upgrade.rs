//! Upgrading a practice from protocol 1, end to end over a real relay on loopback: a
//! practice synced by today's build is turned into what a protocol-1 release left (the
//! relay's `relay.db` at schema 1 with the entries as they were and a snapshot without
//! sealed covers; the devices' homes at store version 6, keys without a membership log),
//! then the new relay opens it in place. The owner's device adopts the practice and keeps
//! every partner, referral and note; the member's device is told to join again and does,
//! on the same home, keeping what it wrote; a new device joins from a snapshot it can
//! check (the one from before gives way), and everyone converges.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;

use rapport_core::model::{NewPartner, NewReferral};
use rapport_core::sealed::crypto;
use rapport_core::sync;
use rapport_core::vocab::{Direction, PartnerKind};
use rapport_core::{Home, SpaceKind};
use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};
use rapport_relay::store::PROTOCOL_1_SCHEMA;
use rapport_tests::practice::join_member;
use rapport_tests::relay::relay;
use rapport_wire::frames::Role;
use rusqlite::{Connection, params};

fn partner(name: &str) -> NewPartner {
    NewPartner {
        kind: Some(PartnerKind::Physician),
        name: name.into(),
        ..Default::default()
    }
}

/// Serves the relay in `dir` on `listen` until the sender is dropped or sent to.
async fn serve(
    dir: &Path,
    listen: SocketAddr,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let data = DataDir::open(dir).unwrap();
    let store = data.store().unwrap();
    let relay = Relay::bind(
        store,
        &data.identity,
        Config {
            listen,
            ..Config::default()
        },
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Rewrites `relay.db` as a protocol-1 relay held it: the same spaces, members and
/// entries, no membership log, and for the practice a snapshot from before sealed covers.
fn to_protocol_1(dir: &Path, practice: &[u8], snapshot: (i64, Vec<u8>, Vec<u8>)) {
    let db = dir.join("relay.db");
    type Rows = Vec<Vec<rusqlite::types::Value>>;
    let rows = |conn: &Connection, sql: &str| -> Rows {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let (meta, spaces, members, log) = {
        let old = Connection::open(&db).unwrap();
        (
            rows(&old, "SELECT key, value FROM meta"),
            rows(
                &old,
                "SELECT id, created_at, created_by, head, pruned_through FROM spaces",
            ),
            rows(
                &old,
                "SELECT space, device, role, joined_at FROM memberships",
            ),
            rows(
                &old,
                "SELECT space, seq, epoch, sender, client_msg_id, received_at, blob FROM log",
            ),
        )
    };
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("relay.db{suffix}")));
    }
    let v1 = Connection::open(&db).unwrap();
    v1.execute_batch(PROTOCOL_1_SCHEMA).unwrap();
    let insert = |sql: &str, rows: &Rows| {
        for row in rows {
            v1.execute(sql, rusqlite::params_from_iter(row)).unwrap();
        }
    };
    insert("INSERT INTO meta VALUES (?1, ?2)", &meta);
    insert("INSERT INTO spaces VALUES (?1, ?2, ?3, ?4, ?5)", &spaces);
    insert(
        "INSERT INTO memberships (space, device, role, joined_at, x25519) VALUES (?1, ?2, ?3, ?4, zeroblob(32))",
        &members,
    );
    insert("INSERT INTO log VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", &log);
    let (covers, sender, blob) = snapshot;
    v1.execute(
        "INSERT INTO snapshots VALUES (?1, ?2, 1, ?3, 1, ?4)",
        params![practice, covers, sender, blob],
    )
    .unwrap();
    v1.pragma_update(None, "user_version", 1).unwrap();
}

/// Takes a home back to store version 6: keys and data, no membership log.
fn to_store_6(dir: &Path) {
    let conn = Connection::open(dir.join(rapport_core::store::DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TABLE membership_ops; DROP TABLE membership_state; DROP TABLE heads_statements;
         DELETE FROM home WHERE key LIKE 'registered:%' OR key LIKE 'verified_snapshot:%'
            OR key LIKE 'newest_merged_epoch:%' OR key LIKE 'withheld_rescan:%';
         PRAGMA user_version = 6;",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_1_practice_upgrades_in_place_and_keeps_everything() {
    let running = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (kept, written_by_member, addr, practice, snapshot) = {
        let owner = Home::open(dirs[0].path()).unwrap();
        owner.create_practice("Upgraded Practice", "Owner").unwrap();
        let kept = owner.add_partner(partner("Dr. Kept Partner")).unwrap();
        owner
            .record_referral(NewReferral {
                partner_id: kept.id.clone(),
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
        owner
            .add_note(&kept.id, "Prefers a call on Fridays")
            .unwrap();
        sync::connect_practice(&owner, &(running.setup_code)())
            .await
            .unwrap();
        let member = Home::open(dirs[1].path()).unwrap();
        join_member(&owner, &member, "Member").await;
        let written = member.add_partner(partner("Dr. From the Member")).unwrap();
        sync::sync_now(&member).await.unwrap();
        sync::sync_now(&owner).await.unwrap();
        assert_eq!(
            owner.partner(&written.id).unwrap().name,
            "Dr. From the Member"
        );
        // What a protocol-1 device uploaded: a snapshot with no covers sealed inside.
        let space = owner.space_id(SpaceKind::Practice).unwrap();
        let key = owner.space_key(SpaceKind::Practice, 1).unwrap().unwrap();
        let identity = owner.device_identity().unwrap();
        let legacy = owner.space_snapshot(SpaceKind::Practice).unwrap();
        assert_eq!(legacy.covers, None);
        let blob = crypto::seal(
            &key,
            rapport_wire::SpaceId::parse(&space).unwrap(),
            identity.key_pkcs8(),
            &legacy.encode(),
        )
        .unwrap();
        let cursor = owner.sync_position(SpaceKind::Practice).unwrap().cursor;
        let addr: SocketAddr = owner.relay().unwrap().unwrap().addr.parse().unwrap();
        (
            kept,
            written,
            addr,
            rapport_wire::SpaceId::parse(&space).unwrap(),
            (
                i64::try_from(cursor).unwrap(),
                identity.device_id().0.to_vec(),
                blob,
            ),
        )
    };
    let _ = running.stop.send(());
    running.task.await.unwrap();
    to_protocol_1(running.dir.path(), &practice.0, snapshot);
    to_store_6(dirs[0].path());
    to_store_6(dirs[1].path());

    // The new relay, on the same data directory and address.
    let (stop, task) = serve(running.dir.path(), addr).await;
    let owner = Home::open(dirs[0].path()).unwrap();
    let member = Home::open(dirs[1].path()).unwrap();
    assert!(owner.membership(SpaceKind::Practice).unwrap().is_none());
    let refused = sync::sync_now(&member).await.unwrap_err().to_string();
    assert!(
        refused.contains("new invite") && refused.contains("rapport join"),
        "the member is told what to do: {refused}"
    );
    // The owner's device adopts the practice; nothing is lost.
    sync::sync_now(&owner).await.unwrap();
    let log = owner.membership(SpaceKind::Practice).unwrap().unwrap();
    assert_eq!(
        log.epoch, 2,
        "a new key under the log, the old one kept for the past"
    );
    assert_eq!(owner.partner(&kept.id).unwrap().name, "Dr. Kept Partner");
    assert_eq!(owner.referrals_of(&kept.id).unwrap().len(), 1);
    assert_eq!(owner.notes_of(&kept.id).unwrap().len(), 1);
    assert_eq!(
        owner.partner(&written_by_member.id).unwrap().name,
        "Dr. From the Member"
    );

    // A new device joins at once, nothing written since the upgrade: from a snapshot it
    // can check, which took the place of the one from before covering as much.
    let third = Home::open(dirs[2].path()).unwrap();
    join_member(&owner, &third, "Third").await;
    sync::sync_now(&third).await.unwrap();
    for id in [&kept.id, &written_by_member.id] {
        assert!(third.partner(id).is_ok(), "the new device has {id}");
    }
    assert_eq!(third.referrals_of(&kept.id).unwrap().len(), 1);
    // The member joins again on the same home and keeps what it wrote.
    let code = sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    sync::join(&member, &code, "Member").await.unwrap();
    let after = owner.add_partner(partner("Dr. After the Upgrade")).unwrap();
    sync::sync_now(&owner).await.unwrap();
    let from_member = member.add_partner(partner("Dr. Member Again")).unwrap();
    sync::sync_now(&member).await.unwrap();
    sync::sync_now(&owner).await.unwrap();
    assert_eq!(
        member.partner(&after.id).unwrap().name,
        "Dr. After the Upgrade"
    );
    assert_eq!(member.partner(&kept.id).unwrap().name, "Dr. Kept Partner");
    assert_eq!(
        owner.partner(&from_member.id).unwrap().name,
        "Dr. Member Again"
    );

    sync::sync_now(&third).await.unwrap();
    for id in [&after.id, &from_member.id] {
        assert!(third.partner(id).is_ok(), "the new device has {id}");
    }
    sync::sync_now(&member).await.unwrap();
    sync::sync_now(&owner).await.unwrap();
    sync::sync_now(&third).await.unwrap();
    // The practice's read model is the same everywhere (notes are each clinician's own).
    let practice_model = |home: &Home| -> Vec<String> {
        home.read_model_dump()
            .unwrap()
            .into_iter()
            .filter(|row| !row.starts_with("notes:"))
            .collect()
    };
    let model = practice_model(&owner);
    assert!(
        practice_model(&member) == model,
        "the member's read model differs"
    );
    assert!(
        practice_model(&third) == model,
        "the new device's read model differs"
    );
    let _ = stop.send(());
    task.await.unwrap();
}
