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
use rapport_wire::client::{ClientError, RelayClient};
use rapport_wire::frames::{InviteRead, Request, Response, Role};
use rapport_wire::identity::Identity;
use rapport_wire::membership::{
    DeviceKeys, InviteId, InviteKeys, LogState, Op, Recipient, Rotation, SealedKey, SignedOp,
    SpaceKind, admit_message, genesis_op, next_op, read_message,
};
use rapport_wire::{DeviceId, SpaceId};
use ring::signature::{Ed25519KeyPair, KeyPair};
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

    /// The device's keys as a log binds them (its X25519 key is made up: the relay never
    /// opens a sealed key).
    pub fn keys(&self) -> DeviceKeys {
        keys_of(&self.identity)
    }

    /// The space's membership log, fetched and verified.
    pub async fn log(&self, space: SpaceId) -> LogState {
        let Response::Log { ops, len } = self
            .client
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
        assert_eq!(state.len, len);
        state
    }

    /// Signs `op` on the log's current head and appends it.
    pub async fn append(&self, space: SpaceId, op: Op) -> Result<Response, ClientError> {
        let state = self.log(space).await;
        let op = next_op(&state, op, now(), self.identity.key_pkcs8()).unwrap();
        self.client.request(&Request::AppendOp { space, op }).await
    }

    /// Creates an invite (with made-up sealed keys for every epoch).
    pub async fn invite(
        &self,
        space: SpaceId,
        role: Role,
        ttl: i64,
    ) -> Result<TestInvite, ClientError> {
        let state = self.log(space).await;
        let invite = TestInvite::new();
        self.append(space, invite.op(&state, role, now() + ttl, None))
            .await?;
        Ok(invite)
    }

    /// Removes devices, sealing the next key to exactly who remains.
    pub async fn remove(
        &self,
        space: SpaceId,
        devices: &[DeviceId],
    ) -> Result<Response, ClientError> {
        let state = self.log(space).await;
        let mut after = state.clone();
        for d in devices {
            after.members.remove(d);
        }
        after
            .invites
            .retain(|_, i| !devices.contains(&i.created_by));
        self.append(
            space,
            Op::Remove {
                devices: devices.to_vec(),
                rotation: rotation_for(&after, state.epoch + 1),
            },
        )
        .await
    }
}

pub fn now() -> i64 {
    rapport_relay::store::now()
}

pub fn keys_of(identity: &Identity) -> DeviceKeys {
    DeviceKeys {
        signing: identity.public_key().try_into().unwrap(),
        x25519: [5; 32],
    }
}

/// A rotation sealing made-up bytes to every recipient `state` has.
pub fn rotation_for(state: &LogState, epoch: u32) -> Rotation {
    Rotation {
        epoch,
        check: [epoch as u8; 32],
        keys: state
            .recipients(now())
            .into_iter()
            .map(|to| SealedKey {
                epoch,
                to,
                sealed: vec![epoch as u8; 80],
            })
            .collect(),
    }
}

/// The genesis of a space created by `identity`.
pub fn genesis(identity: &Identity, space: SpaceId, kind: SpaceKind) -> SignedOp {
    genesis_op(
        space,
        kind,
        keys_of(identity),
        format!("member-{}", identity.device_id()),
        Rotation {
            epoch: 1,
            check: [1; 32],
            keys: vec![SealedKey {
                epoch: 1,
                to: Recipient::Device(identity.device_id()),
                sealed: vec![1; 80],
            }],
        },
        now(),
        identity.key_pkcs8(),
    )
    .unwrap()
}

/// An invite's one-time key, as a device derives it from the invite's secret.
pub struct TestInvite {
    key: Ed25519KeyPair,
}

impl TestInvite {
    pub fn new() -> TestInvite {
        TestInvite {
            key: Ed25519KeyPair::from_seed_unchecked(&rand::random::<[u8; 32]>()).unwrap(),
        }
    }

    pub fn id(&self) -> InviteId {
        InviteId(self.key.public_key().as_ref().try_into().unwrap())
    }

    pub fn op(&self, state: &LogState, role: Role, expires_at: i64, member: Option<String>) -> Op {
        Op::Invite {
            invite: InviteKeys {
                signing: self.id().0,
                x25519: [6; 32],
            },
            role,
            expires_at,
            member,
            keys: (1..=state.epoch)
                .map(|epoch| SealedKey {
                    epoch,
                    to: Recipient::Invite(self.id()),
                    sealed: vec![0; 80],
                })
                .collect(),
        }
    }

    /// The proof that lets `device` read the log before it is admitted.
    pub fn read(&self, space: SpaceId, device: DeviceId) -> InviteRead {
        InviteRead {
            invite: self.id(),
            signature: self
                .key
                .sign(&read_message(space, device))
                .as_ref()
                .to_vec(),
        }
    }

    /// `device` admits itself with this invite: reads the log with the invite's proof and
    /// appends its admission.
    pub async fn admit(&self, space: SpaceId, device: &Device) -> Result<Response, ClientError> {
        let Response::Log { ops, .. } = device
            .client
            .request(&Request::GetLog {
                space,
                from: 0,
                invite: Some(self.read(space, device.id())),
            })
            .await?
        else {
            panic!("no log")
        };
        let state = LogState::verify(&ops, None).unwrap();
        let member = format!("member-{}", device.id());
        let keys = device.keys();
        let op = Op::Admit {
            invite: self.id(),
            device: keys,
            member: member.clone(),
            proof: self
                .key
                .sign(&admit_message(space, &keys, &member))
                .as_ref()
                .to_vec(),
        };
        let op = next_op(&state, op, now(), device.identity.key_pkcs8()).unwrap();
        device
            .client
            .request(&Request::AppendOp { space, op })
            .await
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
            genesis: genesis(&owner.identity, space, SpaceKind::Practice),
        })
        .await
        .unwrap();
    assert_eq!(response, Response::Admitted { role: Role::Owner });
    (space, owner)
}

/// A device that joined `space` with an invite from `inviter`.
pub async fn join(relay: &TestRelay, space: SpaceId, inviter: &Device, role: Role) -> Device {
    let invite = inviter.invite(space, role, 3600).await.unwrap();
    let joiner = device(relay).await;
    assert!(matches!(
        invite.admit(space, &joiner).await.unwrap(),
        Response::Appended { .. }
    ));
    joiner
}

/// Pushes a blob under the space's current epoch.
pub async fn push(
    device: &Device,
    space: SpaceId,
    id: u8,
    blob: &[u8],
) -> Result<Response, ClientError> {
    let epoch = match device
        .client
        .request(&Request::GetLog {
            space,
            from: 0,
            invite: None,
        })
        .await
    {
        Ok(Response::Log { ops, .. }) => LogState::verify(&ops, None).unwrap().epoch,
        _ => 1,
    };
    push_at(device, space, epoch, id, blob).await
}

/// Pushes a blob under a given epoch.
pub async fn push_at(
    device: &Device,
    space: SpaceId,
    epoch: u32,
    id: u8,
    blob: &[u8],
) -> Result<Response, ClientError> {
    device
        .client
        .request(&Request::Push {
            space,
            epoch,
            client_msg_id: [id; 16],
            blob: blob.to_vec(),
        })
        .await
}
