//! The sans-IO side of membership: what a fetched stretch of a space's log means for this
//! device. It verifies the operations against what the device verified before (never
//! against the relay's word), collects the content keys sealed to the device (or to the
//! invite it joins with), and decides what the device must do about the log: which
//! devices a personal space must still drop, where the device stands, which key it seals
//! with. No sockets, clocks or storage inside; the flows in `sync` fetch, store and send.

use rapport_wire::DeviceId;
use rapport_wire::frames::Role;
use rapport_wire::membership::{Clock, LogError, LogState, OpHash, Recipient, SignedOp};

use crate::error::{Error, Result, SyncFailure};
use crate::sealed::crypto::{BoxKey, SpaceKey};
use crate::sealed::keyring::{self, KeyProblem};

/// What a stretch of log gave a device.
#[derive(Debug)]
pub struct Verified {
    /// The state after the last operation.
    pub state: LogState,
    /// The new operations, verified.
    pub ops: Vec<SignedOp>,
    /// The content keys they sealed to this device (or its invite), checked against their
    /// rotations' commitments.
    pub keys: Vec<SpaceKey>,
    /// Keys sealed to this device that it could not take, with why.
    pub problems: Vec<KeyProblem>,
}

/// Where the log that follows `known` (or starts at `anchor`, for a device that has none
/// yet) may begin, and what a refusal of it means.
fn continuity(e: LogError, known: Option<&LogState>) -> Error {
    match (e, known) {
        (LogError::Stale { .. }, Some(_)) => Error::Sync(
            "the relay served a membership log that forks from the one this device verified; it is refused (the relay may be compromised)".into(),
        ),
        (LogError::WrongAnchor, _) => Error::Sync(
            "the relay's membership log does not start where the invite says: it is not the practice you were invited to, or the relay forged it".into(),
        ),
        (e, _) => Error::Sync(format!("the relay's membership log is refused: {e}")),
    }
}

/// Verifies `ops`, which the relay says follow `known` (the device's verified state, or
/// `None` for a log fetched from its genesis, checked against `anchor`), in a log the
/// relay says holds `relay_len` operations. Keys sealed to any of `mine` are opened.
pub fn verify(
    known: Option<&LogState>,
    anchor: Option<OpHash>,
    relay_len: u64,
    ops: Vec<SignedOp>,
    mine: &[(Recipient, &BoxKey)],
) -> Result<Verified> {
    let mut state = match known {
        Some(known) => {
            known.check_not_behind(relay_len).map_err(|e| {
                Error::Sync(format!(
                    "{e}; the relay is refused (it was rolled back or is not honest)"
                ))
            })?;
            known.clone()
        }
        None => {
            let first = ops.first().ok_or_else(|| {
                Error::Sync("the relay has no membership log for this space".into())
            })?;
            LogState::genesis(first, anchor).map_err(|e| continuity(e, None))?
        }
    };
    let start = usize::from(known.is_none());
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    let mut take = |op: &SignedOp, state: &LogState| -> Result<()> {
        let body = op
            .open()
            .map_err(|e| Error::Sync(format!("a membership operation is refused: {e}")))?;
        for (recipient, boxed) in mine {
            match keyring::open_keys(&body.op, state, *recipient, boxed) {
                Ok(opened) => keys.extend(opened),
                Err(problem) => problems.push(problem),
            }
        }
        Ok(())
    };
    if known.is_none()
        && let Some(first) = ops.first()
    {
        take(first, &state)?;
    }
    for op in ops.iter().skip(start) {
        state
            .apply(op, Clock::Signed)
            .map_err(|e| continuity(e, known))?;
        take(op, &state)?;
    }
    if state.len < relay_len && ops.len() <= start {
        return Err(Error::Sync(
            "the relay says the membership log is longer than what it serves".into(),
        ));
    }
    Ok(Verified {
        state,
        ops,
        keys,
        problems,
    })
}

/// Where a device stands in a space, by its verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// A current member with this role.
    Member(Role),
    /// Removed, by this device, at this time.
    Removed {
        /// Who removed it.
        by: DeviceId,
        /// When (Unix seconds).
        at: i64,
    },
    /// Not in the log at all.
    Stranger,
}

/// Where `device` stands in `state`.
pub fn standing(state: &LogState, device: DeviceId) -> Standing {
    if let Some(role) = state.role(device) {
        Standing::Member(role)
    } else if let Some(removed) = state.removed.get(&device) {
        Standing::Removed {
            by: removed.by,
            at: removed.at,
        }
    } else {
        Standing::Stranger
    }
}

/// The key a device seals with: the current epoch's, which it must hold. A device that
/// lacks it was removed or was left out of a rotation; it never falls back to an older
/// key, which the removed device still holds.
pub fn sealing_key(
    state: &LogState,
    device: DeviceId,
    current: Option<SpaceKey>,
) -> Result<SpaceKey> {
    match (standing(state, device), current) {
        (Standing::Member(_), Some(key)) if key.epoch == state.epoch => Ok(key),
        (Standing::Member(_), _) => Err(Error::Sync(format!(
            "this device has no key for the space's current epoch {} (the rotation did not give it one it could check); nothing is sent under an older key. Ask an admin to rotate the key again",
            state.epoch
        ))),
        (Standing::Removed { .. }, _) => Err(Error::sync_failed(
            SyncFailure::Removed,
            "this device was removed from the practice; it can no longer sync (join with a new invite to use it again)",
        )),
        (Standing::Stranger, _) => Err(Error::sync_failed(
            SyncFailure::NotMember,
            "this device is not a member of this space",
        )),
    }
}

/// The devices a clinician's personal space must still drop: those removed from the
/// practice. Any remaining device of the clinician removes them (with a new personal key)
/// at its next round, so a removal made from a colleague's device is finished there.
pub fn removals_owed(personal: &LogState, practice: &LogState) -> Vec<DeviceId> {
    personal
        .members
        .keys()
        .filter(|d| practice.removed.contains_key(d))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::keyring::{InviteSecret, first_key, for_invite, rotation, without};
    use rapport_wire::SpaceId;
    use rapport_wire::identity::Identity;
    use rapport_wire::membership::{DeviceKeys, Op, SpaceKind, genesis_op, next_op};

    struct Device {
        identity: Identity,
        boxed: BoxKey,
    }

    impl Device {
        fn new() -> Device {
            Device {
                identity: Identity::generate("d").unwrap(),
                boxed: BoxKey::generate(),
            }
        }
        fn id(&self) -> DeviceId {
            self.identity.device_id()
        }
        fn keys(&self) -> DeviceKeys {
            DeviceKeys {
                signing: self.identity.public_key().try_into().unwrap(),
                x25519: self.boxed.public(),
            }
        }
        fn me(&self) -> [(Recipient, &BoxKey); 1] {
            [(Recipient::Device(self.id()), &self.boxed)]
        }
    }

    const T: i64 = 1_800_000_000;

    /// An owner's practice and a member who joined with an invite, all ops kept.
    fn practice() -> (Vec<SignedOp>, LogState, Device, Device, SpaceKey) {
        let owner = Device::new();
        let space = SpaceId::random();
        let (key1, first) = first_key(space, owner.id(), owner.boxed.public(), 1);
        let genesis = genesis_op(
            space,
            SpaceKind::Practice,
            owner.keys(),
            "o".into(),
            first,
            T,
            owner.identity.key_pkcs8(),
        )
        .unwrap();
        let mut state = LogState::genesis(&genesis, None).unwrap();
        let mut ops = vec![genesis];
        let invite = InviteSecret::generate();
        let op = next_op(
            &state,
            Op::Invite {
                invite: invite.keys(),
                role: Role::Member,
                expires_at: T + 3600,
                member: None,
                keys: for_invite(space, std::slice::from_ref(&key1), &invite.keys()),
            },
            T + 1,
            owner.identity.key_pkcs8(),
        )
        .unwrap();
        state.apply(&op, Clock::Signed).unwrap();
        ops.push(op);
        let member = Device::new();
        let op = next_op(
            &state,
            Op::Admit {
                invite: invite.id(),
                device: member.keys(),
                member: "m".into(),
                proof: invite.admit_proof(space, &member.keys(), "m"),
            },
            T + 2,
            member.identity.key_pkcs8(),
        )
        .unwrap();
        state.apply(&op, Clock::Signed).unwrap();
        ops.push(op);
        (ops, state, owner, member, key1)
    }

    #[test]
    fn a_device_verifies_from_the_anchor_and_takes_only_keys_sealed_to_it() {
        let (ops, state, owner, member, key1) = practice();
        let anchor = ops[0].hash();
        let verified = verify(None, Some(anchor), 3, ops.clone(), &owner.me()).unwrap();
        assert_eq!(verified.state, state);
        assert_eq!(
            verified.keys.len(),
            1,
            "the owner's first key, from the genesis"
        );
        assert_eq!(verified.keys[0].bytes(), key1.bytes());
        assert!(verify(None, Some(OpHash([3; 32])), 3, ops.clone(), &owner.me()).is_err());
        // The member got nothing sealed to its device yet (its invite carried the keys).
        let verified = verify(None, Some(anchor), 3, ops.clone(), &member.me()).unwrap();
        assert!(verified.keys.is_empty());
        // A removal seals the next key to who remains.
        let state = verified.state;
        let (key2, rot) = rotation(&without(&state, &[member.id()]), 2, T + 5);
        let op = next_op(
            &state,
            Op::Remove {
                devices: vec![member.id()],
                rotation: rot,
            },
            T + 5,
            owner.identity.key_pkcs8(),
        )
        .unwrap();
        let after = verify(Some(&state), None, 4, vec![op.clone()], &owner.me()).unwrap();
        assert_eq!(after.keys[0].bytes(), key2.bytes());
        let removed = verify(Some(&state), None, 4, vec![op], &member.me()).unwrap();
        assert!(
            removed.keys.is_empty(),
            "the removed device gets no new key"
        );
        assert!(matches!(
            standing(&removed.state, member.id()),
            Standing::Removed { .. }
        ));
        assert!(sealing_key(&removed.state, member.id(), Some(key1.clone())).is_err());
        assert!(
            sealing_key(&after.state, owner.id(), Some(key1.clone())).is_err(),
            "never an older key"
        );
        assert!(sealing_key(&after.state, owner.id(), Some(key2)).is_ok());
        // A relay that serves fewer operations than this device verified is refused.
        let rolled = verify(Some(&after.state), None, 3, vec![], &owner.me()).unwrap_err();
        assert!(rolled.to_string().contains("rolled back"), "{rolled}");
    }

    #[test]
    fn a_fork_of_the_verified_log_is_refused_and_personal_spaces_owe_removals() {
        let (ops, state, owner, member, _) = practice();
        // Another op at seq 3 than the one this device verified: a fork.
        let (_, rot) = rotation(&state, 2, T + 5);
        let fork_base = LogState::verify(&ops[..2], None).unwrap();
        let forked = next_op(
            &fork_base,
            Op::Rotate { rotation: rot },
            T + 5,
            owner.identity.key_pkcs8(),
        )
        .unwrap();
        let err = verify(Some(&state), None, 4, vec![forked], &owner.me()).unwrap_err();
        assert!(err.to_string().contains("forks"), "{err}");

        let mut practice = state.clone();
        let (_, rot) = rotation(&without(&practice, &[member.id()]), 2, T + 5);
        let op = next_op(
            &practice,
            Op::Remove {
                devices: vec![member.id()],
                rotation: rot,
            },
            T + 5,
            owner.identity.key_pkcs8(),
        )
        .unwrap();
        practice.apply(&op, Clock::Signed).unwrap();
        let mut personal = state;
        personal.kind = SpaceKind::Personal {
            practice: practice.space,
        };
        assert_eq!(removals_owed(&personal, &practice), vec![member.id()]);
    }
}
