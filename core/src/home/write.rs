//! Everything that changes a home: creating or joining a practice, merging remote bytes,
//! and the entity writes (each a batch of one; see `batch`).

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc};
use rusqlite::TransactionBehavior;

use super::batch::{Batch, add_member};
use super::{Home, Ids, Space, load_space};
use crate::doc::fields::{put_str, put_time};
use crate::doc::{self, EntityRef, SCHEMA_VERSION, SpaceKind};
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, Origin, PrivacyFlag};
use crate::model::{
    Followup, Identity, Member, NewFollowup, NewPartner, NewReferral, NewTouchpoint, Note, Partner,
    PartnerEdit, Referral, Stream, Touchpoint,
};
use crate::store::{chunks, queries, read_model};
use crate::validate::{self, Day};
use crate::vocab::{ReferralOutcome, ReferralStatus, Role, StreamKind};

/// What merging remote bytes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Whether the document changed (false for duplicates).
    pub changed: bool,
    /// Entities whose read-model rows changed.
    pub entities: usize,
    /// Whether some changes wait for dependencies not received yet.
    pub waiting_for_dependencies: bool,
    /// Merged text that looks like a client identifier (kept, and flagged).
    pub flagged: Vec<PrivacyFlag>,
    /// Changes of a relay entry written by a device other than its sender, and not had
    /// from their writer: refused (a device passes on only its own changes).
    pub foreign: usize,
}

/// Upper bound on new changes for which the read model is patched entity by entity;
/// past it, one rebuild is cheaper than diffing.
const PATCH_LIMIT: usize = 2_000;

impl Home {
    /// Creates a practice on this device: the practice space, the creating member (owner)
    /// and their personal space.
    pub fn create_practice(&self, practice_name: &str, member_name: &str) -> Result<Identity> {
        let practice_name = validate::name("practice name", practice_name)?;
        let member_name = validate::name("member name", member_name)?;
        let now_ms = self.clock.now_ms();
        let member_id = doc::new_id();
        let mut writer = self.lock_writer();
        ensure_no_practice(&writer)?;
        let device_id = device_id(&writer.conn)?;
        let actor = doc::actor_for(&device_id);
        let practice = doc::genesis(
            SpaceKind::Practice,
            actor.clone(),
            &member_id,
            now_ms,
            |tx| {
                let record = tx.put_object(ROOT, "practice", ObjType::Map)?;
                put_str(tx, &record, "name", &practice_name)?;
                put_time(tx, &record, "created_at", now_ms)?;
                put_str(tx, &record, "created_by", &member_id)?;
                add_member(
                    tx,
                    &member_id,
                    &member_name,
                    Role::Owner,
                    Some(&device_id),
                    now_ms,
                )
            },
        )?;
        let ids = Ids {
            device_id,
            member_id: member_id.clone(),
            practice_id: doc::new_id(),
            personal_id: doc::new_id(),
        };
        self.install(&mut writer, &ids, practice)?;
        drop(writer);
        self.identity()?.ok_or(Error::NoPractice)
    }

    /// Refuses when this home already holds a practice (before a join goes to the relay).
    pub fn ensure_empty(&self) -> Result<()> {
        ensure_no_practice(&self.lock_writer())
    }

    /// Joins an existing practice from its document bytes (what an invite bootstraps):
    /// adds this clinician as a member and creates their personal space.
    pub fn join_practice(
        &self,
        practice_id: &str,
        document: &[u8],
        member_name: &str,
    ) -> Result<Identity> {
        self.join_practice_as(practice_id, document, &doc::new_id(), member_name)
    }

    /// [`Home::join_practice`] as the member `member_id` (the id this device's admission
    /// to the practice's membership log named).
    pub fn join_practice_as(
        &self,
        practice_id: &str,
        document: &[u8],
        member_id: &str,
        member_name: &str,
    ) -> Result<Identity> {
        let member_name = validate::name("member name", member_name)?;
        let practice_id = validate::id("practice id", practice_id)?;
        let member_id = validate::id("member id", member_id)?;
        let mut practice = joinable_practice(document)?;
        let now_ms = self.clock.now_ms();
        let mut writer = self.lock_writer();
        ensure_no_practice(&writer)?;
        let device_id = device_id(&writer.conn)?;
        practice.set_actor(doc::actor_for(&device_id));
        let relay_heads = practice.get_heads();
        practice
            .transact_with(
                |_| doc::commit_options(&member_id, now_ms),
                |tx| {
                    add_member(
                        tx,
                        &member_id,
                        &member_name,
                        Role::Member,
                        Some(&device_id),
                        now_ms,
                    )
                },
            )
            .map_err(|f| f.error)?;
        let ids = Ids {
            device_id,
            member_id,
            practice_id,
            personal_id: doc::new_id(),
        };
        self.install(&mut writer, &ids, practice)?;
        drop(writer);
        // What the document was joined from is already on the relay: only this device's
        // own changes need pushing.
        self.set_acked_heads(SpaceKind::Practice, &relay_heads)?;
        self.identity()?.ok_or(Error::NoPractice)
    }

    /// Adds this device to an existing clinician of a practice (their second device):
    /// the practice document and their personal space come from the relay; this device
    /// joins the member's devices instead of creating a new member.
    pub fn add_device(
        &self,
        practice_id: &str,
        practice_document: &[u8],
        member_id: &str,
        personal_id: &str,
        personal_document: &[u8],
    ) -> Result<Identity> {
        let practice_id = validate::id("practice id", practice_id)?;
        let personal_id = validate::id("personal space id", personal_id)?;
        let member_id = validate::id("member id", member_id)?;
        let mut practice = joinable_practice(practice_document)?;
        let personal = personal_space_of(personal_document, &member_id)?;
        let now_ms = self.clock.now_ms();
        let mut writer = self.lock_writer();
        ensure_no_practice(&writer)?;
        let device_id = device_id(&writer.conn)?;
        practice.set_actor(doc::actor_for(&device_id));
        let relay_heads = practice.get_heads();
        let personal_heads = personal.get_heads();
        practice
            .transact_with(
                |_| doc::commit_options(&member_id, now_ms),
                |tx| add_device_to_member(tx, &member_id, &device_id),
            )
            .map_err(|f| f.error)?;
        let ids = Ids {
            device_id,
            member_id,
            practice_id,
            personal_id,
        };
        self.install_with(&mut writer, &ids, practice, Some(personal))?;
        drop(writer);
        self.set_acked_heads(SpaceKind::Practice, &relay_heads)?;
        self.set_acked_heads(SpaceKind::Personal, &personal_heads)?;
        self.identity()?.ok_or(Error::NoPractice)
    }

    /// Stores a new practice document, a fresh personal space and the ids, in one
    /// transaction, and builds the read model.
    fn install(&self, writer: &mut super::Writer, ids: &Ids, practice: Automerge) -> Result<()> {
        self.install_with(writer, ids, practice, None)
    }

    fn install_with(
        &self,
        writer: &mut super::Writer,
        ids: &Ids,
        practice: Automerge,
        personal: Option<Automerge>,
    ) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let actor = doc::actor_for(&ids.device_id);
        let personal = match personal {
            Some(personal) => personal.with_actor(actor),
            None => new_personal_space(ids, now_ms)?,
        };
        let tx =
            rusqlite::Transaction::new_unchecked(&writer.conn, TransactionBehavior::Immediate)?;
        for (key, value) in [
            ("member_id", &ids.member_id),
            ("practice_id", &ids.practice_id),
            ("personal_id", &ids.personal_id),
        ] {
            tx.execute(
                "INSERT OR REPLACE INTO home (key, value) VALUES (?1, ?2)",
                [key, value.as_str()],
            )?;
        }
        for (id, kind, document) in [
            (&ids.practice_id, SpaceKind::Practice, &practice),
            (&ids.personal_id, SpaceKind::Personal, &personal),
        ] {
            let heads = document.get_heads();
            chunks::create_space(
                &tx,
                id,
                kind,
                &document.save(),
                &heads,
                doc::schema_of(document),
            )?;
            read_model::rebuild(&tx, document, id, kind)?;
            chunks::set_model_heads(&tx, id, &heads, read_model::MODEL_VERSION)?;
        }
        tx.commit()?;
        writer.ids = Some(ids.clone());
        for (id, kind, document) in [
            (&ids.practice_id, SpaceKind::Practice, practice),
            (&ids.personal_id, SpaceKind::Personal, personal),
        ] {
            let saved_heads = document.get_heads();
            let schema = doc::schema_of(&document);
            writer.spaces.insert(
                kind,
                Space {
                    id: id.clone(),
                    doc: Some(document),
                    saved_heads,
                    schema,
                    repaired: Vec::new(),
                },
            );
        }
        Ok(())
    }

    /// Merges Automerge bytes from another device (changes, `save_after` output or a whole
    /// snapshot). Duplicates and out-of-order delivery are harmless; corrupt bytes are an
    /// error and change nothing that is stored.
    pub fn merge(&self, kind: SpaceKind, bytes: &[u8]) -> Result<MergeOutcome> {
        self.merge_inner(kind, bytes, false, None, None)
    }

    /// Merges bytes pulled from the relay. If nothing local was waiting to be pushed, the
    /// relay now has everything this document has, so the acknowledged heads advance with
    /// the merge; checked under the writer lock, so a local edit racing the merge is never
    /// taken for pushed.
    pub fn merge_from_relay(&self, kind: SpaceKind, bytes: &[u8]) -> Result<MergeOutcome> {
        self.merge_inner(kind, bytes, true, None, None)
    }

    /// Merges the changes of one relay entry signed by `sender`, moving the relay cursor to
    /// `seq` in the same transaction when given (one durable write for a live update
    /// instead of two). Only changes whose Automerge actor is the sender's are merged: a
    /// change written by another device that this one does not already have from its
    /// writer is refused and counted in [`MergeOutcome::foreign`], so no member can pass
    /// off a change as a colleague's. An entry holding anything but changes is refused.
    pub fn merge_entry(
        &self,
        kind: SpaceKind,
        bytes: &[u8],
        sender: &rapport_wire::DeviceId,
        seq: Option<u64>,
    ) -> Result<MergeOutcome> {
        let actor = automerge::ActorId::from(sender.0.as_slice());
        self.merge_inner(kind, bytes, true, seq, Some(&actor))
    }

    /// [`Home::merge_from_relay`] of the relay entry `seq`, moving the relay cursor to it in
    /// the same transaction (one durable write for a live update instead of two).
    pub fn merge_from_relay_at(
        &self,
        kind: SpaceKind,
        bytes: &[u8],
        seq: u64,
    ) -> Result<MergeOutcome> {
        self.merge_inner(kind, bytes, true, Some(seq), None)
    }

    fn merge_inner(
        &self,
        kind: SpaceKind,
        bytes: &[u8],
        advance_ack: bool,
        cursor: Option<u64>,
        author: Option<&automerge::ActorId>,
    ) -> Result<MergeOutcome> {
        let now = self.clock.now_ms();
        // Before the writer lock and before Automerge: a bomb is refused without either.
        doc::bounds::check(bytes)?;
        let changes = author.map(|_| doc::guard::changes(bytes)).transpose()?;
        let (outcome, event) = {
            let mut writer = self.lock_writer();
            let super::Writer { conn, spaces, .. } = &mut *writer;
            let space = load_space(conn, spaces, kind)?;
            let doc = space.doc.as_mut().ok_or(Error::NoPractice)?;
            let before = doc.get_heads();
            let mut foreign = 0;
            let applied = match (changes, author) {
                (Some(changes), Some(author)) => {
                    let (own, others): (Vec<_>, Vec<_>) =
                        changes.into_iter().partition(|c| c.actor_id() == author);
                    foreign = others
                        .iter()
                        .filter(|c| doc.get_change_meta_by_hash(&c.hash()).is_none())
                        .count();
                    doc::guard::apply_changes(doc, own)
                }
                _ => doc::guard::load_incremental(doc, bytes),
            };
            if let Err(e) = applied {
                // The in-memory document may hold part of the bytes; reload it from disk.
                space.doc = None;
                return Err(e);
            }
            let after = doc.get_heads();
            let waiting = !doc.get_missing_deps(&[]).is_empty();
            if before == after {
                if let Some(seq) = cursor {
                    super::sync_state::write_cursor(conn, &space.id, seq, now)?;
                }
                return Ok(MergeOutcome {
                    changed: false,
                    entities: 0,
                    waiting_for_dependencies: waiting,
                    flagged: Vec::new(),
                    foreign,
                });
            }
            let new_changes = doc.get_changes(&before).len();
            let refs: Vec<EntityRef> = if new_changes > PATCH_LIMIT {
                read_model::all_refs(doc, kind)
            } else {
                doc::changed_entities(doc, &before, &after)
                    .into_iter()
                    .collect()
            };
            let flagged = super::merged_text::flags(&*doc, &refs);
            let space_id = space.id.clone();
            // An entry merged at its relay seq can be fetched again: should power fail
            // before the WAL reaches the disk, the merge and the cursor roll back together
            // and the entry is pulled again. So it skips the fsync. Local writes, which
            // exist nowhere else yet, keep `synchronous=FULL`, and their fsync covers every
            // merge committed before them (the WAL is written in order).
            let refetchable = cursor.is_some();
            if refetchable {
                conn.pragma_update(None, "synchronous", "NORMAL")?;
            }
            let persisted = super::persist_with(conn, space, &refs, |tx| {
                if advance_ack {
                    let acked: Option<Vec<u8>> = tx
                        .query_row(
                            "SELECT acked_heads FROM sync_state WHERE space_id = ?1",
                            [&space_id],
                            |r| r.get(0),
                        )
                        .ok();
                    if acked.is_some_and(|a| a == chunks::encode_heads(&before)) {
                        tx.execute(
                            "UPDATE sync_state SET acked_heads = ?2 WHERE space_id = ?1",
                            rusqlite::params![space_id, chunks::encode_heads(&after)],
                        )?;
                    }
                }
                if let Some(seq) = cursor {
                    super::sync_state::write_cursor(tx, &space_id, seq, now)?;
                }
                // The disk filling up as a merge commits (tests).
                fail::fail_point!("merge-disk-full", |_| Err(Error::Storage(
                    rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                        Some("database or disk is full".into()),
                    )
                )));
                Ok(())
            });
            if refetchable {
                conn.pragma_update(None, "synchronous", "FULL")?;
            }
            persisted?;
            if !flagged.is_empty() {
                tracing::warn!(
                    flagged = flagged.len(),
                    "merged text looks like a client identifier; kept and flagged"
                );
            }
            super::maybe_compact(conn, space);
            let mut event = ChangeEvent::new(kind, Origin::Remote, &refs);
            event.flagged.clone_from(&flagged);
            (
                MergeOutcome {
                    changed: true,
                    entities: refs.len(),
                    waiting_for_dependencies: waiting,
                    flagged,
                    foreign,
                },
                event,
            )
        };
        self.dispatch_repairs();
        self.listeners.dispatch(&event);
        Ok(outcome)
    }

    /// Runs several writes to one space as one: they all commit, or none does.
    pub fn batch<T>(
        &self,
        space: SpaceKind,
        f: impl FnOnce(&mut Batch<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        self.write(space, |tx, ctx| {
            let mut batch = Batch::new(tx, ctx, space);
            let value = f(&mut batch)?;
            Ok((value, batch.refs))
        })
    }

    /// Creates a referral stream; names are unique within the practice.
    pub fn create_stream(&self, name: &str, kind: StreamKind) -> Result<Stream> {
        self.batch(SpaceKind::Practice, |b| b.create_stream(name, kind))
    }

    /// Adds a partner.
    pub fn add_partner(&self, input: NewPartner) -> Result<Partner> {
        self.batch(SpaceKind::Practice, |b| b.add_partner(input))
    }

    /// Edits a partner: only the fields given change.
    pub fn edit_partner(&self, id: &str, edit: PartnerEdit) -> Result<Partner> {
        self.batch(SpaceKind::Practice, |b| b.edit_partner(id, edit))
    }

    /// Archives a partner (soft delete: history stays, an edit racing it is not lost).
    pub fn archive_partner(&self, id: &str) -> Result<Partner> {
        self.batch(SpaceKind::Practice, |b| b.set_partner_archived(id, true))
    }

    /// Restores an archived partner.
    pub fn restore_partner(&self, id: &str) -> Result<Partner> {
        self.batch(SpaceKind::Practice, |b| b.set_partner_archived(id, false))
    }

    /// Logs an outreach to a partner.
    pub fn log_touchpoint(&self, input: NewTouchpoint) -> Result<Touchpoint> {
        self.batch(SpaceKind::Practice, |b| b.log_touchpoint(input))
    }

    /// Records a referral. Only coded values: a referral never holds a client's identity.
    pub fn record_referral(&self, input: NewReferral) -> Result<Referral> {
        self.batch(SpaceKind::Practice, |b| b.record_referral(input))
    }

    /// Updates a referral's status and, optionally, its outcome.
    pub fn update_referral(
        &self,
        id: &str,
        status: ReferralStatus,
        outcome: Option<ReferralOutcome>,
    ) -> Result<Referral> {
        self.batch(SpaceKind::Practice, |b| {
            b.update_referral(id, status, outcome)
        })
    }

    /// Schedules a follow-up with a partner.
    pub fn schedule_followup(&self, input: NewFollowup) -> Result<Followup> {
        self.batch(SpaceKind::Practice, |b| b.schedule_followup(input))
    }

    /// Marks a follow-up done (today by default); a repeating one schedules its next.
    pub fn complete_followup(&self, id: &str, on: Option<Day>) -> Result<Followup> {
        self.batch(SpaceKind::Practice, |b| b.complete_followup(id, on))
    }

    /// Moves an open follow-up to a later day.
    pub fn snooze_followup(&self, id: &str, until: Day) -> Result<Followup> {
        self.batch(SpaceKind::Practice, |b| b.snooze_followup(id, until))
    }

    /// Cancels an open follow-up.
    pub fn cancel_followup(&self, id: &str) -> Result<Followup> {
        self.batch(SpaceKind::Practice, |b| b.cancel_followup(id))
    }

    /// Sets the practice's default follow-up backoff (e.g. 14, 21, 30: the last repeats).
    pub fn set_default_cadence(&self, steps: &[u32]) -> Result<Vec<u32>> {
        self.batch(SpaceKind::Practice, |b| b.set_default_cadence(steps))
    }

    /// Sets this clinician's ideal-client statement.
    pub fn set_ideal_client(&self, text: &str) -> Result<Member> {
        self.batch(SpaceKind::Practice, |b| b.set_ideal_client(text))
    }

    /// Sets whether this clinician accepts new clients.
    pub fn set_accepting(&self, accepting: bool) -> Result<Member> {
        self.batch(SpaceKind::Practice, |b| b.set_accepting(accepting))
    }

    /// Adds a private note about a partner to this clinician's personal space; it never
    /// reaches colleagues.
    pub fn add_note(&self, partner_id: &str, body: &str) -> Result<Note> {
        let partner = self.partner(partner_id)?;
        self.batch(SpaceKind::Personal, |b| b.add_note(&partner.id, body))
    }
}

/// A practice document received to join: valid Automerge, shaped like a practice, and
/// of a schema this build can write.
fn joinable_practice(document: &[u8]) -> Result<Automerge> {
    let practice = doc::guard::load(document)?;
    doc::check_shape(&practice, SpaceKind::Practice)?;
    let schema = doc::schema_of(&practice);
    if schema > SCHEMA_VERSION {
        return Err(Error::ReadOnly {
            space: "practice",
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(practice)
}

/// A clinician's personal space as fetched from the relay, checked to be theirs.
pub(super) fn personal_space_of(document: &[u8], member_id: &str) -> Result<Automerge> {
    let personal = doc::guard::load(document)?;
    doc::check_shape(&personal, SpaceKind::Personal)?;
    if crate::doc::fields::get_str(&personal, &ROOT, "owner_member").as_deref() != Some(member_id) {
        return Err(Error::Conflict(
            "that personal space belongs to another clinician".into(),
        ));
    }
    Ok(personal)
}

/// Adds a device to a member's devices (a clinician's further device).
pub(super) fn add_device_to_member<T: Transactable + ReadDoc>(
    tx: &mut T,
    member_id: &str,
    device_id: &str,
) -> Result<()> {
    let member =
        doc::entity(tx, doc::Collection::Members, member_id)?.ok_or_else(|| Error::NotFound {
            entity: "member",
            id: member_id.to_string(),
        })?;
    let devices = match crate::doc::fields::get_map(tx, &member, "devices") {
        Some(devices) => devices,
        None => tx.put_object(&member, "devices", ObjType::Map)?,
    };
    tx.put(&devices, device_id, true)?;
    Ok(())
}

/// A new clinician's personal space.
pub(super) fn new_personal_space(ids: &Ids, now_ms: i64) -> Result<Automerge> {
    let actor = doc::actor_for(&ids.device_id);
    doc::genesis(SpaceKind::Personal, actor, &ids.member_id, now_ms, |tx| {
        put_str(tx, &ROOT, "owner_member", &ids.member_id)
    })
}

/// A home holds one practice: refuse a second.
pub(super) fn ensure_no_practice(writer: &super::Writer) -> Result<()> {
    if writer.ids.is_some() {
        let name = queries::practice_name(&writer.conn)?.unwrap_or_default();
        return Err(Error::PracticeExists(name));
    }
    Ok(())
}

pub(super) fn device_id(conn: &rusqlite::Connection) -> Result<String> {
    queries::home_value(conn, "device_id")?
        .ok_or_else(|| Error::Internal("the home has no device id".into()))
}
