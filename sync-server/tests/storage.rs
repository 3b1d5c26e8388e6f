//! What a space may store, and a relay whose disk fills up: quotas answered with a clear
//! refusal, and on a full disk reads still served, writes refused, nothing acknowledged
//! lost, writes back once space returns (on a small tmpfs the test mounts itself).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rapport_relay::server::Config;
use rapport_relay::store::SpaceQuota;
use rapport_wire::SpaceId;
use rapport_wire::client::ClientError;
use rapport_wire::frames::{ErrorCode, Request, Response};

fn push(space: SpaceId, n: u32, blob: Vec<u8>) -> Request {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    Request::Push {
        space,
        epoch: 1,
        client_msg_id: id,
        blob,
    }
}

fn refusal(result: Result<Response, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn pulled(device: &Device, space: SpaceId) -> Vec<u64> {
    let Response::Entries { entries, .. } = device
        .client
        .request(&Request::Pull {
            space,
            after: 0,
            limit: 1000,
        })
        .await
        .unwrap()
    else {
        panic!("not entries")
    };
    entries.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn a_space_over_its_quota_is_refused_clearly_until_pruning_makes_room() {
    let config = Config {
        quota: SpaceQuota {
            max_entries: 5,
            max_bytes: 1 << 20,
        },
        ..loopback_config()
    };
    let relay = TestRelay::start(config).await;
    let (space, owner) = practice(&relay).await;
    for n in 0..5 {
        owner
            .client
            .request(&push(space, n, vec![1; 100]))
            .await
            .unwrap();
    }
    let (code, message) = refusal(owner.client.request(&push(space, 5, vec![1; 100])).await);
    assert_eq!(code, ErrorCode::Quota);
    assert!(message.contains("5 entries"), "{message}");
    // What is stored stays, and a retry of an acknowledged push is still answered.
    assert_eq!(pulled(&owner, space).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        owner
            .client
            .request(&push(space, 2, vec![1; 100]))
            .await
            .unwrap(),
        Response::Pushed {
            seq: 3,
            duplicate: true
        }
    );
    // A snapshot is taken over the quota (it is what makes room), then pruning frees it.
    owner
        .client
        .request(&Request::PutSnapshot {
            space,
            epoch: 1,
            covers: 5,
            blob: vec![2; 100],
        })
        .await
        .unwrap();
    owner
        .client
        .request(&Request::Prune { space, through: 5 })
        .await
        .unwrap();
    assert!(matches!(
        owner
            .client
            .request(&push(space, 5, vec![1; 100]))
            .await
            .unwrap(),
        Response::Pushed { seq: 6, .. }
    ));
    relay.stop().await;
}

#[tokio::test]
async fn bytes_count_too_and_an_older_database_is_counted_when_opened() {
    let config = Config {
        quota: SpaceQuota {
            max_entries: 1_000,
            max_bytes: 3_000,
        },
        ..loopback_config()
    };
    let relay = TestRelay::start(config.clone()).await;
    let (space, owner) = practice(&relay).await;
    for n in 0..3 {
        owner
            .client
            .request(&push(space, n, vec![1; 1000]))
            .await
            .unwrap();
    }
    let (code, _) = refusal(owner.client.request(&push(space, 3, vec![1; 1])).await);
    assert_eq!(code, ErrorCode::Quota);
    let (dir, temp) = relay.stop().await;

    // A relay.db from before the counts (schema 2): they are filled in on open.
    {
        let db = rusqlite::Connection::open(dir.join("relay.db")).unwrap();
        db.execute_batch(
            "ALTER TABLE spaces DROP COLUMN entries; ALTER TABLE spaces DROP COLUMN bytes; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let relay = TestRelay::open(dir, config).await;
    let client = reconnect(&relay, &owner.identity).await;
    let (code, _) = refusal(client.request(&push(space, 3, vec![1; 1])).await);
    assert_eq!(
        code,
        ErrorCode::Quota,
        "the three stored entries were counted"
    );
    relay.stop().await;
    drop(temp);
}

/// Mounts a tmpfs of `size` on `dir`; false where this machine does not let the test
/// (not root): the test then says so and checks nothing.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_what_was_acknowledged_and_recovers() {
    let outer = tempfile::tempdir().unwrap();
    let mount = outer.path().join("small-disk");
    std::fs::create_dir(&mount).unwrap();
    if !mount_tmpfs(&mount, "6m") {
        eprintln!("skipped: this machine does not let the test mount a tmpfs (needs root)");
        return;
    }
    let _unmount = Unmount(mount.clone());
    let dir = mount.join("relay");
    rapport_relay::data::DataDir::init(&dir, "127.0.0.1:0").unwrap();
    // Room that the host frees later.
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();

    let relay = TestRelay::open(dir.clone(), loopback_config()).await;
    let (space, owner) = practice(&relay).await;
    let mut acknowledged = Vec::new();
    let mut full = None;
    for n in 0..200 {
        match owner
            .client
            .request(&push(space, n, vec![n as u8; 64 << 10]))
            .await
        {
            Ok(Response::Pushed { seq, .. }) => acknowledged.push(seq),
            Err(ClientError::Refused { code, message }) => {
                full = Some((n, code, message));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (next, code, message) = full.expect("the disk filled up");
    assert_eq!(code, ErrorCode::StorageFull, "{message}");
    assert!(message.contains("disk is full"), "{message}");
    assert!(acknowledged.len() > 10, "{}", acknowledged.len());

    // Reads are still served, and every acknowledged entry is there.
    assert_eq!(pulled(&owner, space).await, acknowledged);

    // Space returns: writes go on, on the same connection.
    std::fs::remove_file(&filler).unwrap();
    let Response::Pushed { seq, .. } = owner
        .client
        .request(&push(space, next, vec![7; 64 << 10]))
        .await
        .unwrap()
    else {
        panic!()
    };
    acknowledged.push(seq);

    // And after a restart nothing acknowledged is missing.
    relay.stop().await;
    let relay = TestRelay::open(dir, loopback_config()).await;
    let client = reconnect(&relay, &owner.identity).await;
    let again = Device {
        identity: owner.identity.clone(),
        client,
    };
    assert_eq!(pulled(&again, space).await, acknowledged);
    relay.stop().await;
}

#[tokio::test]
async fn setup_codes_expire_and_unused_ones_can_be_revoked() {
    use rapport_relay::store::{Write, now, token_hash};
    use rapport_wire::membership::SpaceKind;
    let relay = TestRelay::start(loopback_config()).await;
    let owner = device(&relay).await;
    let register = |token: Vec<u8>, space: SpaceId| Request::Register {
        setup_token: token,
        genesis: genesis(&owner.identity, space, SpaceKind::Practice),
    };
    // Past its lifetime a code registers nothing.
    let stale = b"an old setup token, long expired".to_vec();
    relay
        .store
        .write_blocking(Write::AddSetupCode {
            token_hash: token_hash(&stale),
            expires_at: now() - 1,
        })
        .unwrap();
    let (code, message) = refusal(
        owner
            .client
            .request(&register(stale, SpaceId::random()))
            .await,
    );
    assert_eq!(code, ErrorCode::Expired);
    assert!(message.contains("expired"), "{message}");

    // Revoking forgets the unused codes; a code used before stays answerable for its
    // practice's retry.
    let used = relay.setup_token();
    let space = SpaceId::random();
    owner
        .client
        .request(&register(used.clone(), space))
        .await
        .unwrap();
    let unused = relay.setup_token();
    let revoked = rapport_relay::data::revoke_setup_codes(&relay.store).unwrap();
    assert_eq!(revoked, 2, "the expired code and the unused one");
    let (code, _) = refusal(
        owner
            .client
            .request(&register(unused, SpaceId::random()))
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidToken);
    assert_eq!(
        owner.client.request(&register(used, space)).await.unwrap(),
        Response::Admitted {
            role: rapport_wire::frames::Role::Owner
        }
    );
    // A fresh code works, for another practice's owner.
    let other = device(&relay).await;
    assert!(matches!(
        other
            .client
            .request(&Request::Register {
                setup_token: relay.setup_token(),
                genesis: genesis(&other.identity, SpaceId::random(), SpaceKind::Practice),
            })
            .await,
        Ok(Response::Admitted { .. })
    ));
    relay.stop().await;
}
