//! Invites: a code for a colleague or for another device of this clinician, and revoking
//! one. An invite is an operation in the space's membership log that publishes the
//! invite's public keys and seals every content key this device holds to it; the code
//! carries the one-time secret and the log's anchor, never a key.

use rapport_wire::codes::{InviteCode, PersonalInvite};
use rapport_wire::frames::Role;
use rapport_wire::membership::{LogState, Op};

use super::connect::connect_known;
use super::link::Link;
use super::log::{Decision, append, now_secs, space_of};
use super::round::refresh_snapshot;
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::sealed::keyring::{self, InviteSecret};

/// Shortest and longest invite lifetimes (the relay refuses an invite already expired).
pub const MIN_TTL_SECS: u64 = 60;
/// See [`MIN_TTL_SECS`].
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// Creates an invite code for a colleague (owner or admin).
pub async fn create_invite(home: &Home, role: Role, ttl_secs: u64) -> Result<String> {
    let client = connect_known(home).await?;
    let code = create_invite_via(home, &client, role, ttl_secs).await;
    client.close().await;
    code
}

/// Appends an invite to a space's log; returns the state after it.
async fn invite_op<L: Link>(
    home: &Home,
    link: &L,
    kind: SpaceKind,
    secret: &InviteSecret,
    role: Role,
    expires_at: i64,
    member: Option<String>,
) -> Result<LogState> {
    let space = space_of(home, kind)?;
    let me = home.device_identity()?.device_id();
    append(home, link, kind, |state| {
        // Already in the log: an earlier attempt went through and its answer was lost.
        if state.invites.contains_key(&secret.id()) {
            return Ok(Decision::Done);
        }
        // A member may add a further device of their own (as a member), like the log's
        // rule; inviting a colleague takes an owner or admin.
        let own_device = role == Role::Member
            && state
                .members
                .get(&me)
                .is_some_and(|m| member.as_ref() == Some(&m.member));
        if !state.may_manage(me) && !own_device {
            return Err(Error::Sync(
                "only an owner or admin of the practice can invite".into(),
            ));
        }
        // Every key this device holds, so the joiner can read the snapshot and the log
        // after it whatever epoch they were sealed under.
        let keys = home.space_keys(kind)?;
        if !keys.iter().any(|k| k.epoch == state.epoch) {
            return Err(Error::Sync(format!(
                "this device has no key for the current epoch {}; sync first",
                state.epoch
            )));
        }
        Ok(Decision::Append(Op::Invite {
            invite: secret.keys(),
            role,
            expires_at,
            member: member.clone(),
            keys: keyring::for_invite(space, &keys, &secret.keys()),
        }))
    })
    .await
}

fn expiry(home: &Home, ttl_secs: u64) -> i64 {
    let ttl = ttl_secs.clamp(MIN_TTL_SECS, MAX_TTL_SECS);
    now_secs(home) + i64::try_from(ttl).unwrap_or(i64::MAX / 2)
}

/// [`create_invite`] over a link already open.
pub async fn create_invite_via<L: Link>(
    home: &Home,
    link: &L,
    role: Role,
    ttl_secs: u64,
) -> Result<String> {
    if role == Role::Owner {
        return Err(Error::invalid(
            "role",
            "an invite makes an admin or a member; a practice has one owner",
        ));
    }
    let relay = home
        .relay()?
        .ok_or_else(|| Error::Sync("connect the practice to a relay before inviting".into()))?;
    let secret = InviteSecret::generate();
    let expires_at = expiry(home, ttl_secs);
    let state = invite_op(
        home,
        link,
        SpaceKind::Practice,
        &secret,
        role,
        expires_at,
        None,
    )
    .await?;
    // The joiner starts from the newest snapshot: make sure there is one.
    refresh_snapshot(home, link).await?;
    Ok(InviteCode {
        addr: relay.addr,
        fingerprint: relay.fingerprint,
        space: state.space,
        anchor: state.anchor.0,
        secret: *secret.bytes(),
        role,
        expires_at,
        member: None,
        personal: None,
    }
    .encode())
}

/// Creates an invite code for another device of this clinician (their phone, say): it
/// joins as the same member and receives their personal space too.
pub async fn create_device_invite(home: &Home, ttl_secs: u64) -> Result<String> {
    let client = connect_known(home).await?;
    let code = create_device_invite_via(home, &client, ttl_secs).await;
    client.close().await;
    code
}

/// [`create_device_invite`] over a link already open.
pub async fn create_device_invite_via<L: Link>(
    home: &Home,
    link: &L,
    ttl_secs: u64,
) -> Result<String> {
    let relay = home.relay()?.ok_or_else(|| {
        Error::Sync("connect the practice to a relay before adding a device".into())
    })?;
    let me = home.device_identity()?.device_id();
    let member = home.identity()?.ok_or(Error::NoPractice)?.member_id;
    let practice = super::log::refresh(home, link, SpaceKind::Practice).await?;
    // The new device may manage the practice if this one may (an owner's second device
    // becomes an admin: a practice has one owner device); a member's is a member.
    let role = match practice.role(me) {
        Some(Role::Owner | Role::Admin) => Role::Admin,
        Some(Role::Member) => Role::Member,
        None => {
            return Err(Error::Sync(
                "this device is not (or no longer) a member of the practice".into(),
            ));
        }
    };
    let expires_at = expiry(home, ttl_secs);
    let secret = InviteSecret::generate();
    let practice = invite_op(
        home,
        link,
        SpaceKind::Practice,
        &secret,
        role,
        expires_at,
        Some(member.clone()),
    )
    .await?;
    let personal_secret = InviteSecret::generate();
    super::connect::ensure_personal_space(home, link).await?;
    let personal = invite_op(
        home,
        link,
        SpaceKind::Personal,
        &personal_secret,
        Role::Member,
        expires_at,
        Some(member.clone()),
    )
    .await?;
    refresh_snapshot(home, link).await?;
    Ok(InviteCode {
        addr: relay.addr,
        fingerprint: relay.fingerprint,
        space: practice.space,
        anchor: practice.anchor.0,
        secret: *secret.bytes(),
        role,
        expires_at,
        member: Some(member),
        personal: Some(PersonalInvite {
            space: personal.space,
            anchor: personal.anchor.0,
            secret: *personal_secret.bytes(),
        }),
    }
    .encode())
}

/// Revokes a pending invite, named by its id as `rapport devices` shows it (or any
/// unambiguous start of it). Returns the id revoked.
pub async fn revoke_invite(home: &Home, id: &str) -> Result<String> {
    let client = connect_known(home).await?;
    let revoked = revoke_invite_via(home, &client, id).await;
    client.close().await;
    revoked
}

/// [`revoke_invite`] over a link already open.
pub async fn revoke_invite_via<L: Link>(home: &Home, link: &L, id: &str) -> Result<String> {
    let wanted = id.trim().to_ascii_lowercase();
    if wanted.len() < 4 {
        return Err(Error::invalid(
            "invite",
            "name the invite by at least 4 characters of its id (see `rapport devices`)",
        ));
    }
    let mut revoked = String::new();
    append(home, link, SpaceKind::Practice, |state| {
        let matching: Vec<_> = state
            .invites
            .keys()
            .filter(|i| rapport_wire::ids::hex(&i.0).starts_with(&wanted))
            .copied()
            .collect();
        match matching.as_slice() {
            [one] => {
                revoked = one.to_string();
                Ok(Decision::Append(Op::RevokeInvite { invite: *one }))
            }
            [] if !revoked.is_empty() => Ok(Decision::Done),
            [] => Err(Error::invalid(
                "invite",
                format!(
                    "no pending invite has an id starting with {wanted} (see `rapport devices`)"
                ),
            )),
            _ => Err(Error::invalid(
                "invite",
                format!(
                    "{} pending invites start with {wanted}; give more of the id",
                    matching.len()
                ),
            )),
        }
    })
    .await?;
    Ok(revoked)
}
