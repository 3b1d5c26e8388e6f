//! The membership log under ordinary practice events, through a real relay on loopback:
//! a colleague who joins after a removal, two admins removing devices at the same moment,
//! an invite whose creator was removed, a clinician's personal space when one of their
//! devices goes. Each would split a practice or leak a key without the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Mutex;

use rapport_core::model::NewPartner;
use rapport_core::sealed::crypto;
use rapport_core::sealed::keyring::key_check;
use rapport_core::sync::link::Link;
use rapport_core::sync::{self, SyncReport};
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_tests::relay::{Running, relay};
use rapport_wire::SpaceId;
use rapport_wire::client::{ClientError, RelayClient};
use rapport_wire::codes::InviteCode;
use rapport_wire::frames::{Request, Response, Role};
use rapport_wire::membership::SignedOp;

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
    let report = sync::sync_now(home).await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    report
}

fn dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().unwrap()).collect()
}

fn id_of(home: &Home) -> String {
    home.device_identity().unwrap().device_id().to_string()
}

fn epoch(home: &Home, kind: SpaceKind) -> u32 {
    home.current_space_key(kind).unwrap().unwrap().epoch
}

async fn stop(relay: Running) {
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

/// An owner with a practice on the relay.
async fn owner(relay: &Running, dir: &Path) -> Home {
    let a = home(dir);
    a.create_practice("Practice", "Owner").unwrap();
    sync::connect_practice(&a, &(relay.setup_code)())
        .await
        .unwrap();
    a
}

/// `joiner` joins `by`'s practice as a new colleague with `role`, and announces itself.
async fn join(by: &Home, joiner: &Home, role: Role, name: &str) {
    let invite = sync::create_invite(by, role, 3600).await.unwrap();
    sync::join(joiner, &invite, name).await.unwrap();
    sync(joiner).await;
}

/// Every entry the relay holds for `space` after its newest snapshot.
async fn entries(conn: &RelayClient, space: SpaceId) -> Vec<rapport_wire::frames::Entry> {
    let after = match conn.request(&Request::GetSnapshot { space }).await.unwrap() {
        Response::Snapshot(Some(snapshot)) => snapshot.covers,
        _ => 0,
    };
    let Response::Entries { entries, .. } = conn
        .request(&Request::Pull {
            space,
            after,
            limit: 1000,
        })
        .await
        .unwrap()
    else {
        panic!("no entries")
    };
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_key_rotated_after_its_invite_and_seals_under_it() {
    let relay = relay().await;
    let d = dirs(3);
    let a = owner(&relay, d[0].path()).await;
    // The colleague's invite is made first; an old phone then joins and is removed.
    let invite = sync::create_invite(&a, Role::Member, 3600).await.unwrap();
    let phone = home(d[1].path());
    join(&a, &phone, Role::Member, "Old Phone").await;
    let old = phone
        .current_space_key(SpaceKind::Practice)
        .unwrap()
        .unwrap();
    let rotated = sync::remove_device(&a, &id_of(&phone)).await.unwrap();
    assert_eq!(rotated, old.epoch + 1);
    let after = a.add_partner(partner("Written After Removal")).unwrap();
    sync(&a).await;

    let late = home(d[2].path());
    sync::join(&late, &invite, "Late Colleague").await.unwrap();
    // The join installs the snapshot; its first round brings what followed it.
    sync(&late).await;
    assert_eq!(
        late.partner(&after.id).unwrap().name,
        "Written After Removal",
        "the rotation was sealed to the pending invite too"
    );
    assert_eq!(epoch(&late, SpaceKind::Practice), rotated);
    let theirs = late.add_partner(partner("By the Late Colleague")).unwrap();
    assert!(sync(&late).await.pushed > 0);
    sync(&a).await;
    assert_eq!(a.partner(&theirs.id).unwrap().name, "By the Late Colleague");

    // What the late joiner wrote is sealed under the new epoch: the removed phone's key
    // opens none of it, and the phone never got the new one.
    let conn = sync::connect_known(&a).await.unwrap();
    let space = SpaceId::parse(&a.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let late_id = late.device_identity().unwrap().device_id();
    let sent: Vec<_> = entries(&conn, space)
        .await
        .into_iter()
        .filter(|e| e.sender == late_id)
        .collect();
    assert!(!sent.is_empty());
    for entry in &sent {
        assert_eq!(entry.epoch, rotated);
        assert!(crypto::open(&old, space, entry.sender, &entry.blob).is_err());
    }
    // Nor does anything the invite code carries open an entry on its own.
    let code = InviteCode::decode(&invite).unwrap();
    let any = entries(&conn, space).await.pop().unwrap();
    for bytes in [code.secret, code.anchor, code.fingerprint] {
        for epoch in 1..=rotated {
            let guess = rapport_core::sealed::crypto::SpaceKey::from_bytes(epoch, bytes);
            assert!(crypto::open(&guess, space, any.sender, &any.blob).is_err());
        }
    }
    assert!(
        phone
            .space_keys(SpaceKind::Practice)
            .unwrap()
            .iter()
            .all(|k| k.epoch < rotated)
    );
    assert!(
        sync::sync_now(&phone).await.is_err(),
        "the phone is refused"
    );
    conn.close().await;
    stop(relay).await;
}

/// A link that keeps the first membership operation it is asked to append instead of
/// sending it, and reports the connection lost: an admin cut off mid-removal whose
/// operation still reaches the relay (below) before another admin's.
struct Withhold<'a> {
    inner: &'a RelayClient,
    kept: &'a Mutex<Option<(SpaceId, SignedOp)>>,
}

impl Link for Withhold<'_> {
    fn request(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Response, ClientError>> + Send {
        let request = request.clone();
        async move {
            if let Request::AppendOp { space, op } = &request {
                *self.kept.lock().unwrap() = Some((*space, op.clone()));
                return Err(ClientError::Closed("cut off for the test".into()));
            }
            self.inner.request(&request).await
        }
    }
}

/// A link that, just before it appends its own first operation, delivers the kept one:
/// the other admin's removal lands between this device's fetch and its append.
struct Race<'a> {
    inner: &'a RelayClient,
    /// The connection of the device that signed the kept operation (the relay takes an
    /// operation only from its signer).
    signer: &'a RelayClient,
    kept: &'a Mutex<Option<(SpaceId, SignedOp)>>,
    stale: &'a Mutex<u32>,
}

impl Link for Race<'_> {
    fn request(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Response, ClientError>> + Send {
        let request = request.clone();
        async move {
            if matches!(request, Request::AppendOp { .. }) {
                let first = self.kept.lock().unwrap().take();
                if let Some((space, op)) = first {
                    let landed = self.signer.request(&Request::AppendOp { space, op }).await;
                    assert!(landed.is_ok(), "{landed:?}");
                }
            }
            let answer = self.inner.request(&request).await;
            if let Err(ClientError::Refused {
                code: rapport_wire::frames::ErrorCode::Stale,
                ..
            }) = &answer
            {
                *self.stale.lock().unwrap() += 1;
            }
            answer
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_removing_devices_at_once_both_take_effect_under_one_key_per_epoch() {
    let relay = relay().await;
    let d = dirs(5);
    let owner = owner(&relay, d[0].path()).await;
    let admin = home(d[1].path());
    join(&owner, &admin, Role::Admin, "Admin").await;
    let (c, dd, e) = (home(d[2].path()), home(d[3].path()), home(d[4].path()));
    join(&owner, &c, Role::Member, "C").await;
    join(&owner, &dd, Role::Member, "D").await;
    join(&owner, &e, Role::Member, "E").await;
    for h in [&owner, &admin, &c, &dd, &e] {
        sync(h).await;
    }
    let start = epoch(&owner, SpaceKind::Practice);

    // The owner removes C, the operation is signed on the head both admins know, and the
    // owner is cut off; the admin removes D and its append, on the same head, arrives
    // just after the owner's.
    let kept = Mutex::new(None);
    let owner_conn = sync::connect_known(&owner).await.unwrap();
    let cut = sync::devices::remove_device_via(
        &owner,
        &Withhold {
            inner: &owner_conn,
            kept: &kept,
        },
        &id_of(&c),
    )
    .await;
    assert!(cut.is_err(), "{cut:?}");
    assert!(kept.lock().unwrap().is_some());
    let admin_conn = sync::connect_known(&admin).await.unwrap();
    let stale = Mutex::new(0);
    let admin_epoch = sync::devices::remove_device_via(
        &admin,
        &Race {
            inner: &admin_conn,
            signer: &owner_conn,
            kept: &kept,
            stale: &stale,
        },
        &id_of(&dd),
    )
    .await
    .unwrap();
    assert_eq!(
        *stale.lock().unwrap(),
        1,
        "the admin's first append was on a stale head"
    );
    assert_eq!(
        admin_epoch,
        start + 2,
        "the admin re-decided on the new head"
    );
    // The owner, trying again, finds its removal done.
    assert_eq!(
        sync::devices::remove_device_via(&owner, &owner_conn, &id_of(&c))
            .await
            .unwrap(),
        start + 2
    );
    owner_conn.close().await;
    admin_conn.close().await;

    for (h, what) in [(&c, "C"), (&dd, "D")] {
        let refused = sync::sync_now(h).await.unwrap_err().to_string();
        assert!(refused.contains("no longer"), "{what}: {refused}");
    }
    let by_owner = owner.add_partner(partner("By the Owner")).unwrap();
    let by_admin = admin.add_partner(partner("By the Admin")).unwrap();
    for _ in 0..2 {
        for h in [&owner, &admin, &e] {
            sync(h).await;
        }
    }
    let space = owner.space_id(SpaceKind::Practice).unwrap();
    let space = SpaceId::parse(&space).unwrap();
    let checks = |h: &Home| -> Vec<(u32, [u8; 32])> {
        h.space_keys(SpaceKind::Practice)
            .unwrap()
            .iter()
            .map(|k| (k.epoch, key_check(space, k)))
            .collect()
    };
    for h in [&owner, &admin, &e] {
        assert_eq!(epoch(h, SpaceKind::Practice), start + 2);
        assert_eq!(checks(h), checks(&owner), "one key per epoch everywhere");
        let state = h.membership(SpaceKind::Practice).unwrap().unwrap();
        assert_eq!(state.members.len(), 3);
        assert_eq!(state.removed.len(), 2);
        assert_eq!(h.partner(&by_owner.id).unwrap().name, "By the Owner");
        assert_eq!(h.partner(&by_admin.id).unwrap().name, "By the Admin");
    }
    assert_eq!(
        owner.read_model_dump().unwrap(),
        e.read_model_dump().unwrap()
    );
    stop(relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_dies_with_its_creator_and_a_revoked_one_is_refused() {
    let relay = relay().await;
    let d = dirs(4);
    let owner = owner(&relay, d[0].path()).await;
    owner.add_partner(partner("Confidential Partner")).unwrap();
    sync(&owner).await;
    let admin = home(d[1].path());
    join(&owner, &admin, Role::Admin, "Admin").await;
    let from_admin = sync::create_invite(&admin, Role::Admin, 3600)
        .await
        .unwrap();
    let revoked = sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    let listed = sync::devices(&owner).await.unwrap();
    assert_eq!(listed.invites.len(), 2, "{listed:?}");
    assert!(
        listed.invites.iter().any(|i| i.created_by == id_of(&admin)
            && i.created_by_name == "Admin"
            && i.role == "admin"),
        "{listed:?}"
    );
    let pending = listed
        .invites
        .iter()
        .find(|i| i.created_by == id_of(&owner))
        .unwrap()
        .id
        .clone();
    sync::revoke_invite(&owner, &pending).await.unwrap();
    sync::remove_device(&owner, &id_of(&admin)).await.unwrap();
    assert!(sync::devices(&owner).await.unwrap().invites.is_empty());

    for (code, dir, why) in [
        (&from_admin, d[2].path(), "creator was removed"),
        (&revoked, d[3].path(), "revoked"),
    ] {
        let stranger = home(dir);
        let refused = sync::join(&stranger, code, "Stranger")
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains(why), "{why}: {refused}");
        assert!(
            stranger.space_id(SpaceKind::Practice).is_err(),
            "{why}: nothing was installed"
        );
    }
    stop(relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_clinicians_device_rotates_their_personal_space_too() {
    let relay = relay().await;
    let d = dirs(4);
    let laptop = owner(&relay, d[0].path()).await;
    let p = laptop.add_partner(partner("Shared Partner")).unwrap();
    laptop.add_note(&p.id, "Private to the owner").unwrap();
    sync(&laptop).await;
    let phone = home(d[1].path());
    sync::join(
        &phone,
        &sync::create_device_invite(&laptop, 3600).await.unwrap(),
        "",
    )
    .await
    .unwrap();
    sync(&phone).await;
    // A colleague with two devices of their own.
    let ben = home(d[2].path());
    join(&laptop, &ben, Role::Member, "Ben").await;
    let ben_phone = home(d[3].path());
    sync::join(
        &ben_phone,
        &sync::create_device_invite(&ben, 3600).await.unwrap(),
        "",
    )
    .await
    .unwrap();
    sync(&ben_phone).await;
    for h in [&laptop, &phone, &ben, &ben_phone] {
        sync(h).await;
    }
    let personal = epoch(&laptop, SpaceKind::Personal);
    let bens_personal = epoch(&ben, SpaceKind::Personal);

    // The owner removes their own phone: both spaces drop it in this one call.
    let old_personal = phone
        .current_space_key(SpaceKind::Personal)
        .unwrap()
        .unwrap();
    sync::remove_device(&laptop, &id_of(&phone)).await.unwrap();
    assert_eq!(epoch(&laptop, SpaceKind::Personal), personal + 1);
    let state = laptop.membership(SpaceKind::Personal).unwrap().unwrap();
    assert!(!state.is_member(phone.device_identity().unwrap().device_id()));
    laptop.add_note(&p.id, "After the phone was lost").unwrap();
    sync(&laptop).await;
    let conn = sync::connect_known(&laptop).await.unwrap();
    let space = SpaceId::parse(&laptop.space_id(SpaceKind::Personal).unwrap()).unwrap();
    let newest = entries(&conn, space).await.pop().unwrap();
    assert_eq!(newest.epoch, personal + 1);
    assert!(crypto::open(&old_personal, space, newest.sender, &newest.blob).is_err());
    conn.close().await;

    // The owner removes Ben's phone: Ben's laptop rotates Ben's personal space on its
    // next round (the owner holds no key of it).
    sync::remove_device(&laptop, &id_of(&ben_phone))
        .await
        .unwrap();
    sync(&ben).await;
    assert_eq!(epoch(&ben, SpaceKind::Personal), bens_personal + 1);
    let bens = ben.membership(SpaceKind::Personal).unwrap().unwrap();
    assert!(!bens.is_member(ben_phone.device_identity().unwrap().device_id()));
    assert_eq!(bens.members.len(), 1);
    assert!(sync::sync_now(&ben_phone).await.is_err());
    stop(relay).await;
}
