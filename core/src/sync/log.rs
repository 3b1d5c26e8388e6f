//! Fetching and extending a space's membership log: the IO around
//! [`super::membership`]'s decisions. A device fetches what follows the log it verified,
//! verifies it, keeps it with the keys it gave, and appends its own operations on the
//! head it verified; when another device's operation came first, it fetches, decides
//! again and retries.

use rapport_wire::SpaceId;
use rapport_wire::client::ClientError;
use rapport_wire::frames::{ErrorCode, InviteRead, Request, Response};
use rapport_wire::membership::{LogState, Op, OpHash, Recipient, SignedOp, next_op};

use super::link::{Link, odd, sync_error};
use super::membership::{self, Verified};
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::home::{Home, VerifiedLog};
use crate::sealed::crypto::BoxKey;

/// The most times an operation is decided again after others came first.
const RETRIES: usize = 16;

/// The id of one of this home's spaces, as the wire spells it.
pub fn space_of(home: &Home, kind: SpaceKind) -> Result<SpaceId> {
    let id = home.space_id(kind)?;
    SpaceId::parse(&id).ok_or_else(|| Error::Internal(format!("space id {id} is not a UUID")))
}

/// Unix seconds by the home's clock (what operations are stamped with).
pub fn now_secs(home: &Home) -> i64 {
    home.clock().now_ms().div_euclid(1000)
}

/// Fetches a log from operation `from` on, page by page, with an invite's proof for a
/// device not admitted yet. Returns the operations and the length the relay claims.
pub async fn fetch<L: Link>(
    link: &L,
    space: SpaceId,
    from: u64,
    invite: Option<InviteRead>,
) -> Result<(Vec<SignedOp>, u64)> {
    let mut ops = Vec::new();
    let mut next = from;
    loop {
        let Response::Log { ops: page, len } = link
            .request(&Request::GetLog {
                space,
                from: next,
                invite: invite.clone(),
            })
            .await
            .map_err(sync_error)?
        else {
            return Err(odd("a membership log request"));
        };
        let got = page.len() as u64;
        ops.extend(page);
        next += got;
        if got == 0 || next >= len {
            return Ok((ops, len));
        }
    }
}

/// Brings a space's log up to the relay's: fetches what follows the verified state,
/// verifies it, keeps it and the keys it sealed to this device. Returns the state.
pub async fn refresh<L: Link>(home: &Home, link: &L, kind: SpaceKind) -> Result<LogState> {
    let known = home.membership(kind)?.ok_or_else(|| {
        Error::Sync(
            "this device has no membership log for this space yet; join the practice again with a new invite (its data stays)".into(),
        )
    })?;
    let space = space_of(home, kind)?;
    let (ops, len) = fetch(link, space, known.len, None).await?;
    let mine = home.box_key()?;
    let me = home.device_identity()?.device_id();
    let verified = membership::verify(
        Some(&known),
        None,
        len,
        ops,
        &[(Recipient::Device(me), &mine)],
    )?;
    keep(home, kind, &verified)?;
    Ok(verified.state)
}

/// Keeps a verified stretch and its keys; problems with keys are logged (the round then
/// fails at sealing, with its own message, if the current key is among them).
pub fn keep(home: &Home, kind: SpaceKind, verified: &Verified) -> Result<()> {
    for problem in &verified.problems {
        tracing::warn!(%problem, "a key sealed to this device was refused");
    }
    if verified.ops.is_empty() && verified.keys.is_empty() {
        return Ok(());
    }
    home.absorb_membership(
        kind,
        &VerifiedLog {
            ops: &verified.ops,
            state: &verified.state,
        },
        &verified.keys,
    )
}

/// Verifies a whole log fetched for joining, from the anchor an invite carried, opening
/// keys sealed to `mine`.
pub fn verify_from_anchor(
    ops: Vec<SignedOp>,
    len: u64,
    anchor: OpHash,
    mine: &[(Recipient, &BoxKey)],
) -> Result<Verified> {
    let verified = membership::verify(None, Some(anchor), len, ops, mine)?;
    if verified.state.len < len {
        return Err(Error::Sync(
            "the relay served only part of the membership log".into(),
        ));
    }
    Ok(verified)
}

/// What an operation decision came to.
pub enum Decision {
    /// Append this operation.
    Append(Op),
    /// Nothing to do (someone else already did it).
    Done,
}

/// Appends the operation `decide` makes from the current state, on that state's head;
/// when another device's operation came first, refreshes and decides again. Returns the
/// state after this device's operation (or the current one when nothing was to do), with
/// the keys it sealed to this device kept.
pub async fn append<L: Link>(
    home: &Home,
    link: &L,
    kind: SpaceKind,
    mut decide: impl FnMut(&LogState) -> Result<Decision>,
) -> Result<LogState> {
    let identity = home.device_identity()?;
    let space = space_of(home, kind)?;
    for _ in 0..RETRIES {
        let state = refresh(home, link, kind).await?;
        let op = match decide(&state)? {
            Decision::Done => return Ok(state),
            Decision::Append(op) => op,
        };
        let signed = next_op(&state, op, now_secs(home), identity.key_pkcs8())
            .map_err(|e| Error::Internal(e.to_string()))?;
        match link.request(&Request::AppendOp { space, op: signed }).await {
            Ok(Response::Appended { .. }) => {
                fail::fail_point!("after-append", |_| Err(Error::Sync(
                    "failpoint: cut off after the relay took the operation".into()
                )));
                return refresh(home, link, kind).await;
            }
            Ok(_) => return Err(odd("a membership operation")),
            Err(ClientError::Refused {
                code: ErrorCode::Stale,
                ..
            }) => continue,
            Err(e) => return Err(sync_error(e)),
        }
    }
    Err(Error::Sync(
        "the membership log kept moving while this device tried to change it; try again".into(),
    ))
}
