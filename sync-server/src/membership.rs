//! The relay's side of the membership logs: it stores each space's log, checks every new
//! operation with the same rules the devices apply (`rapport_wire::membership`), orders
//! the log by compare-and-set on its head, and derives from it who may connect to a space.
//!
//! Who may use a space is the log's current members, and for a personal space only those
//! that are also current members of its practice: removing a device from the practice
//! refuses it on every space at once, before the clinician's other devices rotate their
//! personal key.

use rapport_wire::frames::{ErrorCode, Role};
use rapport_wire::membership::{Clock, LogError, LogState, Op, SignedOp, SpaceKind};
use rapport_wire::{DeviceId, SpaceId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{Outcome, Refusal};

/// The refusal a device sees for an operation the rules refuse.
pub fn refusal(e: LogError) -> Refusal {
    let code = match &e {
        LogError::Stale { .. } => ErrorCode::Stale,
        LogError::Refused(_) => ErrorCode::Forbidden,
        LogError::Malformed(_)
        | LogError::BadSignature
        | LogError::WrongSpace
        | LogError::WrongAnchor
        | LogError::Rollback(_) => ErrorCode::BadRequest,
    };
    Refusal::new(code, e.to_string())
}

/// A space's verified state, if it has a log.
pub fn state(c: &Connection, space: SpaceId) -> Outcome<Option<LogState>> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached("SELECT state FROM log_states WHERE space = ?1")?
        .query_row([&space.0[..]], |r| r.get(0))
        .optional()?;
    bytes
        .map(|b| {
            postcard::from_bytes(&b).map_err(|e| {
                tracing::error!(error = %e, "a stored membership state does not decode");
                Refusal::new(
                    ErrorCode::Internal,
                    "the relay's storage failed; retry later",
                )
            })
        })
        .transpose()
}

/// The state of a space that must have a log.
pub fn existing_state(c: &Connection, space: SpaceId) -> Outcome<LogState> {
    state(c, space)?.ok_or_else(|| {
        let legacy: bool = c
            .query_row(
                "SELECT count(*) FROM spaces WHERE id = ?1",
                [&space.0[..]],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .unwrap_or(false);
        if legacy {
            Refusal::new(
                ErrorCode::NotMember,
                "this space synced before membership logs: the device that connected it must sync first, then the others join again with new invites",
            )
        } else {
            Refusal::new(ErrorCode::UnknownSpace, "no such space")
        }
    })
}

/// Operations `from..` of a space's log (at most `limit`) and the log's length.
pub fn ops(
    c: &Connection,
    space: SpaceId,
    from: u64,
    limit: usize,
) -> Outcome<(Vec<SignedOp>, u64)> {
    let len = existing_state(c, space)?.len;
    let mut stmt = c.prepare_cached(
        "SELECT op FROM membership_log WHERE space = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            &space.0[..],
            i64::try_from(from).unwrap_or(i64::MAX),
            limit as i64
        ],
        |r| r.get::<_, Vec<u8>>(0),
    )?;
    let mut ops = Vec::new();
    for row in rows {
        let op: SignedOp = postcard::from_bytes(&row?)
            .map_err(|_| Refusal::new(ErrorCode::Internal, "the relay's storage failed"))?;
        ops.push(op);
    }
    Ok((ops, len))
}

fn store_op(c: &Connection, state: &LogState, op: &SignedOp) -> Outcome<()> {
    let bytes = postcard::to_allocvec(op)
        .map_err(|_| Refusal::new(ErrorCode::Internal, "cannot store the operation"))?;
    let state_bytes = postcard::to_allocvec(state)
        .map_err(|_| Refusal::new(ErrorCode::Internal, "cannot store the state"))?;
    c.prepare_cached("INSERT INTO membership_log (space, seq, op) VALUES (?1, ?2, ?3)")?
        .execute(params![&state.space.0[..], (state.len - 1) as i64, bytes])?;
    c.prepare_cached("INSERT OR REPLACE INTO log_states (space, state) VALUES (?1, ?2)")?
        .execute(params![&state.space.0[..], state_bytes])?;
    Ok(())
}

/// Starts a space's log with its genesis (the caller checked who may).
pub fn start(c: &Connection, genesis: &SignedOp, now: i64) -> Outcome<LogState> {
    let state = LogState::genesis(genesis, None).map_err(refusal)?;
    if (state.last_at - now).abs() > rapport_wire::membership::MAX_CLOCK_SKEW_SECS {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this device's clock differs from the relay's by more than 10 minutes; set the time and try again",
        ));
    }
    store_op(c, &state, genesis)?;
    sync_memberships(c, &state)?;
    Ok(state)
}

/// The genesis of a space's log, if it has one.
pub fn genesis(c: &Connection, space: SpaceId) -> Outcome<Option<SignedOp>> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached("SELECT op FROM membership_log WHERE space = ?1 AND seq = 0")?
        .query_row([&space.0[..]], |r| r.get(0))
        .optional()?;
    Ok(bytes.and_then(|b| postcard::from_bytes(&b).ok()))
}

/// Appends an operation uploaded by `device` on the log's current head; returns the log's
/// new length.
pub fn append(
    c: &Connection,
    space: SpaceId,
    device: DeviceId,
    op: &SignedOp,
    now: i64,
) -> Outcome<u64> {
    if op.signer_id() != device {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "an operation is uploaded by the device that signed it",
        ));
    }
    let mut state = existing_state(c, space)?;
    state.apply(op, Clock::Relay(now)).map_err(refusal)?;
    store_op(c, &state, op)?;
    sync_memberships(c, &state)?;
    let body = op.open().map_err(refusal)?;
    if state.kind == SpaceKind::Practice && matches!(body.op, Op::Remove { .. }) {
        // Refused on every space at once: the practice's personal spaces too.
        let personal: Vec<Vec<u8>> = c
            .prepare_cached("SELECT id FROM spaces WHERE practice = ?1")?
            .query_map([&space.0[..]], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in personal {
            if let Some(personal) = state_of_id(c, &id)? {
                sync_memberships(c, &personal)?;
            }
        }
    }
    Ok(state.len)
}

fn state_of_id(c: &Connection, id: &[u8]) -> Outcome<Option<LogState>> {
    let Ok(bytes) = <[u8; 16]>::try_from(id) else {
        return Ok(None);
    };
    state(c, SpaceId(bytes))
}

/// Rewrites who may use a space from its log: its current members, and, for a personal
/// space, only those still members of its practice.
pub fn sync_memberships(c: &Connection, state: &LogState) -> Outcome<()> {
    let practice = match state.kind {
        SpaceKind::Practice => None,
        SpaceKind::Personal { practice } => Some(existing_state(c, practice)?),
    };
    c.prepare_cached("DELETE FROM memberships WHERE space = ?1")?
        .execute([&state.space.0[..]])?;
    let mut insert = c.prepare_cached(
        "INSERT INTO memberships (space, device, role, joined_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (device, member) in &state.members {
        if practice.as_ref().is_some_and(|p| !p.is_member(*device)) {
            continue;
        }
        let role = match state.kind {
            // Every device of a personal space manages it (they are one clinician's).
            SpaceKind::Personal { .. } => Role::Admin,
            SpaceKind::Practice => member.role,
        };
        insert.execute(params![
            &state.space.0[..],
            &device.0[..],
            role.code(),
            member.joined_at
        ])?;
    }
    Ok(())
}
