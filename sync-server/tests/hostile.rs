//! A relay under hostile load, over real QUIC on loopback: strangers held to small frames
//! and closed after a grace, caps per request kind, one byte budget for every request in
//! flight, connections per device and subscriptions per connection bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rapport_wire::client::RelayClient;
use rapport_wire::frames::{
    ErrorCode, MAX_BLOB, MAX_SMALL_FRAME, MAX_STRANGER_FRAME, Request, Response, Role, encode,
};

/// Opens a stream, announces a frame of `len` bytes whose body starts like `request`'s
/// (its kind), sends nothing more and returns how the relay answered: the stream's reset
/// code, or `no answer` when the relay waits for the rest.
async fn announce(
    conn: &quinn::Connection,
    request: &Request,
    len: usize,
) -> Result<Vec<u8>, String> {
    let frame = encode(request).unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::try_from(len).unwrap().to_be_bytes())
        .await
        .unwrap();
    send.write_all(&frame[4..5]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())
}

fn reset_with(answer: Result<Vec<u8>, String>, code: ErrorCode) {
    let err = answer.expect_err("the stream should have been reset");
    assert!(
        err.contains(&format!("error {}", code.quic_code())),
        "{err} is not {code:?}"
    );
}

fn push_request(blob: Vec<u8>) -> Request {
    Request::Push {
        space: rapport_wire::SpaceId([0; 16]),
        epoch: 1,
        client_msg_id: [0; 16],
        blob,
    }
}

#[tokio::test]
async fn strangers_send_only_small_frames_and_each_kind_has_its_cap() {
    let relay = TestRelay::start(loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let stranger = device(&relay).await;

    // A stranger (after its Hello) announcing a blob-sized frame is refused before the
    // relay reads or allocates it; a member may send it.
    reset_with(
        announce(
            stranger.client.connection(),
            &push_request(Vec::new()),
            MAX_STRANGER_FRAME + 1,
        )
        .await,
        ErrorCode::TooLarge,
    );
    assert!(matches!(
        push(&owner, space, 1, &vec![1; MAX_BLOB]).await.unwrap(),
        Response::Pushed { .. }
    ));
    // Even a member's request is held to its kind's cap: a Pull is small, a Push is one
    // blob.
    let pull = Request::Pull {
        space,
        after: 0,
        limit: 1,
    };
    reset_with(
        announce(owner.client.connection(), &pull, MAX_SMALL_FRAME + 1).await,
        ErrorCode::TooLarge,
    );
    reset_with(
        announce(
            owner.client.connection(),
            &push_request(Vec::new()),
            MAX_BLOB + 4096,
        )
        .await,
        ErrorCode::TooLarge,
    );
    // The connections still serve.
    assert!(matches!(
        push(&owner, space, 2, b"after").await.unwrap(),
        Response::Pushed { .. }
    ));
    relay.stop().await;
}

#[tokio::test]
async fn a_device_that_joins_nothing_is_closed_after_the_grace_and_members_stay() {
    let mut config = loopback_config();
    config.stranger_grace = Duration::from_millis(600);
    let relay = TestRelay::start(config).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;
    let stranger = device(&relay).await;
    let reason = tokio::time::timeout(
        Duration::from_secs(10),
        stranger.client.connection().closed(),
    )
    .await
    .expect("the stranger's connection stays open");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(
            close.error_code,
            ErrorCode::NotMember.quic_code().into(),
            "{close:?}"
        ),
        other => panic!("{other}"),
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(owner.client.connection().close_reason().is_none());
    assert!(member.client.connection().close_reason().is_none());
    assert!(matches!(
        push(&member, space, 1, b"still here").await.unwrap(),
        Response::Pushed { .. }
    ));
    relay.stop().await;
}

#[tokio::test]
async fn connections_per_device_and_subscriptions_per_connection_are_bounded() {
    let mut config = loopback_config();
    config.max_per_device = 2;
    config.max_subscriptions = 2;
    let relay = TestRelay::start(config).await;
    let (space, owner) = practice(&relay).await;
    let second = reconnect(&relay, &owner.identity).await;
    let third = tokio::time::timeout(
        Duration::from_secs(10),
        RelayClient::connect(relay.addr, &owner.identity, relay.fingerprint),
    )
    .await
    .unwrap();
    assert!(
        third.is_err(),
        "a third connection of one device is refused"
    );
    // Another device is not held back by this one's count.
    let _other = device(&relay).await;

    let _one = owner.client.subscribe(vec![space]).await.unwrap();
    let _two = owner.client.subscribe(vec![space]).await.unwrap();
    let over = owner.client.subscribe(vec![space]).await.err().unwrap();
    assert_eq!(over.code(), Some(ErrorCode::RateLimited), "{over}");
    // Subscriptions are counted per connection: the device's other one may subscribe.
    second.subscribe(vec![space]).await.unwrap();
    // One that ends gives its place back.
    drop(_two);
    let mut again = None;
    for _ in 0..50 {
        match owner.client.subscribe(vec![space]).await {
            Ok(notices) => {
                again = Some(notices);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(again.is_some(), "an ended subscription's place came back");
    relay.stop().await;
}

#[tokio::test]
async fn requests_in_flight_share_one_byte_budget() {
    let mut config = loopback_config();
    config.in_flight_bytes = MAX_BLOB + MAX_BLOB / 2;
    config.request_timeout = Duration::from_secs(3);
    let relay = TestRelay::start(config).await;
    let (space, owner) = practice(&relay).await;
    let member = join(&relay, space, &owner, Role::Member).await;

    // The owner starts a blob-sized push and stalls: its bytes hold most of the budget.
    let frame = encode(&Request::Push {
        space,
        epoch: 1,
        client_msg_id: [9; 16],
        blob: vec![3; MAX_BLOB],
    })
    .unwrap();
    let (mut stalled, _recv) = owner.client.connection().open_bi().await.unwrap();
    stalled.write_all(&frame[..4096]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another blob-sized request waits, then is refused as busy; small ones go through.
    let started = std::time::Instant::now();
    let busy = push(&member, space, 1, &vec![4; MAX_BLOB]).await;
    assert!(busy.is_err(), "{busy:?}");
    assert!(
        busy.unwrap_err()
            .to_string()
            .contains(&format!("error {}", ErrorCode::RateLimited.quic_code())),
    );
    assert!(started.elapsed() >= Duration::from_millis(1_000));
    assert!(matches!(
        push(&member, space, 2, b"small").await.unwrap(),
        Response::Pushed { .. }
    ));
    // Once the stalled request times out its bytes are given back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        push(&member, space, 3, &vec![5; MAX_BLOB]).await.unwrap(),
        Response::Pushed { .. }
    ));
    relay.stop().await;
}
