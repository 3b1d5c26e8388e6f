//! Shared helpers: a relay on loopback and devices that talk to it.

#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};
use rapport_relay::store::Store;
use rapport_wire::client::RelayClient;
use rapport_wire::frames::{Request, Response, Role};
use rapport_wire::identity::Identity;
use rapport_wire::{DeviceId, SpaceId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestRelay {
    pub addr: SocketAddr,
    pub fingerprint: [u8; 32],
    pub dir: PathBuf,
    pub store: Arc<Store>,
    data: DataDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

pub fn loopback_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

impl TestRelay {
    pub async fn start(config: Config) -> TestRelay {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        DataDir::init(&dir, "127.0.0.1:0").unwrap();
        let mut relay = TestRelay::open(dir, config).await;
        relay._temp = Some(temp);
        relay
    }

    pub async fn open(dir: PathBuf, config: Config) -> TestRelay {
        let data = DataDir::open(&dir).unwrap();
        let store = data.store().unwrap();
        let relay = Relay::bind(store.clone(), &data.identity, config).unwrap();
        let addr = relay.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async {
            let _ = stopped.await;
        }));
        TestRelay {
            addr,
            fingerprint: data.identity.fingerprint(),
            dir,
            store,
            data,
            stop: Some(stop),
            task: Some(task),
            _temp: None,
        }
    }

    /// A fresh one-time setup token.
    pub fn setup_token(&self) -> Vec<u8> {
        self.data.new_setup_code(&self.store).unwrap().token
    }

    /// Stops gracefully and keeps the data directory.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        (self.dir.clone(), self._temp.take())
    }
}

pub struct Device {
    pub identity: Identity,
    pub client: RelayClient,
}

impl Device {
    pub fn id(&self) -> DeviceId {
        self.identity.device_id()
    }
}

pub async fn device(relay: &TestRelay) -> Device {
    let identity = Identity::generate("device").unwrap();
    let client = RelayClient::connect(relay.addr, &identity, relay.fingerprint)
        .await
        .unwrap();
    Device { identity, client }
}

pub async fn reconnect(relay: &TestRelay, identity: &Identity) -> RelayClient {
    RelayClient::connect(relay.addr, identity, relay.fingerprint)
        .await
        .unwrap()
}

/// A registered practice space with its owner.
pub async fn practice(relay: &TestRelay) -> (SpaceId, Device) {
    let owner = device(relay).await;
    let space = SpaceId::random();
    let response = owner
        .client
        .request(&Request::Register {
            setup_token: relay.setup_token(),
            space,
            x25519: [1; 32],
        })
        .await
        .unwrap();
    assert_eq!(response, Response::Admitted { role: Role::Owner });
    (space, owner)
}

/// A device that joined `space` with an invite from `inviter`.
pub async fn join(relay: &TestRelay, space: SpaceId, inviter: &Device, role: Role) -> Device {
    let Response::Invite { token, .. } = inviter
        .client
        .request(&Request::CreateInvite {
            space,
            role,
            ttl_secs: 3600,
        })
        .await
        .unwrap()
    else {
        panic!("no invite")
    };
    let joiner = device(relay).await;
    let response = joiner
        .client
        .request(&Request::Join {
            space,
            token,
            x25519: [2; 32],
        })
        .await
        .unwrap();
    assert_eq!(response, Response::Admitted { role });
    joiner
}

pub async fn push(
    device: &Device,
    space: SpaceId,
    id: u8,
    blob: &[u8],
) -> Result<Response, rapport_wire::client::ClientError> {
    device
        .client
        .request(&Request::Push {
            space,
            epoch: 1,
            client_msg_id: [id; 16],
            blob: blob.to_vec(),
        })
        .await
}
