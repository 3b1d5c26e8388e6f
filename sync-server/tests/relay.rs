//! The relay over real QUIC on loopback: the protocol, every refusal, durability, limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rapport_wire::client::{Notice, RelayClient};
use rapport_wire::frames::{
    CLOSE_REMOVED, ErrorCode, MAX_BLOB, MAX_INLINE, Request, Response, Role, Snapshot, encode,
};
use rapport_wire::identity::Identity;
use rapport_wire::membership::{LogState, Op, SpaceKind, next_op};
use rapport_wire::{DeviceId, SpaceId};

fn code(result: Result<Response, rapport_wire::client::ClientError>) -> ErrorCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("not a refusal: {e}")),
        Ok(r) => panic!("expected a refusal, got {r:?}"),
    }
}

#[tokio::test]
async fn register_invite_join_push_pull_in_order_and_idempotently() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;

    let mut seqs = Vec::new();
    for i in 0..5u8 {
        let Response::Pushed { seq, duplicate } = push(&member, space, i, &[i; 64]).await.unwrap()
        else {
            panic!()
        };
        assert!(!duplicate);
        seqs.push(seq);
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    // A retry with the same client message id is not stored twice.
    assert_eq!(
        push(&member, space, 2, &[2; 64]).await.unwrap(),
        Response::Pushed {
            seq: 3,
            duplicate: true
        }
    );

    let Response::Entries {
        entries,
        more,
        head,
    } = owner
        .client
        .request(&Request::Pull {
            space,
            after: 1,
            limit: 2,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            more,
            head
        ),
        (vec![2, 3], true, 5)
    );
    assert_eq!(entries[0].sender, member.id());
    assert_eq!(entries[1].blob, vec![2; 64]);
    let Response::Entries { entries, more, .. } = owner
        .client
        .request(&Request::Pull {
            space,
            after: 3,
            limit: 100,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((entries.len(), more), (2, false));

    let log = owner.log(space).await;
    assert_eq!(
        log.members
            .iter()
            .map(|(device, m)| (*device, m.role))
            .collect::<std::collections::BTreeMap<_, _>>(),
        [(owner.id(), Role::Owner), (member.id(), Role::Member)]
            .into_iter()
            .collect()
    );
    relay.stop().await;
}

#[tokio::test]
async fn subscribers_hear_of_new_entries() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    let mut notices = owner.client.subscribe(vec![space]).await.unwrap();
    push(&member, space, 1, b"sealed").await.unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // A small entry travels whole inside the subscription.
    let Notice::Entry {
        space: heard,
        entry,
    } = notice
    else {
        panic!("a small entry was only announced: {notice:?}")
    };
    assert_eq!(
        (heard, entry.seq, entry.sender, entry.blob.as_slice()),
        (space, 1, member.id(), b"sealed".as_slice())
    );
    // A larger one is announced, to be pulled.
    push(&member, space, 2, &vec![7u8; MAX_INLINE + 1])
        .await
        .unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice, Some(Notice::Newest { space, seq: 2 }));
    // Another practice's space cannot be subscribed to.
    let (other_space, _other) = practice(&relay).await;
    let refused = member
        .client
        .subscribe(vec![other_space])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some(ErrorCode::NotMember));
    // A subscription to nothing is not a way around membership.
    let refused = device(&relay)
        .await
        .client
        .subscribe(vec![])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some(ErrorCode::BadRequest));
    relay.stop().await;
}

#[tokio::test]
async fn setup_codes_and_invites_are_single_use_and_checked() {
    let relay = TestRelay::start(loopback_config()).await;
    let token = relay.setup_token();
    let owner = device(&relay).await;
    let space = SpaceId::random();
    let first = genesis(&owner.identity, space, SpaceKind::Practice);
    for _ in 0..2 {
        // The second time stands for a retry after a lost answer: admitted again.
        assert_eq!(
            owner
                .client
                .request(&Request::Register {
                    setup_token: token.clone(),
                    genesis: first.clone(),
                })
                .await
                .unwrap(),
            Response::Admitted { role: Role::Owner }
        );
    }
    let register = |device: &Device, token: Vec<u8>, space: SpaceId| Request::Register {
        setup_token: token,
        genesis: genesis(&device.identity, space, SpaceKind::Practice),
    };
    assert_eq!(
        code(
            owner
                .client
                .request(&register(&owner, token.clone(), SpaceId::random()))
                .await
        ),
        ErrorCode::AlreadyUsed,
        "a used code registers no second practice, even for its device"
    );
    let again = device(&relay).await;
    assert_eq!(
        code(
            again
                .client
                .request(&register(&again, token, SpaceId::random()))
                .await
        ),
        ErrorCode::AlreadyUsed
    );
    assert_eq!(
        code(
            again
                .client
                .request(&register(&again, vec![9; 32], SpaceId::random()))
                .await
        ),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        code(
            again
                .client
                .request(&register(&again, relay.setup_token(), space))
                .await
        ),
        ErrorCode::SpaceExists
    );
    // A genesis signed by one device cannot be registered by another.
    assert_eq!(
        code(
            again
                .client
                .request(&Request::Register {
                    setup_token: relay.setup_token(),
                    genesis: genesis(&owner.identity, SpaceId::random(), SpaceKind::Practice),
                })
                .await
        ),
        ErrorCode::Forbidden
    );

    // An invite works once.
    let invite = owner.invite(space, Role::Admin, 600).await.unwrap();
    let admin = device(&relay).await;
    assert!(matches!(
        invite.admit(space, &admin).await.unwrap(),
        Response::Appended { len: 3 }
    ));
    assert_eq!(admin.log(space).await.role(admin.id()), Some(Role::Admin));
    let late = device(&relay).await;
    assert_eq!(
        code(invite.admit(space, &late).await),
        ErrorCode::NotMember,
        "a used invite does not even let a device read the log"
    );
    // Without the invite's secret a device cannot read the log; with a proof made for
    // another device it cannot either.
    let pending = owner.invite(space, Role::Member, 600).await.unwrap();
    for proof in [
        None,
        Some(pending.read(space, admin.id())),
        Some(TestInvite::new().read(space, late.id())),
    ] {
        assert_eq!(
            code(
                late.client
                    .request(&Request::GetLog {
                        space,
                        from: 0,
                        invite: proof
                    })
                    .await
            ),
            ErrorCode::NotMember
        );
    }
    // An expired invite is refused.
    let expiring = admin.invite(space, Role::Member, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        code(expiring.admit(space, &late).await),
        ErrorCode::NotMember
    );
    // An invite for one space does not open another.
    let (other, _other_owner) = practice(&relay).await;
    assert_eq!(
        code(pending.admit(other, &late).await),
        ErrorCode::NotMember
    );
    // Owner invites are not a thing; the relay refuses what the rules refuse.
    let state = owner.log(space).await;
    assert!(matches!(
        owner
            .append(space, TestInvite::new().op(&state, Role::Owner, now() + 600, None))
            .await,
        Err(e) if e.code() == Some(ErrorCode::Forbidden) && e.to_string().contains("not an owner")
    ));
    // The pending invite still works.
    assert!(pending.admit(space, &late).await.is_ok());
    relay.stop().await;
}

#[tokio::test]
async fn members_only_and_roles_are_enforced() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    let stranger = device(&relay).await;
    let (other_space, other_owner) = practice(&relay).await;

    // Unknown devices and other practices' devices see nothing.
    assert_eq!(
        code(push(&stranger, space, 1, b"x").await),
        ErrorCode::NotMember
    );
    let pull = |space| Request::Pull {
        space,
        after: 0,
        limit: 10,
    };
    assert_eq!(
        code(stranger.client.request(&pull(space)).await),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(other_owner.client.request(&pull(space)).await),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(member.client.request(&pull(other_space)).await),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(
            stranger
                .client
                .request(&Request::GetLog {
                    space,
                    from: 0,
                    invite: None
                })
                .await
        ),
        ErrorCode::NotMember
    );
    let personal_of = |device: &Device, practice| Request::CreateSpace {
        genesis: genesis(
            &device.identity,
            SpaceId::random(),
            SpaceKind::Personal { practice },
        ),
    };
    assert_eq!(
        code(
            stranger
                .client
                .request(&personal_of(&stranger, space))
                .await
        ),
        ErrorCode::NotMember
    );

    // Members cannot invite, remove or rotate keys.
    assert_eq!(
        code(
            member
                .invite(space, Role::Member, 600)
                .await
                .map(|_| Response::Ok)
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(member.remove(space, &[owner.id()]).await),
        ErrorCode::Forbidden
    );
    let state = member.log(space).await;
    assert_eq!(
        code(
            member
                .append(
                    space,
                    Op::Rotate {
                        rotation: rotation_for(&state, 2)
                    }
                )
                .await
        ),
        ErrorCode::Forbidden
    );
    // An admin cannot remove the owner.
    let admin = join(&relay, space, &owner, Role::Admin).await;
    assert_eq!(
        code(admin.remove(space, &[owner.id()]).await),
        ErrorCode::Forbidden
    );
    // An operation is uploaded by its signer only.
    let state = owner.log(space).await;
    let op = next_op(
        &state,
        Op::Rotate {
            rotation: rotation_for(&state, 2),
        },
        now(),
        owner.identity.key_pkcs8(),
    )
    .unwrap();
    assert_eq!(
        code(admin.client.request(&Request::AppendOp { space, op }).await),
        ErrorCode::Forbidden
    );

    // A member may create its personal space.
    let personal = SpaceId::random();
    let personal_genesis = genesis(
        &member.identity,
        personal,
        SpaceKind::Personal { practice: space },
    );
    for _ in 0..2 {
        // Registering it again (a lost answer, a resumed join) is admitted.
        assert_eq!(
            member
                .client
                .request(&Request::CreateSpace {
                    genesis: personal_genesis.clone()
                })
                .await
                .unwrap(),
            Response::Admitted { role: Role::Owner }
        );
    }
    // Anyone else registering that id is refused.
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::CreateSpace {
                    genesis: genesis(
                        &owner.identity,
                        personal,
                        SpaceKind::Personal { practice: space }
                    ),
                })
                .await
        ),
        ErrorCode::SpaceExists
    );
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::Pull {
                    space: personal,
                    after: 0,
                    limit: 1
                })
                .await
        ),
        ErrorCode::NotMember
    );
    // A practice is registered with a setup code, not as a personal space.
    assert_eq!(
        code(
            member
                .client
                .request(&Request::CreateSpace {
                    genesis: genesis(&member.identity, SpaceId::random(), SpaceKind::Practice),
                })
                .await
        ),
        ErrorCode::BadRequest
    );
    relay.stop().await;
}

#[tokio::test]
async fn two_admins_on_one_head_take_turns_and_both_removals_take_effect() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let admin = join(&relay, space, &owner, Role::Admin).await;
    let a = join(&relay, space, &owner, Role::Member).await;
    let b = join(&relay, space, &owner, Role::Member).await;
    // Both decide on the same head.
    let seen = owner.log(space).await;
    let removal = |by: &Device, target: DeviceId, state: &LogState| {
        let mut after = state.clone();
        after.members.remove(&target);
        next_op(
            state,
            Op::Remove {
                devices: vec![target],
                rotation: rotation_for(&after, state.epoch + 1),
            },
            now(),
            by.identity.key_pkcs8(),
        )
        .unwrap()
    };
    let first = removal(&owner, a.id(), &seen);
    let second = removal(&admin, b.id(), &seen);
    assert!(
        owner
            .client
            .request(&Request::AppendOp { space, op: first })
            .await
            .is_ok()
    );
    assert_eq!(
        code(
            admin
                .client
                .request(&Request::AppendOp { space, op: second })
                .await
        ),
        ErrorCode::Stale
    );
    // The admin fetches, decides again and retries: both removals hold, one key per epoch.
    let fresh = admin.log(space).await;
    let retry = removal(&admin, b.id(), &fresh);
    assert!(
        admin
            .client
            .request(&Request::AppendOp { space, op: retry })
            .await
            .is_ok()
    );
    let log = owner.log(space).await;
    assert_eq!(log.epoch, 3);
    assert!(!log.is_member(a.id()) && !log.is_member(b.id()));
    // Entries under an old epoch are refused: the remaining devices seal under the new one.
    assert_eq!(
        code(push_at(&owner, space, 2, 1, b"stale").await),
        ErrorCode::StaleEpoch
    );
    assert!(push_at(&owner, space, 3, 1, b"fresh").await.is_ok());
    relay.stop().await;
}

#[tokio::test]
async fn a_removed_device_is_disconnected_at_once_and_refused_after_on_every_space() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    let personal = SpaceId::random();
    member
        .client
        .request(&Request::CreateSpace {
            genesis: genesis(
                &member.identity,
                personal,
                SpaceKind::Personal { practice: space },
            ),
        })
        .await
        .unwrap();
    let connection = member.client.connection().clone();
    owner.remove(space, &[member.id()]).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_REMOVED.into())
        }
        other => panic!("closed for another reason: {other}"),
    }
    let again = Device {
        client: reconnect(&relay, &member.identity).await,
        identity: member.identity.clone(),
    };
    for space in [space, personal] {
        assert_eq!(
            code(
                again
                    .client
                    .request(&Request::Pull {
                        space,
                        after: 0,
                        limit: 1
                    })
                    .await
            ),
            ErrorCode::NotMember,
            "refused on the practice and on its personal space at once"
        );
    }
    // A new invite cannot bring a removed device back.
    let invite = owner.invite(space, Role::Member, 600).await.unwrap();
    assert_eq!(
        code(invite.admit(space, &again).await),
        ErrorCode::Forbidden
    );
    assert!(owner.log(space).await.removed.contains_key(&member.id()));

    // An admin's invite dies with the admin.
    let admin = join(&relay, space, &owner, Role::Admin).await;
    let invite = admin.invite(space, Role::Admin, 600).await.unwrap();
    owner.remove(space, &[admin.id()]).await.unwrap();
    let joiner = device(&relay).await;
    assert_eq!(
        code(invite.admit(space, &joiner).await),
        ErrorCode::NotMember
    );
    relay.stop().await;
}

#[tokio::test]
async fn snapshots_replace_only_with_more_and_only_managers_prune() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    for i in 0..5u8 {
        push(&member, space, i, &[i]).await.unwrap();
    }
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::Prune { space, through: 3 })
                .await
        ),
        ErrorCode::BadRequest,
        "no snapshot yet"
    );
    let put = |epoch, covers, blob: &[u8]| Request::PutSnapshot {
        space,
        epoch,
        covers,
        blob: blob.to_vec(),
    };
    assert_eq!(
        code(member.client.request(&put(1, 9, &[0])).await),
        ErrorCode::BadRequest,
        "cannot cover entries that do not exist"
    );
    assert_eq!(
        code(member.client.request(&put(7, 3, &[0])).await),
        ErrorCode::StaleEpoch,
        "sealed under the current epoch only"
    );
    member.client.request(&put(1, 3, b"snap")).await.unwrap();
    assert_eq!(
        code(member.client.request(&put(1, 3, b"replayed")).await),
        ErrorCode::BadRequest,
        "a snapshot covering the same is not a replacement"
    );
    assert_eq!(
        code(member.client.request(&put(1, 2, b"older")).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(
            member
                .client
                .request(&Request::Prune { space, through: 3 })
                .await
        ),
        ErrorCode::Forbidden,
        "a member does not prune"
    );
    owner
        .client
        .request(&Request::Prune { space, through: 10 })
        .await
        .unwrap();
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::Pull {
                    space,
                    after: 0,
                    limit: 10
                })
                .await
        ),
        ErrorCode::Pruned
    );
    let Response::Entries { entries, .. } = owner
        .client
        .request(&Request::Pull {
            space,
            after: 3,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5],
        "only what the snapshot covers is pruned"
    );
    let Response::Snapshot(Some(Snapshot {
        covers,
        blob,
        sender,
        ..
    })) = owner
        .client
        .request(&Request::GetSnapshot { space })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((covers, blob, sender), (3, b"snap".to_vec(), member.id()));
    relay.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    for i in 0..3u8 {
        push(&owner, space, i, &[i; 10]).await.unwrap();
    }
    let identity = owner.identity.clone();
    drop(owner);
    let (dir, temp) = relay.stop().await;
    let relay = TestRelay::open(dir, loopback_config()).await;
    let client = reconnect(&relay, &identity).await;
    let Response::Entries { entries, head, .. } = client
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((entries.len(), head), (3, 3));
    let Response::Log { len, .. } = client
        .request(&Request::GetLog {
            space,
            from: 0,
            invite: None,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(len, 1, "the membership log survives too");
    let Response::Pushed { seq, .. } = client
        .request(&Request::Push {
            space,
            epoch: 1,
            client_msg_id: [9; 16],
            blob: vec![1],
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(seq, 4);
    relay.stop().await;
    drop(temp);
}

#[tokio::test]
async fn hello_comes_first_and_versions_are_negotiated() {
    let relay = TestRelay::start(loopback_config()).await;
    let identity = Identity::generate("raw").unwrap();
    let client = RelayClient::connect(relay.addr, &identity, relay.fingerprint)
        .await
        .unwrap();
    assert_eq!(client.version(), 2);
    // A device of the first protocol is told to update itself; one newer than the relay
    // is told to have the relay updated.
    for (versions, advice) in [
        (vec![1], "update Rapport on this device"),
        (vec![99], "update rapport-relay"),
    ] {
        let refused = client
            .request(&Request::Hello { versions })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::UnsupportedVersion));
        assert!(refused.to_string().contains(advice), "{refused}");
    }
    // A fresh connection that skips Hello is told to say it first.
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = rapport_wire::tls::client_config(&identity, relay.fingerprint).unwrap();
    let conn = endpoint
        .connect_with(config, relay.addr, "rapport-relay")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    rapport_wire::frames::write_frame(
        &mut send,
        &Request::Pull {
            space: SpaceId::random(),
            after: 0,
            limit: 1,
        },
    )
    .await
    .unwrap();
    send.finish().unwrap();
    let response: Response = rapport_wire::frames::read_frame(&mut recv, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(response, Response::Error { code: ErrorCode::BadRequest, ref message } if message.contains("Hello"))
    );
    // Before its Hello is answered a connection may send only a small frame.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let announced = u32::try_from(rapport_wire::frames::MAX_FIRST_FRAME + 1).unwrap();
    send.write_all(&announced.to_be_bytes()).await.unwrap();
    let err = recv.read_to_end(1024).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&ErrorCode::TooLarge.quic_code().to_string()),
        "{err}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_frames_reset_the_stream_and_the_relay_carries_on() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let conn = owner.client.connection().clone();
    // Garbage bytes.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 4, 0xff, 0xfe, 0xfd, 0xfc])
        .await
        .unwrap();
    send.finish().unwrap();
    let err = recv.read_to_end(1024).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&ErrorCode::BadRequest.quic_code().to_string()),
        "{err}"
    );
    // A length prefix over the cap is refused before anything is allocated.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let err = recv.read_to_end(1024).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&ErrorCode::TooLarge.quic_code().to_string()),
        "{err}"
    );
    // A blob over the push limit is refused with a typed error.
    assert_eq!(
        code(push(&owner, space, 1, &vec![0; MAX_BLOB + 1]).await),
        ErrorCode::TooLarge
    );
    // The same connection still works.
    assert!(matches!(
        push(&owner, space, 2, b"fine").await.unwrap(),
        Response::Pushed { seq: 1, .. }
    ));
    // A frame body encoded by us but truncated on the wire.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let bytes = encode(&Request::Pull {
        space,
        after: 0,
        limit: 1,
    })
    .unwrap();
    send.write_all(&bytes[..bytes.len() - 2]).await.unwrap();
    send.finish().unwrap();
    assert!(recv.read_to_end(1024).await.is_err());
    assert!(matches!(
        push(&owner, space, 3, b"still fine").await.unwrap(),
        Response::Pushed { seq: 2, .. }
    ));
    relay.stop().await;
}

#[tokio::test]
async fn no_client_certificate_no_connection() {
    let relay = TestRelay::start(loopback_config()).await;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = rapport_wire::tls::anonymous_client_config(relay.fingerprint).unwrap();
    let result = async {
        let conn = endpoint
            .connect_with(config, relay.addr, "rapport-relay")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        rapport_wire::frames::write_frame(&mut send, &Request::Hello { versions: vec![2] })
            .await
            .map_err(|e| e.to_string())?;
        send.finish().ok();
        recv.read_to_end(1024).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    }
    .await;
    assert!(
        result.is_err(),
        "a device without a certificate must not be served"
    );
    // A relay with another certificate is refused by a pinned device.
    let identity = Identity::generate("device").unwrap();
    let wrong = RelayClient::connect(relay.addr, &identity, [0; 32]).await;
    assert!(wrong.is_err());
    relay.stop().await;
}

#[tokio::test]
async fn rate_and_connection_limits() {
    let mut config = loopback_config();
    config.rate_per_sec = 0.5;
    config.burst = 3.0;
    config.max_connections = 3;
    let relay = TestRelay::start(config).await;
    let (space, owner) = practice(&relay).await; // Register spends one token
    let mut codes = Vec::new();
    for i in 0..4u8 {
        codes.push(
            push_at(&owner, space, 1, i, b"x")
                .await
                .map(|_| ())
                .map_err(|e| e.code()),
        );
    }
    assert_eq!(codes.iter().filter(|c| c.is_ok()).count(), 2);
    assert!(codes.contains(&Err(Some(ErrorCode::RateLimited))));
    // Buckets are per device: another device is not slowed by this one.
    let other = device(&relay).await;
    assert_eq!(
        code(
            other
                .client
                .request(&Request::Pull {
                    space,
                    after: 0,
                    limit: 1
                })
                .await
        ),
        ErrorCode::NotMember
    );

    let _third = device(&relay).await;
    let identity = Identity::generate("fourth").unwrap();
    let fourth = tokio::time::timeout(
        Duration::from_secs(10),
        RelayClient::connect(relay.addr, &identity, relay.fingerprint),
    )
    .await
    .unwrap();
    assert!(fourth.is_err(), "a connection over the limit is refused");
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_gracefully() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    push(&owner, space, 1, b"before").await.unwrap();
    let conn = owner.client.connection().clone();
    relay.stop().await;
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason}"
    );
    let _ = DeviceId([0; 16]);
}

#[tokio::test]
async fn a_stalled_client_does_not_hold_up_others() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    // The owner starts a frame and never finishes it.
    let (mut stalled, _recv) = owner.client.connection().open_bi().await.unwrap();
    stalled.write_all(&[0, 0, 1, 0, 1, 2, 3]).await.unwrap();
    // Everyone else, the stalled connection included, is served promptly.
    let started = std::time::Instant::now();
    for i in 0..20u8 {
        push(&member, space, i, b"x").await.unwrap();
    }
    push(&owner, space, 99, b"y").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited on the stalled stream"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_page_of_large_entries_stays_under_the_frame_cap() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let big = vec![7u8; MAX_BLOB - 1024];
    for i in 0..20u8 {
        push(&owner, space, i, &big).await.unwrap();
    }
    let Response::Entries {
        entries,
        more,
        head,
    } = owner
        .client
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 1_000,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let bytes: usize = entries.iter().map(|e| e.blob.len()).sum();
    assert!(more && head == 20, "a byte budget ends the page early");
    assert!(
        bytes <= rapport_wire::frames::MAX_PULL_BYTES && !entries.is_empty(),
        "{bytes} bytes in {} entries",
        entries.len()
    );
    let Response::Entries {
        entries: rest,
        more,
        ..
    } = owner
        .client
        .request(&Request::Pull {
            space,
            after: entries.last().unwrap().seq,
            limit: 1_000,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(entries.len() + rest.len(), 20);
    assert!(!more);
    relay.stop().await;
}

#[tokio::test]
async fn a_protocol_1_database_keeps_its_spaces_and_the_connecting_device_adopts_them() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    rapport_relay::data::DataDir::init(&dir, "127.0.0.1:0").unwrap();
    let owner = Identity::generate("owner").unwrap();
    let member = Identity::generate("member").unwrap();
    let space = SpaceId::random();
    {
        let db = rusqlite::Connection::open(dir.join("relay.db")).unwrap();
        db.execute_batch("DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS setup_codes; DROP TABLE IF EXISTS spaces; DROP TABLE IF EXISTS memberships; DROP TABLE IF EXISTS membership_log; DROP TABLE IF EXISTS log_states; DROP TABLE IF EXISTS log; DROP TABLE IF EXISTS snapshots; PRAGMA user_version = 0;").unwrap();
        db.execute_batch(rapport_relay::store::PROTOCOL_1_SCHEMA)
            .unwrap();
        db.execute(
            "INSERT INTO spaces (id, created_at, created_by, head) VALUES (?1, 1, ?2, 2)",
            rusqlite::params![&space.0[..], &owner.device_id().0[..]],
        )
        .unwrap();
        for (device, role) in [(&owner, "owner"), (&member, "member")] {
            db.execute(
                "INSERT INTO memberships (space, device, role, x25519, joined_at) VALUES (?1, ?2, ?3, ?4, 1)",
                rusqlite::params![&space.0[..], &device.device_id().0[..], role, &[0u8; 32][..]],
            )
            .unwrap();
        }
        for seq in 1..=2i64 {
            db.execute(
                "INSERT INTO log (space, seq, epoch, sender, client_msg_id, received_at, blob) VALUES (?1, ?2, 1, ?3, ?4, 1, ?5)",
                rusqlite::params![&space.0[..], seq, &member.device_id().0[..], &[seq as u8; 16][..], &[seq as u8; 8][..]],
            )
            .unwrap();
        }
        db.execute(
            "INSERT INTO key_envelopes (space, epoch, device, sealed, created_by, created_at) VALUES (?1, 2, ?2, x'00', ?3, 1)",
            rusqlite::params![&space.0[..], &member.device_id().0[..], &owner.device_id().0[..]],
        )
        .unwrap();
    }
    let relay = TestRelay::open(dir, loopback_config()).await;
    let member = Device {
        client: reconnect(&relay, &member).await,
        identity: member,
    };
    let refused = member
        .client
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert!(
        refused.code() == Some(ErrorCode::NotMember) && refused.to_string().contains("join again"),
        "{refused}"
    );
    // Only the device that connected the space may give it a log.
    assert_eq!(
        code(
            member
                .client
                .request(&Request::Adopt {
                    genesis: genesis(&member.identity, space, SpaceKind::Practice)
                })
                .await
        ),
        ErrorCode::Forbidden
    );
    let owner = Device {
        client: reconnect(&relay, &owner).await,
        identity: owner,
    };
    assert_eq!(
        owner
            .client
            .request(&Request::Adopt {
                genesis: genesis(&owner.identity, space, SpaceKind::Practice)
            })
            .await
            .unwrap(),
        Response::Admitted { role: Role::Owner }
    );
    // The entries from before are all there, and the other device comes back with an
    // invite, on the new log.
    let Response::Entries { entries, head, .. } = owner
        .client
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((entries.len(), head), (2, 2));
    let invite = owner.invite(space, Role::Member, 600).await.unwrap();
    invite.admit(space, &member).await.unwrap();
    assert!(
        member
            .client
            .request(&Request::Pull {
                space,
                after: 0,
                limit: 10
            })
            .await
            .is_ok()
    );
    let mut other = genesis(&owner.identity, space, SpaceKind::Practice);
    let mut body = other.open().unwrap();
    body.at += 1;
    other = rapport_wire::membership::SignedOp::sign(&body, owner.identity.key_pkcs8()).unwrap();
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::Adopt { genesis: other })
                .await
        ),
        ErrorCode::SpaceExists,
        "a log is given once"
    );
    relay.stop().await;
}

#[cfg(unix)]
#[test]
fn the_data_directory_its_key_and_database_are_owner_only_and_init_is_durable() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("relay-data");
    let data = rapport_relay::data::DataDir::init(&dir, "127.0.0.1:0").unwrap();
    assert_eq!(mode(&dir), 0o700);
    for name in ["identity.key", "identity.crt", "relay.db"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let fingerprint = data.identity.fingerprint();
    drop(data);
    // Init refuses a directory that holds a relay, and leaves it as it was.
    assert!(rapport_relay::data::DataDir::init(&dir, "127.0.0.1:0").is_err());
    let again = rapport_relay::data::DataDir::open(&dir).unwrap();
    assert_eq!(again.identity.fingerprint(), fingerprint);
    // An init cut off after the certificate and before the key starts over.
    let cut = temp.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    std::fs::write(cut.join("identity.crt"), b"half an init").unwrap();
    rapport_relay::data::DataDir::init(&cut, "127.0.0.1:0").unwrap();
    rapport_relay::data::DataDir::open(&cut).unwrap();
}
