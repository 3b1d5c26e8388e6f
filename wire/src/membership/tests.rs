use super::*;
use crate::identity::Identity;
use proptest::prelude::*;

struct Device {
    identity: Identity,
    x25519: [u8; 32],
}

impl Device {
    fn new(n: u8) -> Device {
        Device {
            identity: Identity::generate("device").unwrap(),
            x25519: [n; 32],
        }
    }

    fn keys(&self) -> DeviceKeys {
        let mut signing = [0; 32];
        signing.copy_from_slice(self.identity.public_key());
        DeviceKeys {
            signing,
            x25519: self.x25519,
        }
    }

    fn id(&self) -> DeviceId {
        self.identity.device_id()
    }

    fn sign(&self, state: &LogState, op: Op, at: i64) -> SignedOp {
        next_op(state, op, at, self.identity.key_pkcs8()).unwrap()
    }
}

/// An invite's one-time Ed25519 key, as the core derives it from the invite secret.
struct Invite {
    key: Ed25519KeyPair,
}

impl Invite {
    fn new(seed: u8) -> Invite {
        Invite {
            key: Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap(),
        }
    }

    fn id(&self) -> InviteId {
        InviteId(self.keys().signing)
    }

    fn keys(&self) -> InviteKeys {
        let mut signing = [0; 32];
        signing.copy_from_slice(self.key.public_key().as_ref());
        InviteKeys {
            signing,
            x25519: [0xee; 32],
        }
    }

    fn op(&self, state: &LogState, role: Role, expires_at: i64, member: Option<&str>) -> Op {
        Op::Invite {
            invite: self.keys(),
            role,
            expires_at,
            member: member.map(str::to_string),
            keys: (1..=state.epoch)
                .map(|epoch| SealedKey {
                    epoch,
                    to: Recipient::Invite(self.id()),
                    sealed: vec![epoch as u8; 80],
                })
                .collect(),
        }
    }

    fn admit(&self, space: SpaceId, device: &Device, member: &str) -> Op {
        Op::Admit {
            invite: self.id(),
            device: device.keys(),
            member: member.into(),
            proof: self
                .key
                .sign(&admit_message(space, &device.keys(), member))
                .as_ref()
                .to_vec(),
        }
    }
}

fn rotation(state: &LogState, epoch: u32, at: i64, leave_out: &[Recipient]) -> Rotation {
    Rotation {
        epoch,
        check: [epoch as u8; 32],
        keys: state
            .recipients(at)
            .into_iter()
            .filter(|r| !leave_out.contains(r))
            .map(|to| SealedKey {
                epoch,
                to,
                sealed: vec![7; 80],
            })
            .collect(),
    }
}

const T: i64 = 1_800_000_000;

fn create(owner: &Device, kind: SpaceKind) -> (SignedOp, LogState) {
    let space = SpaceId::random();
    let first = Rotation {
        epoch: 1,
        check: [1; 32],
        keys: vec![SealedKey {
            epoch: 1,
            to: Recipient::Device(owner.id()),
            sealed: vec![1; 80],
        }],
    };
    let op = genesis_op(
        space,
        kind,
        owner.keys(),
        "owner-member".into(),
        first,
        T,
        owner.identity.key_pkcs8(),
    )
    .unwrap();
    let state = LogState::genesis(&op, Some(op.hash())).unwrap();
    (op, state)
}

/// A practice of an owner, an admin and a member, every operation kept.
fn practice() -> (Vec<SignedOp>, LogState, [Device; 3]) {
    let devices = [Device::new(1), Device::new(2), Device::new(3)];
    let (genesis, mut state) = create(&devices[0], SpaceKind::Practice);
    let mut ops = vec![genesis];
    for (n, role) in [(1usize, Role::Admin), (2, Role::Member)] {
        let invite = Invite::new(n as u8);
        let op = devices[0].sign(&state, invite.op(&state, role, T + 3600, None), T + 1);
        state.apply(&op, Clock::Relay(T + 1)).unwrap();
        ops.push(op);
        let op = devices[n].sign(
            &state,
            invite.admit(state.space, &devices[n], &format!("member-{n}")),
            T + 2,
        );
        state.apply(&op, Clock::Relay(T + 2)).unwrap();
        ops.push(op);
    }
    (ops, state, devices)
}

#[test]
fn a_practice_grows_by_invites_and_every_device_verifies_the_same_state() {
    let (ops, state, devices) = practice();
    assert_eq!(state.members.len(), 3);
    assert_eq!(state.role(devices[1].id()), Some(Role::Admin));
    assert_eq!(state.role(devices[2].id()), Some(Role::Member));
    assert!(state.invites.is_empty(), "both invites were used");
    let verified = LogState::verify(&ops, Some(ops[0].hash())).unwrap();
    assert_eq!(
        verified, state,
        "a device's verification equals the relay's state"
    );
    assert_eq!(
        LogState::verify(&ops, Some(OpHash([9; 32]))),
        Err(LogError::WrongAnchor)
    );
}

#[test]
fn tampered_and_forged_operations_are_refused() {
    let (ops, mut state, devices) = practice();
    let mut tampered = ops[1].clone();
    let last = tampered.body.len() - 1;
    tampered.body[last] ^= 1;
    assert_eq!(
        LogState::verify(&[ops[0].clone(), tampered], None),
        Err(LogError::BadSignature)
    );
    // A member (not a manager) cannot remove anyone, even with a well-formed rotation.
    let remove = Op::Remove {
        devices: vec![devices[1].id()],
        rotation: rotation(&state, 2, T + 5, &[Recipient::Device(devices[1].id())]),
    };
    let op = devices[2].sign(&state, remove.clone(), T + 5);
    assert!(matches!(
        state.apply(&op, Clock::Relay(T + 5)),
        Err(LogError::Refused(m)) if m.contains("only an owner or admin")
    ));
    // A device outside the space (the relay, say) cannot sign anything.
    let stranger = Device::new(9);
    let op = stranger.sign(&state, remove, T + 5);
    assert!(matches!(
        state.apply(&op, Clock::Signed),
        Err(LogError::Refused(m)) if m.contains("not a member")
    ));
    // A replayed operation does not follow the head.
    assert_eq!(
        state.apply(&ops[3], Clock::Signed),
        Err(LogError::Stale { head_seq: 5 })
    );
    assert_eq!(state.len, 5, "nothing changed");
}

#[test]
fn a_rotation_seals_to_exactly_the_log_s_devices() {
    let (_, mut state, devices) = practice();
    let target = Recipient::Device(devices[2].id());
    // Leaving a remaining device out would lock it out: refused.
    let missing = rotation(
        &state,
        2,
        T + 5,
        &[target, Recipient::Device(devices[1].id())],
    );
    let op = devices[0].sign(
        &state,
        Op::Remove {
            devices: vec![devices[2].id()],
            rotation: missing,
        },
        T + 5,
    );
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("1 missing"))
    );
    // Sealing to the removed device, or to a phantom the log does not know: refused.
    let mut phantom = rotation(&state, 2, T + 5, &[target]);
    phantom.keys.push(SealedKey {
        epoch: 2,
        to: Recipient::Device(DeviceId([0xab; 16])),
        sealed: vec![1; 80],
    });
    let op = devices[0].sign(
        &state,
        Op::Remove {
            devices: vec![devices[2].id()],
            rotation: phantom,
        },
        T + 5,
    );
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("1 not in the log"))
    );
    let to_removed = rotation(&state, 2, T + 5, &[]);
    let op = devices[0].sign(
        &state,
        Op::Remove {
            devices: vec![devices[2].id()],
            rotation: to_removed,
        },
        T + 5,
    );
    assert!(state.apply(&op, Clock::Signed).is_err());
    // Skipping an epoch, or reusing the current one: refused.
    for epoch in [1, 3] {
        let op = devices[0].sign(
            &state,
            Op::Rotate {
                rotation: rotation(&state, epoch, T + 5, &[]),
            },
            T + 5,
        );
        assert!(
            matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("next key epoch is 2"))
        );
    }
    // Done right, it takes effect.
    let op = devices[0].sign(
        &state,
        Op::Remove {
            devices: vec![devices[2].id()],
            rotation: rotation(&state, 2, T + 5, &[target]),
        },
        T + 5,
    );
    state.apply(&op, Clock::Signed).unwrap();
    assert_eq!(state.epoch, 2);
    assert!(!state.is_member(devices[2].id()));
    assert!(state.removed.contains_key(&devices[2].id()));
}

#[test]
fn two_admins_removing_at_once_both_take_effect_with_one_key_per_epoch() {
    let (_, mut relay, devices) = practice();
    let extra = Device::new(4);
    let invite = Invite::new(4);
    let op = devices[0].sign(
        &relay,
        invite.op(&relay, Role::Member, T + 3600, None),
        T + 3,
    );
    relay.apply(&op, Clock::Relay(T + 3)).unwrap();
    let op = extra.sign(&relay, invite.admit(relay.space, &extra, "member-4"), T + 3);
    relay.apply(&op, Clock::Relay(T + 3)).unwrap();
    // Both admins decide on the same head.
    let seen = relay.clone();
    let removal = |by: &Device, target: &Device, state: &LogState| {
        by.sign(
            state,
            Op::Remove {
                devices: vec![target.id()],
                rotation: rotation(
                    state,
                    state.epoch + 1,
                    T + 10,
                    &[Recipient::Device(target.id())],
                ),
            },
            T + 10,
        )
    };
    let first = removal(&devices[0], &devices[2], &seen);
    let second = removal(&devices[1], &extra, &seen);
    relay.apply(&first, Clock::Relay(T + 10)).unwrap();
    assert_eq!(
        relay.apply(&second, Clock::Relay(T + 10)),
        Err(LogError::Stale {
            head_seq: relay.len
        }),
        "the second on a stale head is refused"
    );
    // The second admin fetches, decides again on the new head, and retries.
    let retried = removal(&devices[1], &extra, &relay);
    relay.apply(&retried, Clock::Relay(T + 10)).unwrap();
    assert_eq!(relay.epoch, 3, "epochs 2 and 3, one key each");
    assert_eq!(relay.members.len(), 2);
    assert!(
        relay.removed.contains_key(&devices[2].id()) && relay.removed.contains_key(&extra.id())
    );
}

#[test]
fn invites_are_single_use_expire_can_be_revoked_and_die_with_their_creator() {
    let (_, mut state, devices) = practice();
    let space = state.space;
    // The admin makes an admin invite, then is removed: the invite dies with it.
    let invite = Invite::new(20);
    let op = devices[1].sign(
        &state,
        invite.op(&state, Role::Admin, T + 3600, None),
        T + 5,
    );
    state.apply(&op, Clock::Relay(T + 5)).unwrap();
    assert!(state.invites.contains_key(&invite.id()));
    let op = devices[0].sign(
        &state,
        Op::Remove {
            devices: vec![devices[1].id()],
            rotation: rotation(&state, 2, T + 6, &[Recipient::Device(devices[1].id())]),
        },
        T + 6,
    );
    // The rotation must also leave out the dead invite: it is no longer pending after
    // the removal, so sealing to it would name a recipient the log does not know.
    assert!(state.clone().apply(&op, Clock::Signed).is_err());
    let op = devices[0].sign(
        &state,
        Op::Remove {
            devices: vec![devices[1].id()],
            rotation: rotation(
                &state,
                2,
                T + 6,
                &[
                    Recipient::Device(devices[1].id()),
                    Recipient::Invite(invite.id()),
                ],
            ),
        },
        T + 6,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let joiner = Device::new(21);
    let op = joiner.sign(&state, invite.admit(space, &joiner, "m21"), T + 7);
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("created it was removed"))
    );

    // Pending invites receive later keys; used ones refuse a second device.
    let invite = Invite::new(22);
    let op = devices[0].sign(
        &state,
        invite.op(&state, Role::Member, T + 100, None),
        T + 8,
    );
    state.apply(&op, Clock::Signed).unwrap();
    assert!(
        state
            .recipients(T + 9)
            .contains(&Recipient::Invite(invite.id()))
    );
    let op = joiner.sign(&state, invite.admit(space, &joiner, "m21"), T + 9);
    state.apply(&op, Clock::Signed).unwrap();
    let other = Device::new(23);
    let op = other.sign(&state, invite.admit(space, &other, "m23"), T + 10);
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("already used"))
    );

    // An expired invite is refused by signed time and by the relay's clock alike.
    let invite = Invite::new(24);
    let op = devices[0].sign(
        &state,
        invite.op(&state, Role::Member, T + 200, None),
        T + 11,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let late = other.sign(&state, invite.admit(space, &other, "m23"), T + 201);
    assert!(state.clone().apply(&late, Clock::Signed).is_err());
    let backdated = other.sign(&state, invite.admit(space, &other, "m23"), T + 150);
    assert!(matches!(
        state.clone().apply(&backdated, Clock::Relay(T + 300)),
        Err(LogError::Refused(m)) if m.contains("expired")
    ));

    // A revoked invite cannot be used; a forged proof never could.
    let op = devices[0].sign(
        &state,
        Op::RevokeInvite {
            invite: invite.id(),
        },
        T + 12,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let op = other.sign(&state, invite.admit(space, &other, "m23"), T + 13);
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("revoked"))
    );
    let invite = Invite::new(25);
    let op = devices[0].sign(
        &state,
        invite.op(&state, Role::Member, T + 900, None),
        T + 14,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let forged = Invite::new(26).admit(space, &other, "m23");
    let forged = match forged {
        Op::Admit {
            device,
            member,
            proof,
            ..
        } => Op::Admit {
            invite: invite.id(),
            device,
            member,
            proof,
        },
        other => other,
    };
    let op = other.sign(&state, forged, T + 15);
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("proof"))
    );
}

#[test]
fn a_removed_device_cannot_rejoin_and_an_admin_cannot_remove_the_owner() {
    let (_, mut state, devices) = practice();
    let op = devices[1].sign(
        &state,
        Op::Remove {
            devices: vec![devices[0].id()],
            rotation: rotation(&state, 2, T + 5, &[Recipient::Device(devices[0].id())]),
        },
        T + 5,
    );
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("cannot remove the owner"))
    );
    let op = devices[1].sign(
        &state,
        Op::Remove {
            devices: vec![devices[2].id()],
            rotation: rotation(&state, 2, T + 5, &[Recipient::Device(devices[2].id())]),
        },
        T + 5,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let invite = Invite::new(30);
    let op = devices[0].sign(
        &state,
        invite.op(&state, Role::Member, T + 900, None),
        T + 6,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let op = devices[2].sign(
        &state,
        invite.admit(state.space, &devices[2], "member-2"),
        T + 7,
    );
    assert!(
        matches!(state.apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("cannot rejoin"))
    );
}

#[test]
fn in_a_personal_space_every_device_of_the_clinician_manages() {
    let phone = Device::new(1);
    let laptop = Device::new(2);
    let practice = SpaceId::random();
    let (_, mut state) = create(&phone, SpaceKind::Personal { practice });
    let invite = Invite::new(40);
    assert!(matches!(
        state.clone().apply(
            &phone.sign(&state, invite.op(&state, Role::Admin, T + 900, None), T + 1),
            Clock::Signed
        ),
        Err(LogError::Refused(m)) if m.contains("name its clinician")
    ));
    let op = phone.sign(
        &state,
        invite.op(&state, Role::Member, T + 900, Some("owner-member")),
        T + 1,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let op = laptop.sign(
        &state,
        invite.admit(state.space, &laptop, "someone-else"),
        T + 2,
    );
    assert!(
        state.clone().apply(&op, Clock::Signed).is_err(),
        "the invite names its clinician"
    );
    let op = laptop.sign(
        &state,
        invite.admit(state.space, &laptop, "owner-member"),
        T + 2,
    );
    state.apply(&op, Clock::Signed).unwrap();
    // The laptop (a plain member of the personal space) removes the lost phone, its owner.
    let op = laptop.sign(
        &state,
        Op::Remove {
            devices: vec![phone.id()],
            rotation: rotation(&state, 2, T + 3, &[Recipient::Device(phone.id())]),
        },
        T + 3,
    );
    state.apply(&op, Clock::Signed).unwrap();
    assert_eq!(state.members.keys().collect::<Vec<_>>(), vec![&laptop.id()]);
}

#[test]
fn ownership_is_handed_over_not_taken() {
    let (_, mut state, devices) = practice();
    let op = devices[1].sign(
        &state,
        Op::ChangeRole {
            device: devices[2].id(),
            role: Role::Owner,
        },
        T + 5,
    );
    assert!(state.clone().apply(&op, Clock::Signed).is_err());
    let op = devices[1].sign(
        &state,
        Op::ChangeRole {
            device: devices[0].id(),
            role: Role::Member,
        },
        T + 5,
    );
    assert!(state.clone().apply(&op, Clock::Signed).is_err());
    let op = devices[0].sign(
        &state,
        Op::ChangeRole {
            device: devices[1].id(),
            role: Role::Owner,
        },
        T + 5,
    );
    state.apply(&op, Clock::Signed).unwrap();
    assert_eq!(state.role(devices[1].id()), Some(Role::Owner));
    assert_eq!(state.role(devices[0].id()), Some(Role::Admin));
}

#[test]
fn a_relay_clock_far_from_the_signer_s_is_refused_and_a_shorter_log_is_a_rollback() {
    let (_, state, devices) = practice();
    let op = devices[0].sign(
        &state,
        Op::Rotate {
            rotation: rotation(&state, 2, T + 5000, &[]),
        },
        T + 5000,
    );
    assert!(
        matches!(state.clone().apply(&op, Clock::Relay(T)), Err(LogError::Refused(m)) if m.contains("clock"))
    );
    assert!(state.clone().apply(&op, Clock::Signed).is_ok());
    assert!(matches!(
        state.check_not_behind(3),
        Err(LogError::Rollback(_))
    ));
    assert!(state.check_not_behind(state.len).is_ok());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), sig in proptest::collection::vec(any::<u8>(), 0..80)) {
        let (_, mut state, _) = practice();
        let op = SignedOp { body, signer: [3; 32], signature: sig };
        prop_assert!(state.apply(&op, Clock::Signed).is_err());
        let _ = LogState::genesis(&op, None);
    }
}

#[test]
fn a_member_invites_only_a_further_device_of_their_own_as_a_member() {
    let (_, state, devices) = practice();
    let member = &devices[2];
    for (invite, role, whom, why) in [
        (Invite::new(40), Role::Member, None, "a colleague"),
        (
            Invite::new(41),
            Role::Member,
            Some("member-1"),
            "another's device",
        ),
        (
            Invite::new(42),
            Role::Admin,
            Some("member-2"),
            "a device as admin",
        ),
    ] {
        let op = member.sign(&state, invite.op(&state, role, T + 900, whom), T + 5);
        assert!(
            matches!(state.clone().apply(&op, Clock::Signed), Err(LogError::Refused(m)) if m.contains("only an owner or admin")),
            "{why}"
        );
    }
    let mut state = state;
    let invite = Invite::new(43);
    let op = member.sign(
        &state,
        invite.op(&state, Role::Member, T + 900, Some("member-2")),
        T + 5,
    );
    state.apply(&op, Clock::Signed).unwrap();
    let phone = Device::new(44);
    let op = phone.sign(&state, invite.admit(state.space, &phone, "member-2"), T + 6);
    state.apply(&op, Clock::Signed).unwrap();
    assert_eq!(state.role(phone.id()), Some(Role::Member));
    assert_eq!(state.members[&phone.id()].member, "member-2");
}
