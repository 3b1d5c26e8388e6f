//! The membership log of a space: who belongs to it, with which keys and role, and which
//! content-key epoch is current, as a hash-chained list of signed operations that every
//! device verifies for itself and the relay enforces.
//!
//! Each operation names the space, its position (`seq`), the hash of the operation before
//! it (`prev`) and the time its signer claims (`at`), and is signed with the Ed25519 key of
//! a device that the log's own state before it authorizes. The first operation (`Create`,
//! the *genesis*) is signed by the space's creator; its hash is the log's *anchor*, which
//! invite codes carry, so a joiner checks the whole log against what a colleague handed it,
//! never against what the relay says.
//!
//! Rules ([`LogState::apply`]), in short: owners and admins invite (a member only a further
//! device of their own, as a member), revoke invites, change
//! roles, remove devices and rotate the key; an admin cannot remove or demote the owner of
//! a practice; in a clinician's personal space every device of the clinician may manage.
//! A device joins by admitting itself with a pending invite: its own signature plus a
//! proof made with the invite's one-time key. A removal always rotates the key, in the same
//! operation, wrapped to exactly the devices and pending invites that remain; removing a
//! device also ends the invites it created. A rotation's epoch is always the current one
//! plus one, and the relay accepts an operation only on the current head
//! (compare-and-set), so two keys never exist for one epoch and two admins removing
//! devices at once both take effect, one after the other.
//!
//! This module is pure: no IO, no clock (the relay passes its time in), no randomness.
//! The content keys themselves are opaque here: wrapping and unwrapping them is the
//! devices' business (`rapport-core`); the log carries the sealed bytes and a commitment
//! to each epoch's key so that every recipient can check it got the same key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{DeviceId, SpaceId, hex};

/// A device's role in a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Created the space; can invite and remove.
    Owner,
    /// Can invite and remove.
    Admin,
    /// Can read and write.
    Member,
}

impl Role {
    /// Whether this role may invite and remove devices.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Stable text form.
    pub fn code(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

const OP_DOMAIN: &[u8] = b"rapport membership op v1\0";
const HASH_DOMAIN: &[u8] = b"rapport membership hash v1\0";
const ADMIT_DOMAIN: &[u8] = b"rapport invite admit v1\0";
const READ_DOMAIN: &[u8] = b"rapport invite read v1\0";

/// The largest encoded operation (a rotation to 1,000 devices is about 120 KiB).
pub const MAX_OP_BYTES: usize = 256 * 1024;
/// The most sealed keys one operation carries.
pub const MAX_SEALED_KEYS: usize = 1_000;
/// The largest sealed key.
pub const MAX_SEALED_KEY: usize = 256;
/// The longest member id.
pub const MAX_MEMBER_ID: usize = 64;
/// How far an operation's claimed time may run ahead of the relay's clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 600;

/// The hash of an operation: what the next one names as `prev`, and, for the genesis, the
/// log's anchor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct OpHash(pub [u8; 32]);

impl fmt::Debug for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpHash({})", &hex(&self.0)[..16])
    }
}

impl fmt::Display for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A device's public keys as the log binds them: Ed25519 (its identity, signatures and
/// TLS) and X25519 (content keys are wrapped to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    /// Raw Ed25519 public key; the device id is derived from it.
    pub signing: [u8; 32],
    /// X25519 public key.
    pub x25519: [u8; 32],
}

impl DeviceKeys {
    /// The device id these keys give.
    pub fn id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.signing)
    }
}

/// An invite's id: the Ed25519 public key derived from its one-time secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InviteId(pub [u8; 32]);

impl fmt::Display for InviteId {
    /// The short form people see and type (`rapport invite revoke 1a2b3c4d5e6f7a8b`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0[..8]))
    }
}

impl fmt::Debug for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteId({self})")
    }
}

/// The public halves of an invite's one-time keys: the joiner proves it holds the secret
/// with the first and receives content keys through the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteKeys {
    /// Ed25519 public key (the invite's id).
    pub signing: [u8; 32],
    /// X25519 public key.
    pub x25519: [u8; 32],
}

/// What kind of space a log governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpaceKind {
    /// A practice's shared space.
    Practice,
    /// A clinician's personal space, tied to their practice: a device removed from the
    /// practice is refused here too.
    Personal {
        /// The practice it belongs to.
        practice: SpaceId,
    },
}

/// Who a sealed key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Recipient {
    /// A member device.
    Device(DeviceId),
    /// A pending invite (the joiner opens it with the invite's secret).
    Invite(InviteId),
}

/// One content key sealed to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// The epoch of the key.
    pub epoch: u32,
    /// Who can open it.
    pub to: Recipient,
    /// The sealed key (opaque here).
    pub sealed: Vec<u8>,
}

/// A new content-key epoch: a commitment to the key and the key sealed to every
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The new epoch.
    pub epoch: u32,
    /// A commitment to the key (see `rapport-core`'s `crypto::key_check`): every recipient
    /// checks that the key it opened matches, so one rotation cannot hand out two keys.
    pub check: [u8; 32],
    /// The key, sealed to each recipient.
    pub keys: Vec<SealedKey>,
}

/// A membership operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The genesis: the space, its creator (owner) and its first key.
    Create {
        /// Practice or personal space.
        kind: SpaceKind,
        /// The creator's keys; it signs this operation.
        owner: DeviceKeys,
        /// The creator's member id.
        member: String,
        /// The first epoch (1, or the next one after a space's keys from before the log).
        first: Rotation,
    },
    /// A single-use invite, with every content key its creator holds sealed to it.
    Invite {
        /// The invite's public keys.
        invite: InviteKeys,
        /// The role the joiner gets (admin or member).
        role: Role,
        /// Unix seconds after which it cannot be used.
        expires_at: i64,
        /// For a clinician's own further device: the member it joins as.
        member: Option<String>,
        /// Content keys sealed to the invite, at least the current epoch's.
        keys: Vec<SealedKey>,
    },
    /// A device admits itself with a pending invite.
    Admit {
        /// The invite used.
        invite: InviteId,
        /// The new device's keys; it signs this operation.
        device: DeviceKeys,
        /// The member it belongs to.
        member: String,
        /// The invite key's signature over the device's keys and member
        /// ([`admit_message`]).
        proof: Vec<u8>,
    },
    /// Changes a device's role (handing ownership over makes the old owner an admin).
    ChangeRole {
        /// The device.
        device: DeviceId,
        /// Its new role.
        role: Role,
    },
    /// Removes devices and moves to a new key, in one step.
    Remove {
        /// The devices removed.
        devices: Vec<DeviceId>,
        /// The key they never see.
        rotation: Rotation,
    },
    /// Moves to a new key.
    Rotate {
        /// The new key.
        rotation: Rotation,
    },
    /// Ends a pending invite.
    RevokeInvite {
        /// The invite.
        invite: InviteId,
    },
}

impl Op {
    /// The operation's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Invite { .. } => "invite",
            Op::Admit { .. } => "admit",
            Op::ChangeRole { .. } => "change role",
            Op::Remove { .. } => "remove",
            Op::Rotate { .. } => "rotate",
            Op::RevokeInvite { .. } => "revoke invite",
        }
    }

    /// The content keys this operation seals, to anyone.
    pub fn sealed_keys(&self) -> &[SealedKey] {
        match self {
            Op::Create { first, .. } => &first.keys,
            Op::Invite { keys, .. } => keys,
            Op::Remove { rotation, .. } | Op::Rotate { rotation } => &rotation.keys,
            _ => &[],
        }
    }

    /// The rotation this operation makes, if any.
    pub fn rotation(&self) -> Option<&Rotation> {
        match self {
            Op::Create { first, .. } => Some(first),
            Op::Remove { rotation, .. } | Op::Rotate { rotation } => Some(rotation),
            _ => None,
        }
    }
}

/// What a signer signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpBody {
    /// The space.
    pub space: SpaceId,
    /// Position in the log (the genesis is 0).
    pub seq: u64,
    /// Hash of the operation before (zeros for the genesis).
    pub prev: OpHash,
    /// Unix seconds, as the signer's clock says.
    pub at: i64,
    /// The operation.
    pub op: Op,
}

/// A signed operation as it travels and is stored: the encoded body exactly as signed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    /// The postcard-encoded [`OpBody`].
    pub body: Vec<u8>,
    /// The signer's raw Ed25519 public key.
    pub signer: [u8; 32],
    /// Ed25519 signature over a domain tag and `body`.
    pub signature: Vec<u8>,
}

impl fmt::Debug for SignedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOp")
            .field("hash", &self.hash())
            .field("signer", &DeviceId::from_public_key(&self.signer))
            .field("len", &self.body.len())
            .finish()
    }
}

/// Why an operation or a log was refused. Every message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The bytes do not decode, or exceed a size limit.
    #[error("malformed membership operation: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("a membership operation's signature does not verify")]
    BadSignature,
    /// The operation is for another space.
    #[error("a membership operation belongs to another space")]
    WrongSpace,
    /// The genesis is not the one the invite named.
    #[error(
        "the membership log does not start where the invite says (a different practice, or a forged log)"
    )]
    WrongAnchor,
    /// The operation does not follow the current head: someone else's came first.
    #[error("the membership log moved on (it is at {head_seq}); fetch it and try again")]
    Stale {
        /// How many operations the log holds.
        head_seq: u64,
    },
    /// The log goes back or forks from what this device verified before.
    #[error("the membership log goes back or forks from the one this device verified: {0}")]
    Rollback(String),
    /// The rules do not allow the operation.
    #[error("{0}")]
    Refused(String),
}

fn refused(text: impl Into<String>) -> LogError {
    LogError::Refused(text.into())
}

impl SignedOp {
    /// Signs `body` with the device key `pkcs8` (the device's PKCS#8 Ed25519 key).
    pub fn sign(body: &OpBody, pkcs8: &[u8]) -> Result<SignedOp, LogError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| LogError::Malformed("the device key cannot sign".into()))?;
        let encoded =
            postcard::to_allocvec(body).map_err(|e| LogError::Malformed(e.to_string()))?;
        if encoded.len() > MAX_OP_BYTES {
            return Err(LogError::Malformed(format!(
                "an operation of {} bytes is over the limit of {MAX_OP_BYTES}",
                encoded.len()
            )));
        }
        let mut signer = [0; 32];
        signer.copy_from_slice(key.public_key().as_ref());
        let signature = key.sign(&signed_message(&encoded)).as_ref().to_vec();
        Ok(SignedOp {
            body: encoded,
            signer,
            signature,
        })
    }

    /// The operation's hash: over its signer and body.
    pub fn hash(&self) -> OpHash {
        let mut hasher = Sha256::new();
        hasher.update(HASH_DOMAIN);
        hasher.update(self.signer);
        hasher.update(&self.body);
        OpHash(hasher.finalize().into())
    }

    /// The device that signed it.
    pub fn signer_id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.signer)
    }

    /// Checks the signature and decodes the body (untrusted bytes: never panics).
    pub fn open(&self) -> Result<OpBody, LogError> {
        if self.body.len() > MAX_OP_BYTES {
            return Err(LogError::Malformed(format!(
                "an operation of {} bytes is over the limit of {MAX_OP_BYTES}",
                self.body.len()
            )));
        }
        verify(&self.signer, &signed_message(&self.body), &self.signature)?;
        let body: OpBody =
            postcard::from_bytes(&self.body).map_err(|e| LogError::Malformed(e.to_string()))?;
        check_sizes(&body.op)?;
        Ok(body)
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(OP_DOMAIN.len() + body.len());
    message.extend_from_slice(OP_DOMAIN);
    message.extend_from_slice(body);
    message
}

fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> Result<(), LogError> {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, signature)
        .map_err(|_| LogError::BadSignature)
}

fn check_sizes(op: &Op) -> Result<(), LogError> {
    let keys = op.sealed_keys();
    if keys.len() > MAX_SEALED_KEYS {
        return Err(LogError::Malformed(format!(
            "{} sealed keys in one operation; at most {MAX_SEALED_KEYS}",
            keys.len()
        )));
    }
    if keys.iter().any(|k| k.sealed.len() > MAX_SEALED_KEY) {
        return Err(LogError::Malformed("a sealed key is too long".into()));
    }
    let member = match op {
        Op::Create { member, .. } | Op::Admit { member, .. } => Some(member.as_str()),
        Op::Invite { member, .. } => member.as_deref(),
        _ => None,
    };
    if member.is_some_and(|m| m.is_empty() || m.len() > MAX_MEMBER_ID) {
        return Err(LogError::Malformed(
            "a member id is empty or too long".into(),
        ));
    }
    if let Op::Remove { devices, .. } = op
        && devices.len() > MAX_SEALED_KEYS
    {
        return Err(LogError::Malformed(
            "too many devices in one removal".into(),
        ));
    }
    Ok(())
}

/// What the invite key signs when a device admits itself: the space, the device's keys and
/// its member id.
pub fn admit_message(space: SpaceId, device: &DeviceKeys, member: &str) -> Vec<u8> {
    let mut message = ADMIT_DOMAIN.to_vec();
    message.extend_from_slice(&space.0);
    message.extend_from_slice(&device.signing);
    message.extend_from_slice(&device.x25519);
    message.extend_from_slice(member.as_bytes());
    message
}

/// What the invite key signs so that a device not yet admitted may read the log (and the
/// practice's snapshot and entries) to join: the space and the asking device.
pub fn read_message(space: SpaceId, device: DeviceId) -> Vec<u8> {
    let mut message = READ_DOMAIN.to_vec();
    message.extend_from_slice(&space.0);
    message.extend_from_slice(&device.0);
    message
}

/// A device's place in a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its keys.
    pub keys: DeviceKeys,
    /// Its role.
    pub role: Role,
    /// The member (clinician) it belongs to.
    pub member: String,
    /// When it joined (the admitting operation's time).
    pub joined_at: i64,
    /// The invite it came in with (none for the creator).
    pub invited_by: Option<DeviceId>,
}

/// A device that was removed: it can never come back with the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The member it belonged to.
    pub member: String,
    /// Its role when removed.
    pub role: Role,
    /// When.
    pub at: i64,
    /// By whom.
    pub by: DeviceId,
}

/// An invite not used yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInvite {
    /// Its public keys.
    pub keys: InviteKeys,
    /// The role it gives.
    pub role: Role,
    /// Unix seconds after which it cannot be used.
    pub expires_at: i64,
    /// The member a device joining with it belongs to, when fixed.
    pub member: Option<String>,
    /// The device that created it.
    pub created_by: DeviceId,
    /// When.
    pub created_at: i64,
}

/// Why an invite can no longer be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spent {
    /// A device joined with it.
    Used(DeviceId),
    /// It was revoked.
    Revoked,
    /// Its creator was removed.
    CreatorRemoved,
    /// It expired before it was used.
    Expired,
}

/// A space's membership as its verified log says, after its last operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    /// The space.
    pub space: SpaceId,
    /// Practice or personal.
    pub kind: SpaceKind,
    /// The genesis hash.
    pub anchor: OpHash,
    /// The last operation's hash.
    pub head: OpHash,
    /// Operations applied (the next one's seq).
    pub len: u64,
    /// The current content-key epoch.
    pub epoch: u32,
    /// The time of the last operation.
    pub last_at: i64,
    /// Each epoch's key commitment.
    pub checks: BTreeMap<u32, [u8; 32]>,
    /// Current devices.
    pub members: BTreeMap<DeviceId, Member>,
    /// Removed devices.
    pub removed: BTreeMap<DeviceId, Removed>,
    /// Invites that can still be used.
    pub invites: BTreeMap<InviteId, PendingInvite>,
    /// Invites that cannot, and why.
    pub spent: BTreeMap<InviteId, Spent>,
}

/// The clock an operation is checked against: the relay's, or none on a device (which
/// then relies on the times the signers claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// A device verifying a log: times are the signers'.
    Signed,
    /// The relay accepting an operation now (Unix seconds).
    Relay(i64),
}

impl LogState {
    /// The state after a genesis operation, checked against the anchor an invite named
    /// (when there is one).
    pub fn genesis(op: &SignedOp, anchor: Option<OpHash>) -> Result<LogState, LogError> {
        let hash = op.hash();
        if anchor.is_some_and(|a| a != hash) {
            return Err(LogError::WrongAnchor);
        }
        let body = op.open()?;
        let Op::Create {
            kind,
            owner,
            member,
            first,
        } = &body.op
        else {
            return Err(refused("a membership log must begin with its creation"));
        };
        if body.seq != 0 || body.prev != OpHash::default() {
            return Err(refused(
                "the creation of a space must be its first operation",
            ));
        }
        if owner.signing != op.signer {
            return Err(refused("a space must be created by its owner's own key"));
        }
        if first.epoch == 0 {
            return Err(refused("key epochs start at 1"));
        }
        if let SpaceKind::Personal { practice } = kind
            && *practice == body.space
        {
            return Err(refused("a personal space cannot be its own practice"));
        }
        let owner_id = owner.id();
        let mut state = LogState {
            space: body.space,
            kind: *kind,
            anchor: hash,
            head: hash,
            len: 1,
            epoch: first.epoch,
            last_at: body.at,
            checks: BTreeMap::new(),
            members: BTreeMap::from([(
                owner_id,
                Member {
                    keys: *owner,
                    role: Role::Owner,
                    member: member.clone(),
                    joined_at: body.at,
                    invited_by: None,
                },
            )]),
            removed: BTreeMap::new(),
            invites: BTreeMap::new(),
            spent: BTreeMap::new(),
        };
        state.check_recipients(first, body.at)?;
        state.checks.insert(first.epoch, first.check);
        Ok(state)
    }

    /// Verifies a whole log from its genesis (checked against `anchor` when given).
    pub fn verify(ops: &[SignedOp], anchor: Option<OpHash>) -> Result<LogState, LogError> {
        let (first, rest) = ops
            .split_first()
            .ok_or_else(|| refused("the membership log is empty"))?;
        let mut state = LogState::genesis(first, anchor)?;
        for op in rest {
            state.apply(op, Clock::Signed)?;
        }
        Ok(state)
    }

    /// Whether a device is a current member.
    pub fn is_member(&self, device: DeviceId) -> bool {
        self.members.contains_key(&device)
    }

    /// A current member's role.
    pub fn role(&self, device: DeviceId) -> Option<Role> {
        self.members.get(&device).map(|m| m.role)
    }

    /// Whether `device` may invite, remove, change roles and rotate.
    pub fn may_manage(&self, device: DeviceId) -> bool {
        match self.kind {
            // Every device of a personal space is the same clinician's.
            SpaceKind::Personal { .. } => self.is_member(device),
            SpaceKind::Practice => self.role(device).is_some_and(Role::can_manage),
        }
    }

    /// Who a rotation made now must seal the new key to: every current device and every
    /// pending invite not expired at `at`.
    pub fn recipients(&self, at: i64) -> BTreeSet<Recipient> {
        self.members
            .keys()
            .map(|d| Recipient::Device(*d))
            .chain(
                self.invites
                    .iter()
                    .filter(|(_, i)| i.expires_at >= at)
                    .map(|(id, _)| Recipient::Invite(*id)),
            )
            .collect()
    }

    /// The X25519 key the log binds to a recipient.
    pub fn x25519_of(&self, to: Recipient) -> Option<[u8; 32]> {
        match to {
            Recipient::Device(d) => self.members.get(&d).map(|m| m.keys.x25519),
            Recipient::Invite(i) => self.invites.get(&i).map(|i| i.keys.x25519),
        }
    }

    /// Checks an operation against the rules and the head and applies it. On error the
    /// state is unchanged.
    pub fn apply(&mut self, op: &SignedOp, clock: Clock) -> Result<(), LogError> {
        let body = op.open()?;
        if body.space != self.space {
            return Err(LogError::WrongSpace);
        }
        if body.seq != self.len || body.prev != self.head {
            return Err(LogError::Stale { head_seq: self.len });
        }
        if let Clock::Relay(now) = clock
            && (body.at - now).abs() > MAX_CLOCK_SKEW_SECS
        {
            return Err(refused(
                "this device's clock differs from the relay's by more than 10 minutes; set the time and try again",
            ));
        }
        let signer = op.signer_id();
        let mut next = self.clone();
        // Only signed times decide the state, so every device computes what the relay
        // computed; the relay's own clock only refuses (expired invites, skewed clocks).
        next.expire_invites(body.at);
        next.check_and_apply(signer, &body, clock)?;
        next.len += 1;
        next.head = op.hash();
        next.last_at = next.last_at.max(body.at);
        *self = next;
        Ok(())
    }

    fn expire_invites(&mut self, now: i64) {
        let expired: Vec<InviteId> = self
            .invites
            .iter()
            .filter(|(_, i)| i.expires_at < now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.invites.remove(&id);
            self.spent.insert(id, Spent::Expired);
        }
    }

    fn signer_member(&self, signer: DeviceId) -> Result<&Member, LogError> {
        self.members.get(&signer).ok_or_else(|| {
            if self.removed.contains_key(&signer) {
                refused("the signing device was removed from this space")
            } else {
                refused("the signing device is not a member of this space")
            }
        })
    }

    fn require_manager(&self, signer: DeviceId, what: &str) -> Result<(), LogError> {
        self.signer_member(signer)?;
        if self.may_manage(signer) {
            Ok(())
        } else {
            Err(refused(format!("only an owner or admin can {what}")))
        }
    }

    fn check_and_apply(
        &mut self,
        signer: DeviceId,
        body: &OpBody,
        clock: Clock,
    ) -> Result<(), LogError> {
        match &body.op {
            Op::Create { .. } => Err(refused("a space is created only once")),
            Op::Invite {
                invite,
                role,
                expires_at,
                member,
                keys,
            } => {
                // A clinician may add a further device of their own with their role;
                // inviting anyone else takes an owner or admin.
                let inviter = self.signer_member(signer)?;
                let own_device = member.as_deref() == Some(inviter.member.as_str())
                    && *role == Role::Member
                    && inviter.role == Role::Member;
                if !own_device {
                    self.require_manager(signer, "invite")?;
                }
                if *role == Role::Owner {
                    return Err(refused(
                        "an invite can make an admin or a member, not an owner",
                    ));
                }
                if matches!(self.kind, SpaceKind::Personal { .. }) && member.is_none() {
                    return Err(refused(
                        "an invite to a personal space must name its clinician",
                    ));
                }
                let id = InviteId(invite.signing);
                if self.invites.contains_key(&id) || self.spent.contains_key(&id) {
                    return Err(refused("this invite key was used before"));
                }
                if *expires_at < body.at {
                    return Err(refused("the invite expires before it was made"));
                }
                if let Clock::Relay(now) = clock
                    && *expires_at <= now
                {
                    return Err(refused("the invite has already expired"));
                }
                let mut epochs = BTreeSet::new();
                for key in keys {
                    if key.to != Recipient::Invite(id) {
                        return Err(refused("an invite's keys must be sealed to that invite"));
                    }
                    if key.epoch == 0 || key.epoch > self.epoch || !epochs.insert(key.epoch) {
                        return Err(refused(
                            "an invite carries each epoch's key at most once, none newer than the current one",
                        ));
                    }
                }
                if !epochs.contains(&self.epoch) {
                    return Err(refused("an invite must carry the current key"));
                }
                self.invites.insert(
                    id,
                    PendingInvite {
                        keys: *invite,
                        role: *role,
                        expires_at: *expires_at,
                        member: member.clone(),
                        created_by: signer,
                        created_at: body.at,
                    },
                );
                Ok(())
            }
            Op::Admit {
                invite,
                device,
                member,
                proof,
            } => {
                if device.id() != signer {
                    return Err(refused("a device admits only itself"));
                }
                if self.members.contains_key(&signer) {
                    return Err(refused("this device is already a member"));
                }
                if self.removed.contains_key(&signer) {
                    return Err(refused(
                        "this device was removed from the space and cannot rejoin",
                    ));
                }
                let pending = match (self.invites.get(invite), self.spent.get(invite)) {
                    (Some(p), _) => p.clone(),
                    (None, Some(Spent::Used(_))) => {
                        return Err(refused("this invite was already used; ask for a new one"));
                    }
                    (None, Some(Spent::Revoked)) => {
                        return Err(refused("this invite was revoked; ask for a new one"));
                    }
                    (None, Some(Spent::CreatorRemoved)) => {
                        return Err(refused(
                            "this invite ended when the device that created it was removed; ask for a new one",
                        ));
                    }
                    (None, Some(Spent::Expired)) => {
                        return Err(refused("this invite has expired; ask for a new one"));
                    }
                    (None, None) => return Err(refused("this invite is not part of this space")),
                };
                let late = match clock {
                    Clock::Relay(now) => now.max(body.at),
                    Clock::Signed => body.at,
                };
                if late > pending.expires_at {
                    return Err(refused("this invite has expired; ask for a new one"));
                }
                if pending.member.as_ref().is_some_and(|m| m != member) {
                    return Err(refused("this invite is for another clinician's device"));
                }
                verify(
                    &pending.keys.signing,
                    &admit_message(self.space, device, member),
                    proof,
                )
                .map_err(|_| refused("the invite proof does not verify"))?;
                self.invites.remove(invite);
                self.spent.insert(*invite, Spent::Used(signer));
                self.members.insert(
                    signer,
                    Member {
                        keys: *device,
                        role: pending.role,
                        member: member.clone(),
                        joined_at: body.at,
                        invited_by: Some(pending.created_by),
                    },
                );
                Ok(())
            }
            Op::ChangeRole { device, role } => {
                self.require_manager(signer, "change roles")?;
                let signer_role = self.role(signer).unwrap_or(Role::Member);
                let target = self
                    .members
                    .get(device)
                    .ok_or_else(|| refused("that device is not a current member"))?
                    .role;
                if *device == signer {
                    return Err(refused("a device cannot change its own role"));
                }
                if target == Role::Owner {
                    return Err(refused(
                        "the owner's role changes only by handing ownership to another device",
                    ));
                }
                if *role == Role::Owner && signer_role != Role::Owner {
                    return Err(refused("only the owner can hand ownership over"));
                }
                if *role == Role::Owner
                    && let Some(me) = self.members.get_mut(&signer)
                {
                    me.role = Role::Admin;
                }
                if let Some(m) = self.members.get_mut(device) {
                    m.role = *role;
                }
                Ok(())
            }
            Op::Remove { devices, rotation } => {
                self.require_manager(signer, "remove devices")?;
                if devices.is_empty() {
                    return Err(refused("a removal names at least one device"));
                }
                let signer_role = self.role(signer).unwrap_or(Role::Member);
                let mut seen = BTreeSet::new();
                for device in devices {
                    if !seen.insert(*device) {
                        return Err(refused("a removal names each device once"));
                    }
                    if *device == signer {
                        return Err(refused(
                            "a device cannot remove itself; remove it from another device",
                        ));
                    }
                    let Some(target) = self.members.get(device) else {
                        return Err(refused(format!(
                            "device {device} is not a current member of this space"
                        )));
                    };
                    if self.kind == SpaceKind::Practice
                        && target.role == Role::Owner
                        && signer_role != Role::Owner
                    {
                        return Err(refused("an admin cannot remove the owner"));
                    }
                }
                for device in devices {
                    if let Some(m) = self.members.remove(device) {
                        self.removed.insert(
                            *device,
                            Removed {
                                member: m.member,
                                role: m.role,
                                at: body.at,
                                by: signer,
                            },
                        );
                    }
                }
                // Invites made by a removed device end with it.
                let dead: Vec<InviteId> = self
                    .invites
                    .iter()
                    .filter(|(_, i)| seen.contains(&i.created_by))
                    .map(|(id, _)| *id)
                    .collect();
                for id in dead {
                    self.invites.remove(&id);
                    self.spent.insert(id, Spent::CreatorRemoved);
                }
                self.rotate(rotation, body.at)
            }
            Op::Rotate { rotation } => {
                self.require_manager(signer, "rotate the key")?;
                self.rotate(rotation, body.at)
            }
            Op::RevokeInvite { invite } => {
                self.signer_member(signer)?;
                let pending = self
                    .invites
                    .get(invite)
                    .ok_or_else(|| refused("that invite is not pending"))?;
                if pending.created_by != signer && !self.may_manage(signer) {
                    return Err(refused(
                        "only an owner, an admin or the invite's creator can revoke it",
                    ));
                }
                self.invites.remove(invite);
                self.spent.insert(*invite, Spent::Revoked);
                Ok(())
            }
        }
    }

    fn rotate(&mut self, rotation: &Rotation, at: i64) -> Result<(), LogError> {
        let next = self
            .epoch
            .checked_add(1)
            .ok_or_else(|| refused("no key epochs left"))?;
        if rotation.epoch != next {
            return Err(refused(format!(
                "the next key epoch is {next}, not {}",
                rotation.epoch
            )));
        }
        self.check_recipients(rotation, at)?;
        self.epoch = next;
        self.checks.insert(next, rotation.check);
        Ok(())
    }

    /// A rotation seals its key exactly once to each current device and pending invite:
    /// nobody left out, nobody the log does not know.
    fn check_recipients(&self, rotation: &Rotation, at: i64) -> Result<(), LogError> {
        let wanted = self.recipients(at);
        let mut got = BTreeSet::new();
        for key in &rotation.keys {
            if key.epoch != rotation.epoch {
                return Err(refused("a rotation seals only its own epoch's key"));
            }
            if !got.insert(key.to) {
                return Err(refused("a rotation seals the key once per recipient"));
            }
        }
        if got != wanted {
            let missing = wanted.difference(&got).count();
            let unknown = got.difference(&wanted).count();
            return Err(refused(format!(
                "a rotation must seal the key to exactly the current devices and pending invites ({missing} missing, {unknown} not in the log)"
            )));
        }
        Ok(())
    }

    /// Refuses a relay whose log is shorter than the one this device verified (a relay
    /// rolled back, or serving another fork; a fork that is as long fails on its first
    /// operation, whose `prev` is not this state's head).
    pub fn check_not_behind(&self, relay_len: u64) -> Result<(), LogError> {
        if relay_len < self.len {
            return Err(LogError::Rollback(format!(
                "the relay says the log has {relay_len} operations; this device verified {}",
                self.len
            )));
        }
        Ok(())
    }
}

/// Builds the next operation on `state` (its seq and prev) and signs it.
pub fn next_op(state: &LogState, op: Op, at: i64, pkcs8: &[u8]) -> Result<SignedOp, LogError> {
    SignedOp::sign(
        &OpBody {
            space: state.space,
            seq: state.len,
            prev: state.head,
            at,
            op,
        },
        pkcs8,
    )
}

/// Builds and signs a genesis operation.
pub fn genesis_op(
    space: SpaceId,
    kind: SpaceKind,
    owner: DeviceKeys,
    member: String,
    first: Rotation,
    at: i64,
    pkcs8: &[u8],
) -> Result<SignedOp, LogError> {
    SignedOp::sign(
        &OpBody {
            space,
            seq: 0,
            prev: OpHash::default(),
            at,
            op: Op::Create {
                kind,
                owner,
                member,
                first,
            },
        },
        pkcs8,
    )
}

#[cfg(test)]
mod tests;
