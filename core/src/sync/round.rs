//! A sync round: for each space, the steps `engine` plans, run over a link: bring the
//! membership log up to date (and with it the keys), finish removals a personal space
//! owes, push what the relay has not acknowledged, pull and merge what is new, and now
//! and then upload a snapshot.

use rapport_wire::frames::{Entry, ErrorCode, MAX_BLOB, MAX_SNAPSHOT, Request, Response};
use rapport_wire::membership::{LogState, Op};
use rapport_wire::{DeviceId, SpaceId};
use sha2::{Digest, Sha256};

use super::connect::{adopt, connect_known, ensure_personal_space};
use super::engine::{self, EntryAction, EntryFacts, SpaceView, Step, Trigger};
use super::link::{Link, ask, odd, sync_error};
use super::log::{Decision, append, refresh, space_of};
use super::membership::{Standing, removals_owed, sealing_key, standing};
use super::witness;
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::events::PrivacyFlag;
use crate::home::{Home, StatementMark};
use crate::sealed::crypto::{self, SpaceKey};
use crate::sealed::entry::{self, PIECE};
use crate::sealed::fragment::{self, Reassembly};
use crate::sealed::keyring;
use crate::sealed::snapshot::SpaceSnapshot;
use crate::store::chunks;

pub use super::engine::SNAPSHOT_EVERY;

/// Entries pulled per request.
const PAGE: u32 = 500;

/// What one sync round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct SyncReport {
    /// Blobs pushed.
    pub pushed: u64,
    /// Entries merged.
    pub merged: u64,
    /// Entries refused (bad signature, wrong key, tampered), with why; the entries after
    /// them were still merged.
    pub rejected: Vec<String>,
    /// Entries waiting for a key that has not reached this device yet: the cursor stays
    /// before them and the next round tries again.
    pub held: u64,
    /// Colleagues' changes the relay has not delivered although their signed word that
    /// they exist arrived (see [`super::witness`]), in words.
    pub withheld: Vec<String>,
    /// Merged text that looks like a client identifier: kept (refusing a merged change
    /// would split the devices) and flagged for someone to edit out.
    pub flagged: Vec<PrivacyFlag>,
}

/// What the engine needs to know of a space.
pub fn view(home: &Home, kind: SpaceKind) -> Result<SpaceView> {
    let log = home.membership(kind)?;
    let legacy = log.is_none() && home.current_space_key(kind)?.is_some();
    let position = home.sync_position(kind)?;
    let owes_removals = match (kind, &log) {
        (SpaceKind::Personal, Some(personal)) => home
            .membership(SpaceKind::Practice)?
            .is_some_and(|practice| !removals_owed(personal, &practice).is_empty()),
        _ => false,
    };
    Ok(SpaceView {
        kind,
        has_key: (log.is_some() && home.is_registered(kind)?) || legacy,
        needs_log: legacy,
        owes_removals,
        heads: chunks::encode_heads(&home.heads(kind)?),
        acked: chunks::encode_heads(&position.acked_heads),
        cursor: position.cursor,
        last_snapshot: home.last_snapshot(kind)?,
        pending: kind == SpaceKind::Practice && home.has_pending_join()?,
    })
}

/// Connects to the known relay and runs one round.
pub async fn sync_now(home: &Home) -> Result<SyncReport> {
    let client = connect_known(home).await?;
    let report = round(home, &client).await;
    client.close().await;
    report
}

/// One sync round with a connected link, for every space this home syncs; the engine
/// decides the steps, this runs them.
pub async fn round<L: Link>(home: &Home, link: &L) -> Result<SyncReport> {
    round_for(home, link, Trigger::Full, &|_, _| {}).await
}

/// A round that reports `(spaces done, spaces in the round)` as it goes.
pub async fn round_with_progress<L: Link>(
    home: &Home,
    link: &L,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SyncReport> {
    round_for(home, link, Trigger::Full, progress).await
}

/// A round for a trigger: full, pull-only after a notice, push-only after a local change.
pub async fn round_for<L: Link>(
    home: &Home,
    link: &L,
    trigger: Trigger,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SyncReport> {
    if trigger == Trigger::Full {
        // Not fatal: the practice syncs either way, and a later round tries again.
        if let Err(e) = ensure_personal_space(home, link).await {
            tracing::warn!(error = %e, "the personal space could not be registered on the relay");
        }
    }
    round_spaces(
        home,
        link,
        &[SpaceKind::Practice, SpaceKind::Personal],
        trigger,
        progress,
    )
    .await
}

/// A round over some of the spaces.
pub(super) async fn round_spaces<L: Link>(
    home: &Home,
    link: &L,
    kinds: &[SpaceKind],
    trigger: Trigger,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let total = u32::try_from(kinds.len()).unwrap_or(2);
    for (done, &kind) in kinds.iter().enumerate() {
        progress(u32::try_from(done).unwrap_or(0), total);
        for step in engine::plan_for(&view(home, kind)?, trigger) {
            match step {
                Step::Adopt => {
                    adopt(home, link, kind).await?;
                }
                Step::SyncLog => {
                    refresh(home, link, kind).await?;
                }
                Step::FinishRemovals => finish_removals(home, link).await?,
                Step::Push => push(home, link, kind, &mut report).await?,
                Step::Pull => pull(home, link, kind, &mut report).await?,
                Step::Snapshot => upload_snapshot(home, link, kind).await?,
            }
        }
        if engine::wants_snapshot(&view(home, kind)?) {
            upload_snapshot(home, link, kind).await?;
        }
    }
    progress(total, total);
    Ok(report)
}

/// Removes from this clinician's personal space the devices removed from the practice,
/// with a new personal key: a removal made from a colleague's device finishes here.
pub(super) async fn finish_removals<L: Link>(home: &Home, link: &L) -> Result<()> {
    let practice = refresh(home, link, SpaceKind::Practice).await?;
    let me = home.device_identity()?.device_id();
    let at = super::log::now_secs(home);
    append(home, link, SpaceKind::Personal, |personal| {
        let owed = removals_owed(personal, &practice);
        if owed.is_empty() || !personal.is_member(me) {
            return Ok(Decision::Done);
        }
        let remaining = keyring::without(personal, &owed);
        let (_, rotation) = keyring::rotation(&remaining, personal.epoch + 1, at);
        Ok(Decision::Append(Op::Remove {
            devices: owed,
            rotation,
        }))
    })
    .await?;
    tracing::info!("a device removed from the practice was removed from this personal space too");
    Ok(())
}

/// The key to seal with now: the current epoch's, from the verified log.
fn current_key(home: &Home, kind: SpaceKind, state: &LogState) -> Result<SpaceKey> {
    let me = home.device_identity()?.device_id();
    sealing_key(state, me, home.space_key(kind, state.epoch)?)
}

/// The log as verified here, for a space synced before membership logs: none.
fn verified(home: &Home, kind: SpaceKind) -> Result<LogState> {
    home.membership(kind)?
        .ok_or_else(|| Error::Sync("this space has no membership log on this device yet".into()))
}

async fn push<L: Link>(
    home: &Home,
    link: &L,
    kind: SpaceKind,
    report: &mut SyncReport,
) -> Result<()> {
    if kind == SpaceKind::Practice && home.has_pending_join()? {
        // Joined from a snapshot: loading the document writes this member's entry.
        home.load_document(kind)?;
    }
    let position = home.sync_position(kind)?;
    let heads = home.heads(kind)?;
    if chunks::encode_heads(&heads) == chunks::encode_heads(&position.acked_heads) {
        return Ok(());
    }
    let pieces = home.changes_since_in_pieces(kind, &position.acked_heads, PIECE)?;
    if !pieces.is_empty() {
        let space = space_of(home, kind)?;
        let identity = home.device_identity()?;
        let heads_hash = Sha256::digest(chunks::encode_heads(&heads));
        // A change larger than one entry goes in parts (see `fragment`).
        let mut entries = Vec::new();
        for piece in pieces {
            if piece.len() > PIECE {
                entries.extend(fragment::split(&piece, PIECE).map_err(Error::Sync)?);
            } else {
                entries.push(piece);
            }
        }
        let state = verified(home, kind)?;
        let mut key = current_key(home, kind, &state)?;
        // The last entry carries this device's signed heads and the statements it passes on.
        let (statements, forwarded) = witness::outgoing(home, kind, space, &state, &heads)?;
        let last = entries.len() - 1;
        for (index, piece) in entries.iter().enumerate() {
            // Derived from the heads and the piece, so a retry after a crash is recognised
            // as the same push.
            let mut hasher = Sha256::new();
            hasher.update(heads_hash);
            hasher.update((index as u64).to_be_bytes());
            let mut client_msg_id = [0u8; 16];
            client_msg_id.copy_from_slice(&hasher.finalize()[..16]);
            let plain = entry::encode(if index == last { &statements } else { &[] }, piece);
            let mut attempts = 0;
            loop {
                let blob = crypto::seal(&key, space, identity.key_pkcs8(), &plain)
                    .map_err(|e| Error::Sync(e.to_string()))?;
                if blob.len() > MAX_BLOB {
                    return Err(Error::Internal(format!(
                        "an entry of {} bytes is larger than the relay takes ({MAX_BLOB})",
                        piece.len()
                    )));
                }
                match link
                    .request(&Request::Push {
                        space,
                        epoch: key.epoch,
                        client_msg_id,
                        blob,
                    })
                    .await
                {
                    Ok(_) => break,
                    // The key rotated since this device last looked: seal again under the
                    // new one (never the old one, which a removed device still holds).
                    Err(e) if e.code() == Some(ErrorCode::StaleEpoch) && attempts < 2 => {
                        attempts += 1;
                        let state = refresh(home, link, kind).await?;
                        key = current_key(home, kind, &state)?;
                    }
                    Err(e) => return Err(sync_error(e)),
                }
            }
            report.pushed += 1;
        }
        home.mark_statements(kind, &forwarded, StatementMark::Forwarded)?;
    }
    home.set_acked_heads(kind, &heads)
}

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merged {
    /// Merged (or ours, or already had).
    Yes,
    /// Refused and reported; the entries after it go on.
    Refused,
    /// A part of a large change whose other parts have not arrived yet.
    Waiting,
    /// Its key has not reached this device: the cursor stays before it.
    Held,
}

/// Verifies, opens and merges one entry of `kind` (our own entries are already merged). A
/// bad entry (forged, sealed under the wrong key, not a valid change) is refused and
/// reported; it never stops the entries after it. A failure of this device's storage is an
/// error: it ends the round and leaves the cursor before the entry. An entry whose
/// key has not arrived is held. A part of a large change is collected in `parts` and the
/// change merged with its last part. A merge moves the relay cursor to the entry in the
/// same transaction, unless a large change is still incomplete (the cursor must then stay
/// before its first part).
#[allow(clippy::too_many_arguments)]
async fn merge_entry<L: Link>(
    home: &Home,
    link: &L,
    kind: SpaceKind,
    space: SpaceId,
    me: DeviceId,
    entry: &Entry,
    parts: &mut Reassembly,
    report: &mut SyncReport,
) -> Result<Merged> {
    let mut fetched = false;
    let newest_merged = home.newest_merged_epoch(kind)?;
    let key = loop {
        let key = home.space_key(kind, entry.epoch)?;
        let log = home.membership(kind)?;
        match engine::on_entry(EntryFacts {
            me,
            sender: entry.sender,
            epoch: entry.epoch,
            has_key: key.is_some(),
            log_epoch: log.as_ref().map_or(0, |s| s.epoch),
            fetched,
            sender_removed: log
                .as_ref()
                .is_some_and(|s| s.removed.contains_key(&entry.sender)),
            newest_merged,
        }) {
            EntryAction::Ours => return Ok(Merged::Yes),
            EntryAction::Open => break key,
            EntryAction::FetchLog => {
                refresh(home, link, kind).await?;
                fetched = true;
            }
            EntryAction::Hold => {
                tracing::info!(
                    seq = entry.seq,
                    epoch = entry.epoch,
                    "an entry waits for its key"
                );
                report.held += 1;
                return Ok(Merged::Held);
            }
            EntryAction::Refuse(why) => {
                report
                    .rejected
                    .push(format!("entry {} from {}: {why}", entry.seq, entry.sender));
                return Ok(Merged::Refused);
            }
        }
    };
    let opened = match key {
        Some(key) => {
            crypto::open(&key, space, entry.sender, &entry.blob).map_err(|e| e.to_string())
        }
        None => Err(format!("no key for epoch {}", entry.epoch)),
    };
    let mut statements = Vec::new();
    let change = opened.and_then(|plain| {
        let (said, payload) = entry::decode(&plain)?;
        statements = said;
        match fragment::parse(payload) {
            None => Ok(Some(payload.to_vec())),
            Some(part) => part.and_then(|part| parts.add(entry.sender, entry.seq, part)),
        }
    });
    let refused = match change {
        Ok(None) => return Ok(Merged::Waiting),
        Ok(Some(bytes)) => {
            let cursor = parts.first_waiting().is_none().then_some(entry.seq);
            match home.merge_entry(kind, &bytes, &entry.sender, cursor) {
                Ok(outcome) => {
                    report.merged += 1;
                    report.flagged.extend(outcome.flagged);
                    if outcome.foreign > 0 {
                        tracing::warn!(
                            seq = entry.seq,
                            sender = %entry.sender,
                            foreign = outcome.foreign,
                            "refused changes an entry passed off as another device's"
                        );
                        report.rejected.push(format!(
                            "entry {} from {}: {} change(s) written as another device's were \
                             refused (a device sends only its own changes)",
                            entry.seq, entry.sender, outcome.foreign
                        ));
                    }
                    if entry.epoch > newest_merged {
                        home.set_newest_merged_epoch(kind, entry.epoch)?;
                    }
                    if !statements.is_empty()
                        && let Some(state) = home.membership(kind)?
                    {
                        witness::absorb(home, kind, space, &state, me, &statements)?;
                    }
                    return Ok(Merged::Yes);
                }
                // Only bytes that are not a valid change refuse the entry. A failure of
                // this device (disk full, database busy, an I/O error) ends the round with
                // the cursor before the entry, which is fetched again next round.
                Err(e) if e.refuses_entry() => e.to_string(),
                Err(e) => return Err(e),
            }
        }
        Err(e) => e,
    };
    tracing::warn!(seq = entry.seq, sender = %entry.sender, "refused an entry: {refused}");
    report.rejected.push(format!(
        "entry {} from {}: {refused}",
        entry.seq, entry.sender
    ));
    Ok(Merged::Refused)
}

/// Applies an entry the relay carried inside a notice: merged at once when it is the next
/// one after the cursor (or skipped when already had). `false` means it could not be
/// handled in place (a gap before it, part of a large change, a key still to come): pull
/// instead.
pub async fn apply_delivered<L: Link>(
    home: &Home,
    link: &L,
    space: SpaceId,
    entry: &Entry,
    report: &mut SyncReport,
) -> Result<bool> {
    let mut kind = None;
    for candidate in [SpaceKind::Practice, SpaceKind::Personal] {
        if space_of(home, candidate).ok() == Some(space) {
            kind = Some(candidate);
        }
    }
    let Some(kind) = kind else {
        return Ok(false);
    };
    match engine::on_delivered(home.sync_position(kind)?.cursor, entry.seq) {
        engine::Delivered::AlreadyHad => return Ok(true),
        engine::Delivered::Gap => return Ok(false),
        engine::Delivered::Merge => {}
    }
    let me = home.device_identity()?.device_id();
    let mut parts = Reassembly::default();
    match merge_entry(home, link, kind, space, me, entry, &mut parts, report).await? {
        Merged::Yes => {
            if entry.sender == me {
                home.set_sync_cursor(kind, entry.seq)?;
            }
            Ok(true)
        }
        Merged::Refused => {
            home.set_sync_cursor(kind, entry.seq)?;
            Ok(true)
        }
        // The first part of a large change: a pull collects the rest.
        Merged::Waiting | Merged::Held => Ok(false),
    }
}

async fn pull<L: Link>(
    home: &Home,
    link: &L,
    kind: SpaceKind,
    report: &mut SyncReport,
) -> Result<()> {
    let space = space_of(home, kind)?;
    let me = home.device_identity()?.device_id();
    let mut cursor = home.sync_position(kind)?.cursor;
    // The last pull found changes withheld: read the relay's log again from its start.
    let rescan = witness::rescan_due(home.rescan_mark(kind)?.as_deref());
    if rescan.is_some() {
        tracing::info!(space = %space, "reading the relay's log from its start again");
        cursor = 0;
    }
    let mut parts = Reassembly::default();
    loop {
        let response = link
            .request(&Request::Pull {
                space,
                after: cursor,
                limit: PAGE,
            })
            .await;
        let (entries, more, head) = match response {
            Ok(Response::Entries {
                entries,
                more,
                head,
            }) => (entries, more, head),
            Ok(_) => return Err(odd("a pull")),
            Err(e) if e.code() == Some(ErrorCode::Pruned) => {
                // Our cursor predates a prune: catch up through the snapshot. Local edits
                // not pushed yet are untouched: merging never drops changes.
                let snapshot = fetch_snapshot(home, link, kind, space).await?;
                home.merge_from_relay(kind, &snapshot.1.document)?;
                cursor = snapshot.0;
                home.set_sync_cursor(kind, cursor)?;
                parts = Reassembly::default();
                continue;
            }
            Err(e) => return Err(sync_error(e)),
        };
        if head < cursor {
            return Err(Error::Sync(format!(
                "the relay's log ends at {head}, before entry {cursor} this device already has: it was rolled back or is not honest, and is refused"
            )));
        }
        let mut held = false;
        for entry in entries {
            if merge_entry(home, link, kind, space, me, &entry, &mut parts, report).await?
                == Merged::Held
            {
                // Never skipped: the cursor stays before it, and before what follows.
                held = true;
                break;
            }
            cursor = entry.seq;
            for given_up in parts.expire(cursor) {
                tracing::warn!("{given_up}");
                report.rejected.push(given_up);
            }
        }
        home.set_sync_cursor(kind, engine::cursor_after(cursor, parts.first_waiting()))?;
        if !held && !more && parts.first_waiting().is_none() {
            // Caught up: whatever a kept statement names should be here by now.
            if let Some(done) = &rescan {
                home.set_rescan_mark(kind, done)?;
            }
            if let Some(state) = home.membership(kind)? {
                let missing = witness::withheld(home, kind, &state)?;
                let mark = home.rescan_mark(kind)?;
                if let Some(due) = witness::rescan_decision(&missing, mark.as_deref()) {
                    home.set_rescan_mark(kind, &due)?;
                }
                for withheld in missing {
                    tracing::warn!("{}", withheld.message);
                    report.withheld.push(withheld.message);
                }
            }
        }
        if held || !more {
            return Ok(());
        }
    }
}

/// The relay's snapshot of a space, opened and checked: the position it covers is the
/// one sealed inside it, and its heads are its document's.
pub(super) async fn fetch_snapshot<L: Link>(
    home: &Home,
    link: &L,
    kind: SpaceKind,
    space: SpaceId,
) -> Result<(u64, SpaceSnapshot)> {
    let Response::Snapshot(Some(stored)) = ask(link, &Request::GetSnapshot { space }).await? else {
        return Err(Error::Sync(
            "the relay pruned entries but has no snapshot".into(),
        ));
    };
    let key = home
        .space_key(kind, stored.epoch)?
        .ok_or(Error::Sync(format!("no key for epoch {}", stored.epoch)))?;
    let snapshot = open_snapshot(&key, space, &stored)?;
    Ok((stored.covers, snapshot))
}

/// Opens a stored snapshot and checks it against what the relay says of it.
pub(super) fn open_snapshot(
    key: &SpaceKey,
    space: SpaceId,
    stored: &rapport_wire::frames::Snapshot,
) -> Result<SpaceSnapshot> {
    let plain = crypto::open(key, space, stored.sender, &stored.blob)
        .map_err(|e| Error::Sync(format!("the snapshot cannot be used: {e}")))?;
    let snapshot = SpaceSnapshot::decode(&plain)?;
    if snapshot.covers != Some(stored.covers) {
        return Err(Error::Sync(format!(
            "the relay presents a snapshot as covering the log up to {}, but the snapshot says {}: refused (the relay may be compromised)",
            stored.covers,
            snapshot.covers.map_or(
                "nothing (it predates verified snapshots)".to_string(),
                |c| c.to_string()
            )
        )));
    }
    if !snapshot.heads.is_empty() && !snapshot.heads_match_document() {
        return Err(Error::Sync(
            "the snapshot's heads are not its document's: refused".into(),
        ));
    }
    Ok(snapshot)
}

/// Before handing out an invite: exchange what is new, then, if the log has entries the
/// newest snapshot does not cover, upload a fresh one, so the new device finds the whole
/// practice in it (read model included) and joins without replaying a log.
pub(super) async fn refresh_snapshot<L: Link>(home: &Home, link: &L) -> Result<()> {
    round(home, link).await?;
    let kind = SpaceKind::Practice;
    let position = home.sync_position(kind)?;
    if position.cursor > home.last_snapshot(kind)? || home.last_snapshot(kind)? == 0 {
        upload_snapshot(home, link, kind).await?;
    }
    Ok(())
}

/// Seals a space snapshot for the relay. With the read model's records it may outgrow
/// what the relay takes; then it goes without them (joiners project the document).
fn seal_snapshot(home: &Home, kind: SpaceKind, key: &SpaceKey, covers: u64) -> Result<Vec<u8>> {
    let space = space_of(home, kind)?;
    let identity = home.device_identity()?;
    let seal = |snapshot: &SpaceSnapshot| {
        crypto::seal(key, space, identity.key_pkcs8(), &snapshot.encode())
            .map_err(|e| Error::Sync(e.to_string()))
    };
    let mut snapshot = home.space_snapshot(kind)?;
    snapshot.covers = Some(covers);
    let blob = seal(&snapshot)?;
    if blob.len() <= MAX_SNAPSHOT || snapshot.records.is_none() {
        return Ok(blob);
    }
    tracing::info!(
        bytes = blob.len(),
        "the snapshot with its read model is too large for the relay; sending the document only"
    );
    seal(&snapshot.without_records())
}

/// Uploads a sealed snapshot when enough entries accumulated since the last one, and,
/// when this device may, lets the relay prune what it covers. New devices then start
/// from the snapshot.
pub(super) async fn upload_snapshot<L: Link>(home: &Home, link: &L, kind: SpaceKind) -> Result<()> {
    let position = home.sync_position(kind)?;
    let mut state = verified(home, kind)?;
    let space = space_of(home, kind)?;
    let mut attempts = 0;
    let answer = loop {
        let key = current_key(home, kind, &state)?;
        // The document holds every entry up to the cursor (merged, or ours), so the
        // snapshot covers the cursor.
        let blob = seal_snapshot(home, kind, &key, position.cursor)?;
        if blob.len() > MAX_SNAPSHOT {
            tracing::warn!(
                bytes = blob.len(),
                "the space has outgrown the relay's snapshot size; the log is left unpruned"
            );
            home.set_last_snapshot(kind, position.cursor)?;
            return Ok(());
        }
        match link
            .request(&Request::PutSnapshot {
                space,
                epoch: key.epoch,
                covers: position.cursor,
                blob,
            })
            .await
        {
            // The key rotated since this device looked: seal again under the new one.
            Err(e) if e.code() == Some(ErrorCode::StaleEpoch) && attempts < 2 => {
                attempts += 1;
                state = refresh(home, link, kind).await?;
            }
            answer => break answer,
        }
    };
    match answer {
        Ok(_) => {
            let me = home.device_identity()?.device_id();
            if matches!(standing(&state, me), Standing::Member(_)) && state.may_manage(me) {
                ask(
                    link,
                    &Request::Prune {
                        space,
                        through: position.cursor,
                    },
                )
                .await?;
            }
            home.set_last_snapshot(kind, position.cursor)?;
            tracing::info!(space = %space, covers = position.cursor, "uploaded a snapshot");
        }
        // Another device got there first with a snapshot covering as much: nothing to do.
        Err(e) if e.code() == Some(ErrorCode::BadRequest) => {
            home.set_last_snapshot(kind, position.cursor)?
        }
        Err(e) => return Err(sync_error(e)),
    }
    Ok(())
}
