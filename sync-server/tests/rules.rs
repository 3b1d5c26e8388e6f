//! The relay's rules answered with no socket (`rapport_relay::rules`): what a request is
//! told and what follows from it. What needs a connection (Hello, rate limits,
//! subscriptions, closing a removed device's connections) is in `relay.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::genesis;
use rapport_relay::data::DataDir;
use rapport_relay::rules::answer;
use rapport_wire::SpaceId;
use rapport_wire::frames::{ErrorCode, MAX_BLOB, MAX_SNAPSHOT, Request, Response, Role};
use rapport_wire::identity::Identity;
use rapport_wire::membership::SpaceKind;

#[test]
fn a_push_is_announced_once_and_strangers_and_oversized_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::init(dir.path(), "127.0.0.1:1").unwrap();
    let store = data.store().unwrap();
    let owner = Identity::generate("owner").unwrap();
    let space = SpaceId::random();
    let registered = answer(
        &store,
        owner.device_id(),
        Request::Register {
            setup_token: data.new_setup_code(&store).unwrap().token,
            genesis: genesis(&owner, space, SpaceKind::Practice),
        },
    )
    .unwrap();
    assert_eq!(
        registered.response,
        Response::Admitted { role: Role::Owner }
    );

    let push = |id: u8, blob: Vec<u8>| Request::Push {
        space,
        epoch: 1,
        client_msg_id: [id; 16],
        blob,
    };
    let first = answer(&store, owner.device_id(), push(1, vec![7; 64])).unwrap();
    assert_eq!(
        first.response,
        Response::Pushed {
            seq: 1,
            duplicate: false
        }
    );
    let (noticed, seq, inline) = first.notice.expect("a new entry is announced");
    assert_eq!((noticed, seq), (space, 1));
    assert_eq!(
        inline.map(|e| (e.sender, e.blob)),
        Some((owner.device_id(), vec![7; 64]))
    );
    // The same push again: the same seq, and nobody hears of it twice.
    let again = answer(&store, owner.device_id(), push(1, vec![7; 64])).unwrap();
    assert_eq!(
        (again.response, again.notice),
        (
            Response::Pushed {
                seq: 1,
                duplicate: true
            },
            None
        )
    );

    let stranger = Identity::generate("stranger").unwrap();
    for request in [
        Request::Pull {
            space,
            after: 0,
            limit: 10,
        },
        Request::GetLog {
            space,
            from: 0,
            invite: None,
        },
        Request::GetSnapshot { space },
        push(2, vec![1; 8]),
    ] {
        let refused = answer(&store, stranger.device_id(), request).unwrap_err();
        assert_eq!(refused.code, ErrorCode::NotMember, "{}", refused.message);
    }
    // Too large for its kind: refused before the store sees it.
    let refused = answer(&store, owner.device_id(), push(3, vec![0; MAX_BLOB + 1])).unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooLarge);
    let refused = answer(
        &store,
        owner.device_id(),
        Request::PutSnapshot {
            space,
            epoch: 1,
            covers: 1,
            blob: vec![0; MAX_SNAPSHOT + 1],
        },
    )
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooLarge);
    // Hello and subscriptions belong to the connection, not to the rules.
    let refused = answer(
        &store,
        owner.device_id(),
        Request::Subscribe {
            spaces: vec![space],
        },
    )
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    // Nothing refused was stored.
    let pulled = answer(
        &store,
        owner.device_id(),
        Request::Pull {
            space,
            after: 0,
            limit: 10,
        },
    )
    .unwrap();
    let Response::Entries { entries, head, .. } = pulled.response else {
        panic!("{:?}", pulled.response)
    };
    assert_eq!((entries.len(), head), (1, 1));
}
