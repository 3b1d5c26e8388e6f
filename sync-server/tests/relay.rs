//! The relay over real QUIC on loopback: the protocol, every refusal, durability, limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rapport_wire::client::{Notice, RelayClient};
use rapport_wire::frames::{
    CLOSE_REMOVED, ErrorCode, KeyEnvelope, MAX_BLOB, MAX_INLINE, Request, Response, Role, Snapshot,
    encode,
};
use rapport_wire::identity::Identity;
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

    let Response::Members(members) = owner
        .client
        .request(&Request::ListMembers { space })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        members
            .iter()
            .map(|m| (m.device, m.role))
            .collect::<Vec<_>>(),
        vec![(owner.id(), Role::Owner), (member.id(), Role::Member)]
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
    relay.stop().await;
}

#[tokio::test]
async fn setup_codes_and_invites_are_single_use_and_checked() {
    let mut config = loopback_config();
    config.min_invite_ttl = Duration::ZERO;
    let relay = TestRelay::start(config).await;
    let token = relay.setup_token();
    let owner = device(&relay).await;
    let space = SpaceId::random();
    for _ in 0..2 {
        // The second time stands for a retry after a lost answer: admitted again.
        assert_eq!(
            owner
                .client
                .request(&Request::Register {
                    setup_token: token.clone(),
                    space,
                    x25519: [0; 32],
                })
                .await
                .unwrap(),
            Response::Admitted { role: Role::Owner }
        );
    }
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::Register {
                    setup_token: token.clone(),
                    space: SpaceId::random(),
                    x25519: [0; 32]
                })
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
                .request(&Request::Register {
                    setup_token: token,
                    space: SpaceId::random(),
                    x25519: [0; 32]
                })
                .await
        ),
        ErrorCode::AlreadyUsed
    );
    assert_eq!(
        code(
            again
                .client
                .request(&Request::Register {
                    setup_token: vec![9; 32],
                    space: SpaceId::random(),
                    x25519: [0; 32]
                })
                .await
        ),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        code(
            again
                .client
                .request(&Request::Register {
                    setup_token: relay.setup_token(),
                    space,
                    x25519: [0; 32]
                })
                .await
        ),
        ErrorCode::SpaceExists
    );

    // An invite works once.
    let Response::Invite { token, .. } = owner
        .client
        .request(&Request::CreateInvite {
            space,
            role: Role::Admin,
            ttl_secs: 600,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let admin = device(&relay).await;
    assert_eq!(
        admin
            .client
            .request(&Request::Join {
                space,
                token: token.clone(),
                x25519: [3; 32]
            })
            .await
            .unwrap(),
        Response::Admitted { role: Role::Admin }
    );
    // The same device asking again (its join was cut off) is admitted again; nobody else.
    assert_eq!(
        admin
            .client
            .request(&Request::Join {
                space,
                token: token.clone(),
                x25519: [3; 32]
            })
            .await
            .unwrap(),
        Response::Admitted { role: Role::Admin }
    );
    let late = device(&relay).await;
    assert_eq!(
        code(
            late.client
                .request(&Request::Join {
                    space,
                    token,
                    x25519: [3; 32]
                })
                .await
        ),
        ErrorCode::AlreadyUsed
    );
    // An expired invite is refused.
    let Response::Invite { token, .. } = admin
        .client
        .request(&Request::CreateInvite {
            space,
            role: Role::Member,
            ttl_secs: 0,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        code(
            late.client
                .request(&Request::Join {
                    space,
                    token,
                    x25519: [3; 32]
                })
                .await
        ),
        ErrorCode::Expired
    );
    // An invite for one space does not open another.
    let Response::Invite { token, .. } = owner
        .client
        .request(&Request::CreateInvite {
            space,
            role: Role::Member,
            ttl_secs: 600,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        code(
            late.client
                .request(&Request::Join {
                    space: SpaceId::random(),
                    token,
                    x25519: [3; 32]
                })
                .await
        ),
        ErrorCode::InvalidToken
    );
    // Owner invites are not a thing.
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::CreateInvite {
                    space,
                    role: Role::Owner,
                    ttl_secs: 600
                })
                .await
        ),
        ErrorCode::BadRequest
    );
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
    assert_eq!(
        code(
            stranger
                .client
                .request(&Request::Pull {
                    space,
                    after: 0,
                    limit: 10
                })
                .await
        ),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(
            other_owner
                .client
                .request(&Request::Pull {
                    space,
                    after: 0,
                    limit: 10
                })
                .await
        ),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(
            member
                .client
                .request(&Request::Pull {
                    space: other_space,
                    after: 0,
                    limit: 10
                })
                .await
        ),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(
            stranger
                .client
                .request(&Request::CreateSpace {
                    space: SpaceId::random(),
                    x25519: [0; 32]
                })
                .await
        ),
        ErrorCode::NotMember
    );

    // Members cannot invite, remove or rotate keys.
    assert_eq!(
        code(
            member
                .client
                .request(&Request::CreateInvite {
                    space,
                    role: Role::Member,
                    ttl_secs: 600
                })
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            member
                .client
                .request(&Request::RemoveDevice {
                    space,
                    device: owner.id()
                })
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            member
                .client
                .request(&Request::PutKeyEnvelopes {
                    space,
                    epoch: 2,
                    envelopes: vec![]
                })
                .await
        ),
        ErrorCode::Forbidden
    );
    // An admin cannot remove the owner.
    let admin = join(&relay, space, &owner, Role::Admin).await;
    assert_eq!(
        code(
            admin
                .client
                .request(&Request::RemoveDevice {
                    space,
                    device: owner.id()
                })
                .await
        ),
        ErrorCode::Forbidden
    );

    // A member may create its personal space.
    let personal = SpaceId::random();
    assert_eq!(
        member
            .client
            .request(&Request::CreateSpace {
                space: personal,
                x25519: [0; 32]
            })
            .await
            .unwrap(),
        Response::Admitted { role: Role::Owner }
    );
    // Registering it again (a lost answer, a resumed join) is admitted; anyone else
    // registering that id is refused.
    assert_eq!(
        member
            .client
            .request(&Request::CreateSpace {
                space: personal,
                x25519: [0; 32]
            })
            .await
            .unwrap(),
        Response::Admitted { role: Role::Owner }
    );
    assert_eq!(
        code(
            owner
                .client
                .request(&Request::CreateSpace {
                    space: personal,
                    x25519: [0; 32]
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
    relay.stop().await;
}

#[tokio::test]
async fn a_removed_device_is_disconnected_at_once_and_refused_after() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    let connection = member.client.connection().clone();
    owner
        .client
        .request(&Request::RemoveDevice {
            space,
            device: member.id(),
        })
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_REMOVED.into())
        }
        other => panic!("closed for another reason: {other}"),
    }
    let again = reconnect(&relay, &member.identity).await;
    let refused = again
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotMember));
    // A new invite cannot bring a removed device back.
    let Response::Invite { token, .. } = owner
        .client
        .request(&Request::CreateInvite {
            space,
            role: Role::Member,
            ttl_secs: 600,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        again
            .request(&Request::Join {
                space,
                token,
                x25519: [0; 32]
            })
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotMember)
    );
    let Response::Members(members) = owner
        .client
        .request(&Request::ListMembers { space })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        members
            .iter()
            .any(|m| m.device == member.id() && m.removed_at.is_some())
    );
    relay.stop().await;
}

#[tokio::test]
async fn snapshots_prune_and_key_envelopes() {
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
    assert_eq!(
        code(
            member
                .client
                .request(&Request::PutSnapshot {
                    space,
                    epoch: 1,
                    covers: 9,
                    blob: vec![0]
                })
                .await
        ),
        ErrorCode::BadRequest,
        "cannot cover entries that do not exist"
    );
    member
        .client
        .request(&Request::PutSnapshot {
            space,
            epoch: 1,
            covers: 3,
            blob: b"snap".to_vec(),
        })
        .await
        .unwrap();
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

    let envelopes = vec![
        KeyEnvelope {
            device: member.id(),
            sealed: b"sealed-for-member".to_vec(),
        },
        KeyEnvelope {
            device: owner.id(),
            sealed: b"sealed-for-owner".to_vec(),
        },
    ];
    owner
        .client
        .request(&Request::PutKeyEnvelopes {
            space,
            epoch: 2,
            envelopes,
        })
        .await
        .unwrap();
    let Response::KeyEnvelopes(mine) = member
        .client
        .request(&Request::GetKeyEnvelopes {
            space,
            since_epoch: 1,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        mine,
        vec![(2, b"sealed-for-member".to_vec())],
        "each device gets only its own envelope"
    );
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
    assert_eq!(client.version(), 1);
    assert_eq!(
        code(client.request(&Request::Hello { versions: vec![99] }).await),
        ErrorCode::UnsupportedVersion
    );
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
        rapport_wire::frames::write_frame(&mut send, &Request::Hello { versions: vec![1] })
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
            push(&owner, space, i, b"x")
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
