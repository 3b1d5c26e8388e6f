//! A dishonest relay: the real relay on loopback, with a link in front of each attacked
//! device that rewrites what the relay answers (a compromised relay can send anything).
//! Devices never take its word for who is a member or which key is current: each forgery,
//! substitution, rollback or replay below is refused with a clear error and leaves what
//! the device verified before untouched; an entry whose key is withheld is held, never
//! skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rapport_core::model::NewPartner;
use rapport_core::sealed::keyring;
use rapport_core::sync;
use rapport_core::sync::link::Link;
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_tests::practice::join_member;
use rapport_tests::relay::{Running, relay};
use rapport_wire::SpaceId;
use rapport_wire::client::{ClientError, RelayClient};
use rapport_wire::codes::InviteCode;
use rapport_wire::frames::{Request, Response, Role};
use rapport_wire::identity::Identity;
use rapport_wire::membership::{LogState, Op, SignedOp, next_op};

type Rewrite = dyn Fn(&Request, Response) -> Response + Send + Sync;

/// The relay as a device under attack sees it: every answer passes through `rewrite`.
struct Dishonest<'a> {
    inner: &'a RelayClient,
    rewrite: Box<Rewrite>,
}

impl Link for Dishonest<'_> {
    fn request(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Response, ClientError>> + Send {
        let request = request.clone();
        async move {
            let answer = self.inner.request(&request).await?;
            Ok((self.rewrite)(&request, answer))
        }
    }
}

fn home(dir: &Path) -> Home {
    Home::open(dir).unwrap()
}

fn partner(name: &str) -> NewPartner {
    NewPartner {
        kind: Some(PartnerKind::School),
        name: name.into(),
        ..Default::default()
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// An owner and a member, synced, on a fresh relay.
async fn practice(relay: &Running, dirs: &[tempfile::TempDir]) -> (Home, Home, SpaceId) {
    let owner = home(dirs[0].path());
    owner.create_practice("Practice", "Owner").unwrap();
    owner.add_partner(partner("Before the Attack")).unwrap();
    sync::connect_practice(&owner, &(relay.setup_code)())
        .await
        .unwrap();
    let member = home(dirs[1].path());
    join_member(&owner, &member, "Member").await;
    sync::sync_now(&member).await.unwrap();
    sync::sync_now(&owner).await.unwrap();
    let space = SpaceId::parse(&owner.space_id(SpaceKind::Practice).unwrap()).unwrap();
    (owner, member, space)
}

/// The whole practice log as the relay holds it, and the state it verifies to.
async fn full_log(conn: &RelayClient, space: SpaceId) -> (Vec<SignedOp>, LogState) {
    let Response::Log { ops, .. } = conn
        .request(&Request::GetLog {
            space,
            from: 0,
            invite: None,
        })
        .await
        .unwrap()
    else {
        panic!("no log")
    };
    let state = LogState::verify(&ops, None).unwrap();
    (ops, state)
}

/// Appends `extra` to every log answer for `space` that reaches the relay's end.
fn append_to_log(space: SpaceId, extra: Vec<SignedOp>) -> Box<Rewrite> {
    Box::new(move |request, answer| match (request, answer) {
        (Request::GetLog { space: s, from, .. }, Response::Log { mut ops, len })
            if *s == space && from + ops.len() as u64 >= len =>
        {
            ops.extend(extra.iter().cloned());
            Response::Log {
                ops,
                len: len + extra.len() as u64,
            }
        }
        (_, answer) => answer,
    })
}

/// What the member verified and holds, to compare before and after an attack.
fn verified(home: &Home) -> (u64, u32, usize, usize) {
    let state = home.membership(SpaceKind::Practice).unwrap().unwrap();
    (
        state.len,
        state.epoch,
        state.members.len(),
        home.space_keys(SpaceKind::Practice).unwrap().len(),
    )
}

/// Runs one round of `member` through `rewrite`; returns its error.
async fn attacked_round(member: &Home, rewrite: Box<Rewrite>) -> String {
    let conn = sync::connect_known(member).await.unwrap();
    let before = verified(member);
    let result = sync::round(
        member,
        &Dishonest {
            inner: &conn,
            rewrite,
        },
    )
    .await;
    conn.close().await;
    assert_eq!(verified(member), before, "nothing the attack sent was kept");
    result.expect_err("the attack was accepted").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cannot_install_a_key_add_a_member_or_alter_an_operation() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (owner, member, space) = practice(&relay, &dirs).await;
    let conn = sync::connect_known(&owner).await.unwrap();
    let (ops, state) = full_log(&conn, space).await;
    let forger = Identity::generate("relay").unwrap();

    // A key the relay chose, sealed to every device's real X25519 key from the log, in a
    // rotation signed by the relay's own key: it would read everything written after.
    let (_, rotation) = keyring::rotation(&state, state.epoch + 1, now());
    let own_rotation = next_op(
        &state,
        Op::Rotate {
            rotation: rotation.clone(),
        },
        now(),
        forger.key_pkcs8(),
    )
    .unwrap();
    let refused = attacked_round(&member, append_to_log(space, vec![own_rotation])).await;
    assert!(refused.contains("not a member"), "{refused}");

    // The same rotation claiming the owner as signer (the relay cannot sign for it).
    let mut as_owner = next_op(&state, Op::Rotate { rotation }, now(), forger.key_pkcs8()).unwrap();
    as_owner.signer = ops[0].signer;
    let refused = attacked_round(&member, append_to_log(space, vec![as_owner])).await;
    assert!(refused.contains("signature"), "{refused}");

    // A phantom member: a device the relay made up admitting itself with an invite the
    // log holds, without the invite's secret for the proof.
    let pending_secret = keyring::InviteSecret::generate();
    sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    let (_, state) = full_log(&conn, space).await;
    let invite = *state.invites.keys().next().unwrap();
    let phantom = Identity::generate("phantom").unwrap();
    let keys = rapport_wire::membership::DeviceKeys {
        signing: phantom.public_key().try_into().unwrap(),
        x25519: [7; 32],
    };
    let admit = next_op(
        &state,
        Op::Admit {
            invite,
            device: keys,
            member: "phantom".into(),
            proof: pending_secret.admit_proof(space, &keys, "phantom"),
        },
        now(),
        phantom.key_pkcs8(),
    )
    .unwrap();
    // The member fetches the invite first (honestly), then the forged admission.
    sync::sync_now(&member).await.unwrap();
    let refused = attacked_round(&member, append_to_log(space, vec![admit])).await;
    assert!(refused.contains("proof"), "{refused}");

    // An operation the owner really signed, altered in flight (one byte of the keys it
    // seals): the signature no longer holds.
    let tamper: Box<Rewrite> = Box::new(move |request, answer| match (request, answer) {
        (Request::GetLog { .. }, Response::Log { mut ops, len }) if !ops.is_empty() => {
            let last = ops.len() - 1;
            let end = ops[last].body.len() - 1;
            ops[last].body[end] ^= 1;
            Response::Log { ops, len }
        }
        (_, answer) => answer,
    });
    // (A new invite by the owner: the member has not fetched it yet.)
    sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    let refused = attacked_round(&member, tamper).await;
    assert!(refused.contains("signature"), "{refused}");
    conn.close().await;
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_or_replayed_log_is_refused() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_owner, member, space) = practice(&relay, &dirs).await;
    let known = member.membership(SpaceKind::Practice).unwrap().unwrap();

    // Rolled back: the relay claims a shorter log than the member verified (say, to undo
    // a removal it was asked to enforce).
    let rollback: Box<Rewrite> = Box::new(move |request, answer| match (request, answer) {
        (Request::GetLog { space: s, .. }, Response::Log { .. }) if *s == space => Response::Log {
            ops: vec![],
            len: known.len - 1,
        },
        (_, answer) => answer,
    });
    let refused = attacked_round(&member, rollback).await;
    assert!(refused.contains("rolled back"), "{refused}");

    // Replayed: an operation already in the log served again as if new.
    let conn = sync::connect_known(&member).await.unwrap();
    let (ops, _) = full_log(&conn, space).await;
    conn.close().await;
    let refused = attacked_round(&member, append_to_log(space, vec![ops[1].clone()])).await;
    assert!(
        refused.contains("forks from the one this device verified"),
        "{refused}"
    );
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_refuses_another_practice_s_log_an_altered_admission_or_a_stretched_snapshot() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (owner, _member, space) = practice(&relay, &dirs).await;
    // Another practice on the same relay, whose log the relay serves instead.
    let other = home(dirs[2].path());
    other.create_practice("Decoy", "Decoy Owner").unwrap();
    sync::connect_practice(&other, &(relay.setup_code)())
        .await
        .unwrap();
    let other_conn = sync::connect_known(&other).await.unwrap();
    let other_space = SpaceId::parse(&other.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let (decoy, _) = full_log(&other_conn, other_space).await;
    other_conn.close().await;

    let invite = sync::create_invite(&owner, Role::Member, 3600)
        .await
        .unwrap();
    let code = InviteCode::decode(&invite).unwrap();
    let attacks: Vec<(&str, Box<Rewrite>)> = vec![
        (
            "does not start where the invite says",
            Box::new(move |request, answer| match (request, answer) {
                (Request::GetLog { .. }, Response::Log { .. }) => Response::Log {
                    len: decoy.len() as u64,
                    ops: decoy.clone(),
                },
                (_, answer) => answer,
            }),
        ),
        (
            "signature",
            // The member's X25519 key swapped for one the relay holds (the last 32
            // bytes of an admission's body are not it, but any byte of the body is
            // covered by the signature).
            Box::new(move |request, answer| match (request, answer) {
                (Request::GetLog { .. }, Response::Log { mut ops, len }) if ops.len() > 2 => {
                    let body = &mut ops[2].body;
                    let middle = body.len() / 2;
                    body[middle] ^= 0x55;
                    Response::Log { ops, len }
                }
                (_, answer) => answer,
            }),
        ),
        (
            "as covering the log up to",
            // The snapshot claims to cover more than was sealed into it, so the joiner
            // would skip the entries in between.
            Box::new(move |request, answer| match (request, answer) {
                (Request::GetSnapshot { .. }, Response::Snapshot(Some(mut snapshot))) => {
                    snapshot.covers += 5;
                    Response::Snapshot(Some(snapshot))
                }
                (_, answer) => answer,
            }),
        ),
    ];
    for (n, (what, rewrite)) in attacks.into_iter().enumerate() {
        let joiner = home(dirs[3].path().join(n.to_string()).as_path());
        let conn = sync::connect::connect(&joiner, &code.addr, code.fingerprint)
            .await
            .unwrap();
        let refused = sync::join::join_via(
            &joiner,
            &Dishonest {
                inner: &conn,
                rewrite,
            },
            &code,
            "Joiner",
            &|_, _| {},
        )
        .await
        .expect_err(what)
        .to_string();
        conn.close().await;
        assert!(refused.contains(what), "{what}: {refused}");
        assert!(
            joiner.space_id(SpaceKind::Practice).is_err(),
            "{what}: nothing was installed"
        );
    }
    let _ = space;
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_under_a_key_the_relay_withholds_are_held_not_skipped() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (owner, member, space) = practice(&relay, &dirs).await;
    let third = home(dirs[2].path());
    join_member(&owner, &third, "Third").await;
    sync::sync_now(&third).await.unwrap();
    sync::sync_now(&member).await.unwrap();
    let before = member.membership(SpaceKind::Practice).unwrap().unwrap();
    // The owner removes the third device (a new key) and writes under it.
    sync::remove_device(
        &owner,
        &third.device_identity().unwrap().device_id().to_string(),
    )
    .await
    .unwrap();
    let after = owner.add_partner(partner("Under the New Key")).unwrap();
    sync::sync_now(&owner).await.unwrap();

    // The relay hides the rotation from the member but delivers the entries.
    let hide: Box<Rewrite> = Box::new(move |request, answer| match (request, answer) {
        (Request::GetLog { space: s, from, .. }, Response::Log { ops, .. }) if *s == space => {
            let keep = before.len.saturating_sub(*from) as usize;
            Response::Log {
                ops: ops.into_iter().take(keep).collect(),
                len: before.len,
            }
        }
        (_, answer) => answer,
    });
    let conn = sync::connect_known(&member).await.unwrap();
    let cursor = member.sync_position(SpaceKind::Practice).unwrap().cursor;
    let report = sync::round(
        &member,
        &Dishonest {
            inner: &conn,
            rewrite: hide,
        },
    )
    .await
    .unwrap();
    assert!(report.held > 0, "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    assert!(member.partner(&after.id).is_err());
    assert_eq!(
        member.sync_position(SpaceKind::Practice).unwrap().cursor,
        cursor,
        "the cursor stays before what it could not open"
    );
    conn.close().await;
    // An honest round brings the rotation, and with it what was held.
    let report = sync::sync_now(&member).await.unwrap();
    assert!(report.merged > 0, "{report:?}");
    assert_eq!(member.partner(&after.id).unwrap().name, "Under the New Key");
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_withholds_one_device_s_entries_is_noticed_and_a_later_honest_one_heals() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (owner, member, _space) = practice(&relay, &dirs).await;
    let third = home(dirs[2].path());
    join_member(&owner, &third, "Third").await;
    for device in [&third, &member, &owner, &third] {
        let report = sync::sync_now(device).await.unwrap();
        assert!(report.withheld.is_empty(), "an honest relay: {report:?}");
    }
    // The owner writes; the member gets it and writes too, so the member's push carries
    // the owner's signed heads.
    let hidden = owner.add_partner(partner("Hidden by the Relay")).unwrap();
    sync::sync_now(&owner).await.unwrap();
    sync::sync_now(&member).await.unwrap();
    let seen = member.add_partner(partner("Seen by Everyone")).unwrap();
    sync::sync_now(&member).await.unwrap();

    // The relay drops every entry of the owner's on its way to the third device.
    let owner_device = owner.device_identity().unwrap().device_id();
    let practice_space = SpaceId::parse(&third.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let rereads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = rereads.clone();
    let drop_owner = move || -> Box<Rewrite> {
        let counter = counter.clone();
        Box::new(move |request, answer| {
            // Reading from the start: a pull from 0, or (the log was pruned, which the
            // relay answers with an error) the snapshot the device goes to instead.
            if matches!(request, Request::Pull { space, after: 0, .. } | Request::GetSnapshot { space } if *space == practice_space)
            {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            match answer {
                Response::Entries {
                    entries,
                    more,
                    head,
                } => Response::Entries {
                    entries: entries
                        .into_iter()
                        .filter(|e| e.sender != owner_device)
                        .collect(),
                    more,
                    head,
                },
                answer => answer,
            }
        })
    };
    let rereads = move || rereads.load(std::sync::atomic::Ordering::SeqCst);
    let conn = sync::connect_known(&third).await.unwrap();
    let attacked = |rewrite| Dishonest {
        inner: &conn,
        rewrite,
    };
    let report = sync::round(&third, &attacked(drop_owner())).await.unwrap();
    assert!(third.partner(&hidden.id).is_err(), "the attack took place");
    assert!(
        report
            .withheld
            .iter()
            .any(|w| w.contains("the relay has not delivered all the changes Owner's device")),
        "the owner's withheld changes are named: {report:?}"
    );
    assert_eq!(rereads(), 0);
    // Still withholding: said again every round; the log is read again from its start
    // once for this finding, not every round.
    for _ in 0..2 {
        let again = sync::round(&third, &attacked(drop_owner())).await.unwrap();
        assert!(!again.withheld.is_empty(), "{again:?}");
    }
    assert_eq!(rereads(), 1, "one re-read per finding");
    assert!(
        sync::witness::last_found(&third)
            .unwrap()
            .iter()
            .any(|w| w.contains("Owner's device")),
        "the background status says it too"
    );
    conn.close().await;

    // The relay turns honest and the owner writes again: the third device still lacks
    // what came before (its cursor is past it), notices anew, and reads the relay's log
    // from its start once, which makes it whole.
    owner.add_partner(partner("Written Later")).unwrap();
    sync::sync_now(&owner).await.unwrap();
    let report = sync::sync_now(&third).await.unwrap();
    assert!(!report.withheld.is_empty(), "{report:?}");
    let report = sync::sync_now(&third).await.unwrap();
    assert!(report.withheld.is_empty(), "{report:?}");
    assert_eq!(
        third.partner(&hidden.id).unwrap().name,
        "Hidden by the Relay"
    );
    assert_eq!(third.partner(&seen.id).unwrap().name, "Seen by Everyone");
    assert!(sync::witness::last_found(&third).unwrap().is_empty());
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_cannot_write_under_the_key_it_kept_through_a_relay_that_lets_it() {
    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (owner, member, space) = practice(&relay, &dirs).await;
    let removed = home(dirs[2].path());
    join_member(&owner, &removed, "Soon Removed").await;
    sync::sync_now(&removed).await.unwrap();
    let old_epoch = removed
        .membership(SpaceKind::Practice)
        .unwrap()
        .unwrap()
        .epoch;
    let old_key = removed
        .space_key(SpaceKind::Practice, old_epoch)
        .unwrap()
        .unwrap();
    sync::remove_device(
        &owner,
        &removed.device_identity().unwrap().device_id().to_string(),
    )
    .await
    .unwrap();
    owner.add_partner(partner("Under the New Key")).unwrap();
    sync::sync_now(&owner).await.unwrap();
    let report = sync::sync_now(&member).await.unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");

    // The removed device writes under the key it kept; the relay slips the entry in.
    let before = removed.heads(SpaceKind::Practice).unwrap();
    let forged = removed
        .add_partner(partner("Written After Removal"))
        .unwrap();
    let pieces = removed
        .changes_since_in_pieces(SpaceKind::Practice, &before, 1 << 19)
        .unwrap();
    let identity = removed.device_identity().unwrap();
    let blob = rapport_core::sealed::crypto::seal(
        &old_key,
        space,
        identity.key_pkcs8(),
        &rapport_core::sealed::entry::encode(&[], &pieces[0]),
    )
    .unwrap();
    let sender = identity.device_id();
    let slip_in: Box<Rewrite> = Box::new(move |request, answer| match (request, answer) {
        (
            Request::Pull { space: s, .. },
            Response::Entries {
                mut entries, head, ..
            },
        ) if *s == space => {
            entries.push(rapport_wire::frames::Entry {
                seq: head + 1,
                epoch: old_epoch,
                sender,
                blob: blob.clone(),
            });
            Response::Entries {
                entries,
                more: false,
                head: head + 1,
            }
        }
        (_, answer) => answer,
    });
    let conn = sync::connect_known(&member).await.unwrap();
    let report = sync::round(
        &member,
        &Dishonest {
            inner: &conn,
            rewrite: slip_in,
        },
    )
    .await
    .unwrap();
    conn.close().await;
    assert!(
        report
            .rejected
            .iter()
            .any(|r| r.contains("removed from the space")),
        "{report:?}"
    );
    assert!(member.partner(&forged.id).is_err(), "nothing of it merged");
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_pass_off_a_change_as_a_colleagues() {
    use automerge::ReadDoc as _;
    use automerge::transaction::Transactable as _;

    let relay = relay().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (owner, member, space) = practice(&relay, &dirs).await;
    let forger = home(dirs[2].path());
    join_member(&owner, &forger, "Forger").await;
    sync::sync_now(&forger).await.unwrap();
    sync::sync_now(&member).await.unwrap();
    let target = owner
        .partners_by_exact_name("Before the Attack")
        .unwrap()
        .unwrap();

    // The forger writes a change under the owner's Automerge actor and pushes it, signed
    // and sealed as itself (a member may push; it cannot make the change the owner's).
    let mut doc =
        automerge::Automerge::load(&forger.export_document(SpaceKind::Practice).unwrap()).unwrap();
    let owner_device = owner.device_identity().unwrap().device_id();
    doc.set_actor(automerge::ActorId::from(owner_device.0.as_slice()));
    let before = doc.get_heads();
    doc.transact(|tx| {
        let (_, partners) = tx.get(automerge::ROOT, "partners")?.unwrap();
        let (_, record) = tx.get(&partners, target.id.as_str())?.unwrap();
        tx.put(&record, "name", "Renamed as the Owner")
    })
    .unwrap();
    let change = doc.save_after(&before);
    let key = forger
        .current_space_key(SpaceKind::Practice)
        .unwrap()
        .unwrap();
    let identity = forger.device_identity().unwrap();
    let blob = rapport_core::sealed::crypto::seal(
        &key,
        space,
        identity.key_pkcs8(),
        &rapport_core::sealed::entry::encode(&[], &change),
    )
    .unwrap();
    let conn = sync::connect_known(&forger).await.unwrap();
    conn.request(&Request::Push {
        space,
        epoch: key.epoch,
        client_msg_id: [9; 16],
        blob,
    })
    .await
    .unwrap();
    conn.close().await;

    for receiver in [&member, &owner] {
        let report = sync::sync_now(receiver).await.unwrap();
        assert!(
            report
                .rejected
                .iter()
                .any(|r| r.contains("written as another device's")),
            "{report:?}"
        );
        assert_eq!(
            receiver.partner(&target.id).unwrap().name,
            "Before the Attack",
            "the forged change was merged"
        );
    }
    // Honest changes of every device still flow after it.
    let later = forger.add_partner(partner("Honest Later")).unwrap();
    sync::sync_now(&forger).await.unwrap();
    let report = sync::sync_now(&member).await.unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");
    assert_eq!(member.partner(&later.id).unwrap().name, "Honest Later");
    let _ = relay.stop.send(());
    relay.task.await.unwrap();
}
