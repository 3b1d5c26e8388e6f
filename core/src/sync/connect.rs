//! Connecting: to the relay this home knows, a practice to a relay with its setup code,
//! a clinician's personal space, and a space from before membership logs (adoption).

use rapport_wire::client::{ClientError, RelayClient, resolve};
use rapport_wire::codes::SetupCode;
use rapport_wire::frames::{ErrorCode, Request};
use rapport_wire::membership::{LogState, Recipient, SignedOp, SpaceKind as LogKind, genesis_op};

use super::link::{Link, ask, sync_error};
use super::log::{fetch, now_secs, space_of};
use super::membership;
use super::round::{SyncReport, round};
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::home::{Home, RelayInfo, VerifiedLog};
use crate::sealed::keyring;

/// Connects to a relay as this device.
pub async fn connect(home: &Home, addr: &str, fingerprint: [u8; 32]) -> Result<RelayClient> {
    let identity = home.device_identity()?;
    let socket = resolve(addr).await.map_err(sync_error)?;
    RelayClient::connect(socket, &identity, fingerprint)
        .await
        .map_err(sync_error)
}

/// Connects to the relay this home already knows.
pub async fn connect_known(home: &Home) -> Result<RelayClient> {
    let relay = home.relay()?.ok_or_else(|| {
        Error::Sync(
            "this practice is not connected to a relay yet: use a setup code (rapport relay connect)".into(),
        )
    })?;
    connect(home, &relay.addr, relay.fingerprint).await
}

/// Connects the practice of `home` to a relay with the relay's one-time setup code:
/// registers the practice with its membership log and this clinician's personal space,
/// and pushes everything.
pub async fn connect_practice(home: &Home, setup_code: &str) -> Result<SyncReport> {
    let code =
        SetupCode::decode(setup_code).map_err(|e| Error::invalid("setup code", e.to_string()))?;
    if home.relay()?.is_some() {
        return Err(Error::Conflict(
            "this practice is already connected to a relay (if connecting was cut off, sync to finish it)".into(),
        ));
    }
    let client = connect(home, &code.addr, code.fingerprint).await?;
    let report = connect_practice_via(home, &client, &code).await;
    client.close().await;
    report
}

/// [`connect_practice`] over a link already open.
pub async fn connect_practice_via<L: Link>(
    home: &Home,
    link: &L,
    code: &SetupCode,
) -> Result<SyncReport> {
    // The genesis is kept before it is sent: a retry after a lost answer sends the same
    // bytes, which the relay admits again.
    let genesis = ensure_genesis(home, SpaceKind::Practice)?;
    ask(
        link,
        &Request::Register {
            setup_token: code.token.clone(),
            genesis,
        },
    )
    .await?;
    home.set_registered(SpaceKind::Practice)?;
    // The setup code is spent now: keep the relay before anything else goes over the
    // network. The personal space comes after; if the connection is lost before it, the
    // next full round registers it.
    home.set_relay(&RelayInfo {
        addr: code.addr.clone(),
        fingerprint: code.fingerprint,
    })?;
    fail::fail_point!("connect-after-register", |_| Err(Error::Sync(
        "failpoint: connecting was cut off after the practice was registered".into()
    )));
    ensure_personal_space(home, link).await?;
    round(home, link).await
}

/// The genesis of one of this home's spaces: the one kept, or a new one (with the
/// space's first key, sealed to this device), kept with its key before it is returned.
fn ensure_genesis(home: &Home, kind: SpaceKind) -> Result<SignedOp> {
    if home.membership(kind)?.is_some()
        && let Some(genesis) = home.membership_ops(kind, 0)?.into_iter().next()
    {
        return Ok(genesis);
    }
    let (genesis, state, key) = new_genesis(home, kind)?;
    home.absorb_membership(
        kind,
        &VerifiedLog {
            ops: std::slice::from_ref(&genesis),
            state: &state,
        },
        &[key],
    )?;
    Ok(genesis)
}

/// A new genesis for one of this home's spaces. Its first epoch follows any key the
/// space had before its log (a space from protocol 1).
fn new_genesis(
    home: &Home,
    kind: SpaceKind,
) -> Result<(SignedOp, LogState, crate::sealed::crypto::SpaceKey)> {
    let identity = home.device_identity()?;
    let member = home.identity()?.ok_or(Error::NoPractice)?.member_id;
    let space = space_of(home, kind)?;
    let boxed = home.box_key()?;
    let epoch = home
        .space_keys(kind)?
        .last()
        .map_or(1, |k| k.epoch.saturating_add(1));
    let (key, first) = keyring::first_key(space, identity.device_id(), boxed.public(), epoch);
    let log_kind = match kind {
        SpaceKind::Practice => LogKind::Practice,
        SpaceKind::Personal => LogKind::Personal {
            practice: space_of(home, SpaceKind::Practice)?,
        },
    };
    let keys = rapport_wire::membership::DeviceKeys {
        signing: identity
            .public_key()
            .try_into()
            .map_err(|_| Error::Internal("the device key is not an Ed25519 key".into()))?,
        x25519: boxed.public(),
    };
    let genesis = genesis_op(
        space,
        log_kind,
        keys,
        member,
        first,
        now_secs(home),
        identity.key_pkcs8(),
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let state = LogState::genesis(&genesis, None).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((genesis, state, key))
}

/// Registers this clinician's personal space on the relay with its log, if that has not
/// happened yet (connecting a practice and a new clinician's join do it last; if they are
/// cut off just before, a later join or full round does it). The relay admits the same
/// genesis again, so a lost answer is harmless.
pub async fn ensure_personal_space<L: Link>(home: &Home, link: &L) -> Result<()> {
    if home.is_registered(SpaceKind::Personal)? || home.membership(SpaceKind::Practice)?.is_none() {
        return Ok(());
    }
    if space_of(home, SpaceKind::Personal).is_err() {
        return Ok(());
    }
    // Keys but no log: the personal space is from protocol 1, and the relay has it.
    if home.membership(SpaceKind::Personal)?.is_none()
        && home.current_space_key(SpaceKind::Personal)?.is_some()
    {
        return adopt(home, link, SpaceKind::Personal).await;
    }
    let genesis = ensure_genesis(home, SpaceKind::Personal)?;
    ask(link, &Request::CreateSpace { genesis }).await?;
    home.set_registered(SpaceKind::Personal)
}

/// Gives a space that synced before membership logs (its home has keys but no log) its
/// log, when this is the device that connected it; any other device of such a practice is
/// told to join again with a new invite.
pub async fn adopt<L: Link>(home: &Home, link: &L, kind: SpaceKind) -> Result<()> {
    let (genesis, state, key) = new_genesis(home, kind)?;
    match link.request(&Request::Adopt { genesis: genesis.clone() }).await {
        Ok(_) => {
            home.absorb_membership(
                kind,
                &VerifiedLog {
                    ops: std::slice::from_ref(&genesis),
                    state: &state,
                },
                &[key],
            )?;
            home.set_registered(kind)?;
            // Joiners need a snapshot they can check: the next round uploads one.
            home.set_last_snapshot(kind, 0)?;
            tracing::info!(?kind, "gave a space from protocol 1 its membership log");
            Ok(())
        }
        // An earlier adoption whose answer was lost: the relay holds our own genesis.
        Err(ClientError::Refused {
            code: ErrorCode::SpaceExists,
            ..
        }) => recover_own_genesis(home, link, kind).await,
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }) => Err(Error::Sync(
            "this practice now verifies its members: ask an owner or admin for a new invite and run `rapport join CODE` on this device (nothing stored here is lost)".into(),
        )),
        Err(e) => Err(sync_error(e)),
    }
}

async fn recover_own_genesis<L: Link>(home: &Home, link: &L, kind: SpaceKind) -> Result<()> {
    let space = space_of(home, kind)?;
    let (ops, len) = fetch(link, space, 0, None).await?;
    let me = home.device_identity()?.device_id();
    if ops.first().map(SignedOp::signer_id) != Some(me) {
        return Err(Error::Sync(
            "another device gave this space its membership log; join again with an invite".into(),
        ));
    }
    let anchor = ops.first().map(SignedOp::hash);
    let mine = home.box_key()?;
    let verified = membership::verify(None, anchor, len, ops, &[(Recipient::Device(me), &mine)])?;
    super::log::keep(home, kind, &verified)?;
    home.set_registered(kind)
}
