//! Content keys from the membership log, and nowhere else.
//!
//! A space's key for an epoch reaches a device only inside a log operation that verified:
//! a rotation (a removal or a plain rotation, or the genesis) sealed to the X25519 key the
//! log itself bound to the device or to a pending invite, or an invite carrying every key
//! its creator holds. Each opened key is checked against the commitment the rotation made
//! ([`key_check`]), so a rotation cannot hand different recipients different keys and a
//! relay cannot slip a key of its own in.
//!
//! An invite's one-time secret (the part of an invite code that matters) gives two keys:
//! an Ed25519 key that proves the joiner holds it ([`InviteSecret::admit_proof`],
//! [`InviteSecret::read_proof`]) and an X25519 key that the log's keys are sealed to. The
//! code carries no content key: without the log's sealed keys, which only the relay and
//! members can read, it opens nothing.

use hkdf::Hkdf;
use rapport_wire::membership::{
    DeviceKeys, InviteId, InviteKeys, LogState, Op, Recipient, Rotation, SealedKey, admit_message,
    read_message,
};
use rapport_wire::{DeviceId, SpaceId};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::crypto::{self, BoxKey, CryptoError, SpaceKey};

/// A commitment to a content key: what a rotation publishes and every recipient checks.
pub fn key_check(space: SpaceId, key: &SpaceKey) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"rapport key check v1\0");
    hasher.update(space.0);
    hasher.update(key.epoch.to_be_bytes());
    hasher.update(key.bytes());
    hasher.finalize().into()
}

/// An invite's one-time secret.
pub struct InviteSecret {
    secret: Zeroizing<[u8; 32]>,
    signing: Ed25519KeyPair,
    boxed: BoxKey,
}

impl std::fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InviteSecret({})", self.id())
    }
}

fn derive(secret: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"rapport invite v1"), secret);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(label, out.as_mut());
    out
}

impl InviteSecret {
    /// A fresh secret.
    pub fn generate() -> InviteSecret {
        InviteSecret::from_bytes(rand::random())
    }

    /// The secret from an invite code.
    pub fn from_bytes(bytes: [u8; 32]) -> InviteSecret {
        let secret = Zeroizing::new(bytes);
        let seed = derive(&secret, b"signing");
        // A 32-byte seed is always a valid Ed25519 seed.
        #[allow(clippy::expect_used)]
        let signing = Ed25519KeyPair::from_seed_unchecked(seed.as_slice())
            .expect("a 32-byte seed makes an Ed25519 key");
        let boxed = BoxKey::from_bytes(*derive(&secret, b"x25519"));
        InviteSecret {
            secret,
            signing,
            boxed,
        }
    }

    /// The bytes an invite code carries.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The invite's id (its Ed25519 public key).
    pub fn id(&self) -> InviteId {
        let mut id = [0; 32];
        id.copy_from_slice(self.signing.public_key().as_ref());
        InviteId(id)
    }

    /// The public keys an `Invite` operation publishes.
    pub fn keys(&self) -> InviteKeys {
        InviteKeys {
            signing: self.id().0,
            x25519: self.boxed.public(),
        }
    }

    /// The proof that lets `device` read the space's log before it is admitted.
    pub fn read_proof(&self, space: SpaceId, device: DeviceId) -> Vec<u8> {
        self.signing
            .sign(&read_message(space, device))
            .as_ref()
            .to_vec()
    }

    /// The proof inside a device's `Admit` operation.
    pub fn admit_proof(&self, space: SpaceId, device: &DeviceKeys, member: &str) -> Vec<u8> {
        self.signing
            .sign(&admit_message(space, device, member))
            .as_ref()
            .to_vec()
    }

    /// The X25519 key the log's keys for this invite are sealed to.
    pub fn box_key(&self) -> &BoxKey {
        &self.boxed
    }
}

/// A new epoch's key for `state` (the state the rotation applies to, with the removed
/// devices and the invites ending with them already taken out), sealed to every
/// recipient the log binds, as of `at`.
pub fn rotation(state: &LogState, epoch: u32, at: i64) -> (SpaceKey, Rotation) {
    let key = SpaceKey::generate(epoch);
    let keys = state
        .recipients(at)
        .into_iter()
        .filter_map(|to| {
            state.x25519_of(to).map(|x25519| SealedKey {
                epoch,
                to,
                sealed: crypto::wrap(&key, state.space, x25519),
            })
        })
        .collect();
    let rotation = Rotation {
        epoch,
        check: key_check(state.space, &key),
        keys,
    };
    (key, rotation)
}

/// A space's first key, sealed to its creator (so that even the first key comes from
/// the log); `epoch` is 1, or the next one after keys a space had before its log.
pub fn first_key(
    space: SpaceId,
    owner: DeviceId,
    x25519: [u8; 32],
    epoch: u32,
) -> (SpaceKey, Rotation) {
    let key = SpaceKey::generate(epoch);
    let rotation = Rotation {
        epoch,
        check: key_check(space, &key),
        keys: vec![SealedKey {
            epoch,
            to: Recipient::Device(owner),
            sealed: crypto::wrap(&key, space, x25519),
        }],
    };
    (key, rotation)
}

/// What a state looks like once `devices` are removed (for sealing the removal's new key
/// to exactly who remains).
pub fn without(state: &LogState, devices: &[DeviceId]) -> LogState {
    let mut after = state.clone();
    for device in devices {
        after.members.remove(device);
    }
    after
        .invites
        .retain(|_, invite| !devices.contains(&invite.created_by));
    after
}

/// Every key in `keys` sealed to an invite.
pub fn for_invite(space: SpaceId, keys: &[SpaceKey], invite: &InviteKeys) -> Vec<SealedKey> {
    keys.iter()
        .map(|key| SealedKey {
            epoch: key.epoch,
            to: Recipient::Invite(InviteId(invite.signing)),
            sealed: crypto::wrap(key, space, invite.x25519),
        })
        .collect()
}

/// Why a key sealed to this device could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// It does not open with this device's key.
    #[error("the key for epoch {0} sealed to this device does not open: {1}")]
    CannotOpen(u32, CryptoError),
    /// It opened but is not the key the rotation committed to.
    #[error("the key for epoch {0} sealed to this device is not the one its rotation committed to")]
    WrongKey(u32),
}

/// The keys `op` seals to `recipient`, opened with `mine` and checked against the
/// commitments in `state` (the state after the operation). Epochs from before the space's
/// log (a space adopted from protocol 1) have no commitment and are taken as they are.
pub fn open_keys(
    op: &Op,
    state: &LogState,
    recipient: Recipient,
    mine: &BoxKey,
) -> Result<Vec<SpaceKey>, KeyProblem> {
    let first = state.checks.keys().next().copied().unwrap_or(1);
    op.sealed_keys()
        .iter()
        .filter(|k| k.to == recipient)
        .map(|k| {
            let key = crypto::unwrap(&k.sealed, state.space, k.epoch, mine)
                .map_err(|e| KeyProblem::CannotOpen(k.epoch, e))?;
            match state.checks.get(&k.epoch) {
                Some(check) if *check == key_check(state.space, &key) => Ok(key),
                None if k.epoch < first => Ok(key),
                _ => Err(KeyProblem::WrongKey(k.epoch)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_wire::identity::Identity;
    use rapport_wire::membership::{Clock, SpaceKind, genesis_op, next_op};

    fn keys_of(identity: &Identity, boxed: &BoxKey) -> DeviceKeys {
        let mut signing = [0; 32];
        signing.copy_from_slice(identity.public_key());
        DeviceKeys {
            signing,
            x25519: boxed.public(),
        }
    }

    #[test]
    fn keys_reach_exactly_who_the_log_names_and_a_swapped_key_is_caught() {
        let space = SpaceId::random();
        let owner = Identity::generate("owner").unwrap();
        let owner_box = BoxKey::generate();
        let (key1, first) = first_key(space, owner.device_id(), owner_box.public(), 1);
        let genesis = genesis_op(
            space,
            SpaceKind::Practice,
            keys_of(&owner, &owner_box),
            "m".into(),
            first,
            1_800_000_000,
            owner.key_pkcs8(),
        )
        .unwrap();
        let mut state = LogState::genesis(&genesis, None).unwrap();
        let opened = open_keys(
            &genesis.open().unwrap().op,
            &state,
            Recipient::Device(owner.device_id()),
            &owner_box,
        )
        .unwrap();
        assert_eq!(
            opened[0].bytes(),
            key1.bytes(),
            "the first key comes from the log too"
        );
        // An invite carries the keys sealed to it; its secret opens them.
        let invite = InviteSecret::generate();
        let op = Op::Invite {
            invite: invite.keys(),
            role: rapport_wire::frames::Role::Member,
            expires_at: 1_800_003_600,
            member: None,
            keys: for_invite(space, std::slice::from_ref(&key1), &invite.keys()),
        };
        let signed = next_op(&state, op.clone(), 1_800_000_001, owner.key_pkcs8()).unwrap();
        state.apply(&signed, Clock::Signed).unwrap();
        let opened = open_keys(
            &op,
            &state,
            Recipient::Invite(invite.id()),
            invite.box_key(),
        )
        .unwrap();
        assert_eq!(opened[0].bytes(), key1.bytes());
        // A rotation seals to the owner and the pending invite, and both open the same key.
        let (key2, rotation) = super::rotation(&state, 2, 1_800_000_002);
        assert_eq!(rotation.keys.len(), 2);
        let op = Op::Rotate { rotation };
        let signed = next_op(&state, op.clone(), 1_800_000_002, owner.key_pkcs8()).unwrap();
        state.apply(&signed, Clock::Signed).unwrap();
        for (recipient, mine) in [
            (Recipient::Device(owner.device_id()), &owner_box),
            (Recipient::Invite(invite.id()), invite.box_key()),
        ] {
            let opened = open_keys(&op, &state, recipient, mine).unwrap();
            assert_eq!(opened[0].bytes(), key2.bytes());
        }
        // Another key sealed in its place (a rotation handing out two keys, or a relay's
        // own key) opens, but is not the committed one.
        let Op::Rotate { mut rotation } = op else {
            unreachable!()
        };
        rotation.keys[0].sealed = crypto::wrap(&SpaceKey::generate(2), space, owner_box.public());
        rotation.keys[1].sealed = crypto::wrap(&SpaceKey::generate(2), space, invite.keys().x25519);
        let forged = Op::Rotate { rotation };
        assert_eq!(
            open_keys(
                &forged,
                &state,
                Recipient::Device(owner.device_id()),
                &owner_box
            )
            .unwrap_err(),
            KeyProblem::WrongKey(2)
        );
        assert!(matches!(
            open_keys(&forged, &state, Recipient::Invite(invite.id()), &owner_box),
            Err(KeyProblem::CannotOpen(2, _))
        ));
        // The same secret always gives the same invite.
        let again = InviteSecret::from_bytes(*invite.bytes());
        assert_eq!(again.id(), invite.id());
        assert_eq!(again.keys(), invite.keys());
        assert!(!format!("{invite:?}").contains(&rapport_wire::ids::hex(invite.bytes())));
    }
}
