//! Devices that speak the relay protocol by hand (for the relay benchmark and tests that
//! play a relay or a device wrongly on purpose): a practice's genesis, invites and
//! admissions made with the core's real keys, without a home.

use anyhow::{Result, anyhow, bail};
use rapport_core::sealed::crypto::BoxKey;
use rapport_core::sealed::keyring::{self, InviteSecret};
use rapport_wire::client::RelayClient;
use rapport_wire::frames::{InviteRead, Request, Response, Role};
use rapport_wire::identity::Identity;
use rapport_wire::membership::{DeviceKeys, LogState, Op, SpaceKind, genesis_op, next_op};
use rapport_wire::{DeviceId, SpaceId};

/// A device with its keys and a connection.
pub struct RawDevice {
    /// Its Ed25519 identity.
    pub identity: Identity,
    /// Its X25519 key.
    pub boxed: BoxKey,
    /// Its connection.
    pub client: RelayClient,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl RawDevice {
    /// A new device connected to the relay at `addr`.
    pub async fn connect(addr: std::net::SocketAddr, fingerprint: [u8; 32]) -> Result<RawDevice> {
        let identity = Identity::generate("device")?;
        let client = RelayClient::connect(addr, &identity, fingerprint).await?;
        Ok(RawDevice {
            identity,
            boxed: BoxKey::generate(),
            client,
        })
    }

    /// Its id.
    pub fn id(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// Its keys as a log binds them.
    pub fn keys(&self) -> Result<DeviceKeys> {
        Ok(DeviceKeys {
            signing: self
                .identity
                .public_key()
                .try_into()
                .map_err(|_| anyhow!("not an Ed25519 key"))?,
            x25519: self.boxed.public(),
        })
    }

    /// Registers a new practice with a setup token; this device owns it.
    pub async fn register(&self, setup_token: Vec<u8>) -> Result<SpaceId> {
        let space = SpaceId::random();
        let (_, first) = keyring::first_key(space, self.id(), self.boxed.public(), 1);
        let genesis = genesis_op(
            space,
            SpaceKind::Practice,
            self.keys()?,
            "owner".into(),
            first,
            now(),
            self.identity.key_pkcs8(),
        )?;
        self.client
            .request(&Request::Register {
                setup_token,
                genesis,
            })
            .await?;
        Ok(space)
    }

    /// The space's log, verified (as a member, or with an invite's proof).
    pub async fn log(&self, space: SpaceId, invite: Option<InviteRead>) -> Result<LogState> {
        let Response::Log { ops, .. } = self
            .client
            .request(&Request::GetLog {
                space,
                from: 0,
                invite,
            })
            .await?
        else {
            bail!("no log");
        };
        Ok(LogState::verify(&ops, None)?)
    }

    /// Appends an invite (sealing no keys beyond a made-up current one: the relay cannot
    /// tell) and returns its secret.
    pub async fn invite(&self, space: SpaceId, role: Role) -> Result<InviteSecret> {
        let state = self.log(space, None).await?;
        let secret = InviteSecret::generate();
        let key = rapport_core::sealed::crypto::SpaceKey::generate(state.epoch);
        let op = Op::Invite {
            invite: secret.keys(),
            role,
            expires_at: now() + 3600,
            member: None,
            keys: keyring::for_invite(space, std::slice::from_ref(&key), &secret.keys()),
        };
        let op = next_op(&state, op, now(), self.identity.key_pkcs8())?;
        self.client
            .request(&Request::AppendOp { space, op })
            .await?;
        Ok(secret)
    }

    /// The content keys the space's log seals to an invite (what a holder of the invite
    /// code can open), checked against their rotations.
    pub async fn keys_of_invite(
        &self,
        space: SpaceId,
        secret: &InviteSecret,
    ) -> Result<Vec<rapport_core::sealed::crypto::SpaceKey>> {
        let Response::Log { ops, len } = self
            .client
            .request(&Request::GetLog {
                space,
                from: 0,
                invite: None,
            })
            .await?
        else {
            bail!("no log");
        };
        let verified = rapport_core::sync::membership::verify(
            None,
            None,
            len,
            ops,
            &[(
                rapport_wire::membership::Recipient::Invite(secret.id()),
                secret.box_key(),
            )],
        )?;
        Ok(verified.keys)
    }

    /// Admits this device with an invite.
    pub async fn admit(&self, space: SpaceId, secret: &InviteSecret) -> Result<()> {
        let read = InviteRead {
            invite: secret.id(),
            signature: secret.read_proof(space, self.id()),
        };
        let state = self.log(space, Some(read)).await?;
        let member = format!("member-{}", self.id());
        let keys = self.keys()?;
        let op = Op::Admit {
            invite: secret.id(),
            device: keys,
            member: member.clone(),
            proof: secret.admit_proof(space, &keys, &member),
        };
        let op = next_op(&state, op, now(), self.identity.key_pkcs8())?;
        self.client
            .request(&Request::AppendOp { space, op })
            .await?;
        Ok(())
    }
}
