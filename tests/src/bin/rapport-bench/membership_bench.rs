//! Membership figures for `rapport-bench sync`: what a removal costs in a practice of 50
//! devices through the real relay (a new key sealed to everyone who remains, appended by
//! compare-and-set, the log fetched back), against a plain sync round on the same
//! connection; and what verifying a membership log of 500 operations from its genesis
//! costs a joining device, against the rules alone.

use std::time::Instant;

use anyhow::{Context, Result};
use rapport_core::sealed::crypto::{BoxKey, SpaceKey};
use rapport_core::sealed::keyring::{self, InviteSecret};
use rapport_core::sync;
use rapport_core::{Home, SpaceKind};
use rapport_tests::raw::RawDevice;
use rapport_wire::SpaceId;
use rapport_wire::codes::InviteCode;
use rapport_wire::frames::Role;
use rapport_wire::identity::Identity;
use rapport_wire::membership::{
    Clock, DeviceKeys, LogState, Op, Recipient, SignedOp, SpaceKind as LogKind, genesis_op, next_op,
};

use super::relay_bench::start_relay;
use super::sync_bench::setup_code;

/// Devices in the practice a removal is timed in.
pub const DEVICES: usize = 50;
/// Operations in the log whose verification is timed.
pub const LOG_OPS: usize = 500;
const RUNS: usize = 7;

/// The figures.
pub struct Membership {
    pub removal_ms: f64,
    pub round_ms: f64,
    pub log_verify_ms: f64,
    pub log_rules_ms: f64,
}

impl Membership {
    pub fn print(&self) {
        println!(
            "{:<26} {:>12.1}  (removing one of {DEVICES} devices: new key to {} recipients; a plain round {:.1} ms, ratio {:.1})",
            "membership_op_ms",
            self.removal_ms,
            DEVICES - 1,
            self.round_ms,
            self.removal_ms / self.round_ms
        );
        println!(
            "{:<26} {:>12.1}  (a joiner verifying {LOG_OPS} operations and opening its keys; the rules alone {:.1} ms)",
            "log_verify_ms", self.log_verify_ms, self.log_rules_ms
        );
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    super::percentile(&mut samples, 0.5)
}

pub async fn run() -> Result<Membership> {
    let (removal_ms, round_ms) = removal().await?;
    let (log_verify_ms, log_rules_ms) = log_verify()?;
    Ok(Membership {
        removal_ms,
        round_ms,
        log_verify_ms,
        log_rules_ms,
    })
}

async fn removal() -> Result<(f64, f64)> {
    let relay = start_relay()?;
    let dir = tempfile::tempdir()?;
    let owner = Home::open(dir.path().join("owner"))?;
    owner.create_practice("Bench Practice", "Owner")?;
    sync::connect_practice(&owner, &setup_code(&relay)).await?;
    let conn = sync::connect_known(&owner).await?;
    let space = SpaceId::parse(&owner.space_id(SpaceKind::Practice)?).context("space id")?;
    // The other devices speak the protocol by hand (a home each would only add set-up
    // time): each is admitted with a real invite of the owner's.
    let mut devices = Vec::new();
    for _ in 1..DEVICES {
        let code = InviteCode::decode(
            &sync::invite::create_invite_via(&owner, &conn, Role::Member, 3600).await?,
        )?;
        let device = RawDevice::connect(relay.addr, relay.fingerprint).await?;
        device
            .admit(space, &InviteSecret::from_bytes(code.secret))
            .await?;
        devices.push(device);
    }
    sync::round(&owner, &conn).await?;
    let mut rounds = Vec::new();
    let mut removals = Vec::new();
    for device in devices.iter().take(RUNS) {
        let start = Instant::now();
        sync::round(&owner, &conn).await?;
        rounds.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        sync::devices::remove_device_via(&owner, &conn, &device.id().to_string()).await?;
        removals.push(start.elapsed().as_secs_f64() * 1e3);
    }
    conn.close().await;
    Ok((median(removals), median(rounds)))
}

/// A log of [`LOG_OPS`] operations: the genesis, then invites and admissions, made with
/// the real keys and sealing.
fn build_log() -> Result<(Vec<SignedOp>, BoxKey)> {
    let owner = Identity::generate("owner")?;
    let boxed = BoxKey::generate();
    let keys = |identity: &Identity, boxed: &BoxKey| -> Result<DeviceKeys> {
        Ok(DeviceKeys {
            signing: identity.public_key().try_into().context("an Ed25519 key")?,
            x25519: boxed.public(),
        })
    };
    let space = SpaceId::random();
    let (key, first) = keyring::first_key(space, owner.device_id(), boxed.public(), 1);
    let at = 1_800_000_000;
    let genesis = genesis_op(
        space,
        LogKind::Practice,
        keys(&owner, &boxed)?,
        "owner".into(),
        first,
        at,
        owner.key_pkcs8(),
    )?;
    let mut state = LogState::genesis(&genesis, None)?;
    let mut ops = vec![genesis];
    let held: Vec<SpaceKey> = vec![key];
    while ops.len() < LOG_OPS {
        let secret = InviteSecret::generate();
        let op = next_op(
            &state,
            Op::Invite {
                invite: secret.keys(),
                role: Role::Member,
                expires_at: at + 3600,
                member: None,
                keys: keyring::for_invite(space, &held, &secret.keys()),
            },
            at,
            owner.key_pkcs8(),
        )?;
        state.apply(&op, Clock::Signed)?;
        ops.push(op);
        let device = Identity::generate("device")?;
        let device_keys = keys(&device, &BoxKey::generate())?;
        let member = format!("member-{}", ops.len());
        let op = next_op(
            &state,
            Op::Admit {
                invite: secret.id(),
                device: device_keys,
                member: member.clone(),
                proof: secret.admit_proof(space, &device_keys, &member),
            },
            at,
            device.key_pkcs8(),
        )?;
        state.apply(&op, Clock::Signed)?;
        ops.push(op);
    }
    ops.truncate(LOG_OPS);
    Ok((ops, boxed))
}

fn log_verify() -> Result<(f64, f64)> {
    let (ops, boxed) = build_log()?;
    let anchor = ops[0].hash();
    let owner = ops[0].signer_id();
    let mut full = Vec::new();
    let mut rules = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let verified = sync::membership::verify(
            None,
            Some(anchor),
            ops.len() as u64,
            ops.clone(),
            &[(Recipient::Device(owner), &boxed)],
        )?;
        full.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(verified.state.len == LOG_OPS as u64 && !verified.keys.is_empty());
        let start = Instant::now();
        LogState::verify(&ops, Some(anchor))?;
        rules.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(full), median(rules)))
}
