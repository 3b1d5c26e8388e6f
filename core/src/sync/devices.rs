//! The practice's devices and pending invites as its verified membership log says, and
//! removing a device: one log operation that refuses it on every space of the practice
//! at once and moves the practice to a new key sealed to exactly who remains (the
//! clinician's personal space follows, from this device when it is theirs, otherwise from
//! their other devices' next round).

use rapport_wire::DeviceId;
use rapport_wire::membership::{LogState, Op};

use super::connect::connect_known;
use super::link::Link;
use super::log::{Decision, append, now_secs, refresh};
use super::round::finish_removals;
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::sealed::keyring;

/// A device of the practice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Device {
    /// Device id (32 hex characters).
    pub device_id: String,
    /// The member (clinician) it belongs to.
    pub member_id: String,
    /// Their name, as the practice knows it (empty until their entry arrives).
    pub member_name: String,
    /// `owner`, `admin` or `member` (a removed device: its role when removed).
    pub role: String,
    /// When it joined, seconds since the Unix epoch (0 if unknown).
    pub joined_at: i64,
    /// When it was removed, if it was.
    pub removed_at: Option<i64>,
    /// Whether it is the device making the call.
    pub this_device: bool,
}

/// An invite not used yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PendingInvite {
    /// Its id (what `rapport invite revoke` takes).
    pub id: String,
    /// The role it gives.
    pub role: String,
    /// For a clinician's own further device: whose (empty for a colleague).
    pub for_member: String,
    /// The device that created it.
    pub created_by: String,
    /// The name of that device's clinician.
    pub created_by_name: String,
    /// When it was created, seconds since the Unix epoch.
    pub created_at: i64,
    /// When it expires, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// The practice's devices and pending invites.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Devices {
    /// Current and removed devices.
    pub devices: Vec<Device>,
    /// Invites not used yet.
    pub invites: Vec<PendingInvite>,
}

/// The practice's devices and invites, as the log verified here last says (no network).
pub fn devices_known(home: &Home) -> Result<Devices> {
    let state = home
        .membership(SpaceKind::Practice)?
        .ok_or_else(|| Error::Sync("this practice is not connected to a relay yet".into()))?;
    let me = home.device_identity()?.device_id();
    let names = home.member_names()?;
    let name = |member: &str| names.get(member).cloned().unwrap_or_default();
    let mut devices: Vec<Device> = state
        .members
        .iter()
        .map(|(id, m)| Device {
            device_id: id.to_string(),
            member_id: m.member.clone(),
            member_name: name(&m.member),
            role: m.role.code().to_string(),
            joined_at: m.joined_at,
            removed_at: None,
            this_device: *id == me,
        })
        .chain(state.removed.iter().map(|(id, r)| Device {
            device_id: id.to_string(),
            member_id: r.member.clone(),
            member_name: name(&r.member),
            role: r.role.code().to_string(),
            joined_at: 0,
            removed_at: Some(r.at),
            this_device: *id == me,
        }))
        .collect();
    devices.sort_by_key(|d| (d.removed_at.is_some(), d.joined_at));
    let creator = |device: &DeviceId| {
        state
            .members
            .get(device)
            .map(|m| name(&m.member))
            .unwrap_or_default()
    };
    let invites = state
        .invites
        .iter()
        .map(|(id, i)| PendingInvite {
            id: id.to_string(),
            role: i.role.code().to_string(),
            for_member: i.member.clone().map(|m| name(&m)).unwrap_or_default(),
            created_by: i.created_by.to_string(),
            created_by_name: creator(&i.created_by),
            created_at: i.created_at,
            expires_at: i.expires_at,
        })
        .collect();
    Ok(Devices { devices, invites })
}

/// The practice's devices and invites, after fetching the log from the relay.
pub async fn devices(home: &Home) -> Result<Devices> {
    let client = connect_known(home).await?;
    let result = refresh(home, &client, SpaceKind::Practice).await;
    client.close().await;
    result?;
    devices_known(home)
}

/// Removes a device from the practice (owner or admin); returns the new key epoch.
pub async fn remove_device(home: &Home, device: &str) -> Result<u32> {
    let client = connect_known(home).await?;
    let epoch = remove_device_via(home, &client, device).await;
    client.close().await;
    epoch
}

/// [`remove_device`] over a link already open. Removing a device already removed (by
/// another admin at the same time, or by this call cut off before its answer) is done.
pub async fn remove_device_via<L: Link>(home: &Home, link: &L, device: &str) -> Result<u32> {
    let target = DeviceId::parse(device).ok_or_else(|| {
        Error::invalid(
            "device",
            format!("{device:?} is not a device id (32 hex characters, see `rapport devices`)"),
        )
    })?;
    let me = home.device_identity()?.device_id();
    if target == me {
        return Err(Error::invalid(
            "device",
            "this is the device you are using; remove it from another device",
        ));
    }
    let at = now_secs(home);
    let state: LogState = append(home, link, SpaceKind::Practice, |state| {
        if state.removed.contains_key(&target) {
            return Ok(Decision::Done);
        }
        if !state.is_member(target) {
            return Err(Error::invalid(
                "device",
                format!("{target} is not a device of this practice (see `rapport devices`)"),
            ));
        }
        let remaining = keyring::without(state, &[target]);
        let (_, rotation) = keyring::rotation(&remaining, state.epoch + 1, at);
        Ok(Decision::Append(Op::Remove {
            devices: vec![target],
            rotation,
        }))
    })
    .await?;
    tracing::info!(
        epoch = state.epoch,
        "a device was removed and the practice key rotated"
    );
    // One of this clinician's own devices: their personal space drops it now too.
    let mine = home.identity()?.map(|i| i.member_id);
    let theirs = state.removed.get(&target).map(|r| r.member.clone());
    if mine.is_some() && mine == theirs && home.membership(SpaceKind::Personal)?.is_some() {
        finish_removals(home, link).await?;
    }
    Ok(state.epoch)
}
