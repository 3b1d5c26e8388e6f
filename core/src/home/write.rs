//! Everything that changes a home: creating or joining a practice, merging remote bytes,
//! and the entity writes. Inputs are validated before the document is touched; a refused
//! write changes nothing.

use std::collections::BTreeSet;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc};
use rusqlite::TransactionBehavior;

use super::{Ctx, Home, Ids, Space, load_space, persist};
use crate::doc::fields::{
    get_bool, get_i64, get_str, put_bool, put_opt_str, put_set, put_str, put_text, put_time,
    put_uint,
};
use crate::doc::{self, Collection, EntityRef, SCHEMA_VERSION, SpaceKind, project};
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, Origin};
use crate::model::{
    EntityKind, Followup, Identity, Member, NewFollowup, NewPartner, NewReferral, NewTouchpoint,
    Note, Partner, PartnerEdit, Referral, Stream, Touchpoint,
};
use crate::privacy::Screen;
use crate::store::{chunks, queries, read_model};
use crate::validate::{self, Day};
use crate::vocab::{
    self, FollowupStatus, PartnerStatus, ReferralOutcome, ReferralStatus, Role, StreamKind,
};

/// What merging remote bytes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Whether the document changed (false for duplicates).
    pub changed: bool,
    /// Entities whose read-model rows changed.
    pub entities: usize,
    /// Whether some changes wait for dependencies not received yet.
    pub waiting_for_dependencies: bool,
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
        if writer.ids.is_some() {
            let name = queries::practice_name(&writer.conn)?.unwrap_or_default();
            return Err(Error::PracticeExists(name));
        }
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
                    &device_id,
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

    /// Joins an existing practice from its document bytes (what an invite bootstraps):
    /// adds this clinician as a member and creates their personal space.
    pub fn join_practice(
        &self,
        practice_id: &str,
        document: &[u8],
        member_name: &str,
    ) -> Result<Identity> {
        let member_name = validate::name("member name", member_name)?;
        let practice_id = validate::id("practice id", practice_id)?;
        let mut practice =
            Automerge::load(document).map_err(|e| Error::CorruptDocument(e.to_string()))?;
        doc::check_shape(&practice, SpaceKind::Practice)?;
        let schema = doc::schema_of(&practice);
        if schema > SCHEMA_VERSION {
            return Err(Error::ReadOnly {
                space: "practice",
                found: schema,
                supported: SCHEMA_VERSION,
            });
        }
        let now_ms = self.clock.now_ms();
        let member_id = doc::new_id();
        let mut writer = self.lock_writer();
        if writer.ids.is_some() {
            let name = queries::practice_name(&writer.conn)?.unwrap_or_default();
            return Err(Error::PracticeExists(name));
        }
        let device_id = device_id(&writer.conn)?;
        practice.set_actor(doc::actor_for(&device_id));
        practice
            .transact_with(
                |_| doc::commit_options(&member_id, now_ms),
                |tx| {
                    add_member(
                        tx,
                        &member_id,
                        &member_name,
                        Role::Member,
                        &device_id,
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
        self.identity()?.ok_or(Error::NoPractice)
    }

    /// Stores a new practice document, a fresh personal space and the ids, in one
    /// transaction, and builds the read model.
    fn install(&self, writer: &mut super::Writer, ids: &Ids, practice: Automerge) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let actor = doc::actor_for(&ids.device_id);
        let member_id = ids.member_id.clone();
        let personal = doc::genesis(SpaceKind::Personal, actor, &member_id, now_ms, |tx| {
            put_str(tx, &ROOT, "owner_member", &member_id)
        })?;
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
                },
            );
        }
        Ok(())
    }

    /// Merges Automerge bytes from another device (changes, `save_after` output or a whole
    /// snapshot). Duplicates and out-of-order delivery are harmless; corrupt bytes are an
    /// error and change nothing that is stored.
    pub fn merge(&self, kind: SpaceKind, bytes: &[u8]) -> Result<MergeOutcome> {
        let (outcome, event) = {
            let mut writer = self.lock_writer();
            let super::Writer { conn, spaces, .. } = &mut *writer;
            let space = load_space(conn, spaces, kind)?;
            let doc = space.doc.as_mut().ok_or(Error::NoPractice)?;
            let before = doc.get_heads();
            if let Err(e) = doc.load_incremental(bytes) {
                // The in-memory document may hold part of the bytes; reload it from disk.
                space.doc = None;
                return Err(Error::CorruptDocument(e.to_string()));
            }
            let after = doc.get_heads();
            let waiting = !doc.get_missing_deps(&[]).is_empty();
            if before == after {
                return Ok(MergeOutcome {
                    changed: false,
                    entities: 0,
                    waiting_for_dependencies: waiting,
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
            persist(conn, space, &refs)?;
            super::maybe_compact(conn, space);
            (
                MergeOutcome {
                    changed: true,
                    entities: refs.len(),
                    waiting_for_dependencies: waiting,
                },
                ChangeEvent::new(kind, Origin::Remote, &refs),
            )
        };
        self.listeners.dispatch(&event);
        Ok(outcome)
    }

    /// Creates a referral stream; names are unique within the practice.
    pub fn create_stream(&self, name: &str, kind: StreamKind) -> Result<Stream> {
        let name = validate::name("stream name", name)?;
        if queries::stream_by_name(&self.lock_reader(), &name)?.is_some() {
            return Err(Error::Conflict(format!(
                "a stream named {name:?} already exists"
            )));
        }
        let id = doc::new_id();
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = new_entity(tx, Collection::Streams, &id, ctx)?;
            put_str(tx, &o, "name", &name)?;
            put_str(tx, &o, "kind", kind.code())?;
            let stream = project::stream(tx, &id).ok_or_else(|| lost("stream", &id))?;
            Ok((stream, vec![(EntityKind::Stream, id.clone())]))
        })
    }

    /// Adds a partner.
    pub fn add_partner(&self, input: NewPartner) -> Result<Partner> {
        let kind = input.kind.ok_or_else(|| {
            Error::invalid(
                "kind",
                "is required: therapist, physician, school, community_group, organization or other",
            )
        })?;
        let edit = PartnerEdit {
            kind: Some(kind),
            name: Some(input.name),
            organization: input.organization,
            credentials: input.credentials,
            npi: input.npi,
            taxonomy_code: input.taxonomy_code,
            email: input.email,
            phone: input.phone,
            website: input.website,
            city: input.city,
            region: input.region,
            telehealth: Some(input.telehealth),
            accepting: Some(input.accepting.unwrap_or(true)),
            specialties: Some(input.specialties),
            populations: Some(input.populations),
            modalities: Some(input.modalities),
            insurance: Some(input.insurance),
            languages: Some(input.languages),
            tags: Some(input.tags),
            ideal_client: Some(input.ideal_client),
            how_we_met: Some(input.how_we_met),
            stream_id: input.stream_id,
            status: Some(input.status.unwrap_or(PartnerStatus::Prospect)),
            owner_member: input.owner_member,
        };
        let checked = CheckedEdit::new(edit)?;
        let id = doc::new_id();
        self.write(SpaceKind::Practice, |tx, ctx| {
            checked.check_references(tx)?;
            let o = new_entity(tx, Collection::Partners, &id, ctx)?;
            put_bool(tx, &o, "archived", false)?;
            if checked.owner_member.is_none() {
                put_str(tx, &o, "owner_member", ctx.member_id)?;
            }
            checked.apply(tx, &o, ctx)?;
            let partner = project::partner(tx, &id).ok_or_else(|| lost("partner", &id))?;
            Ok((partner, vec![(EntityKind::Partner, id.clone())]))
        })
    }

    /// Edits a partner: only the fields given change.
    pub fn edit_partner(&self, id: &str, edit: PartnerEdit) -> Result<Partner> {
        let id = validate::id("partner id", id)?;
        let checked = CheckedEdit::new(edit)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = existing(tx, Collection::Partners, "partner", &id)?;
            checked.check_references(tx)?;
            checked.apply(tx, &o, ctx)?;
            let partner = project::partner(tx, &id).ok_or_else(|| lost("partner", &id))?;
            Ok((partner, vec![(EntityKind::Partner, id.clone())]))
        })
    }

    /// Archives a partner (soft delete: history stays, an edit racing it is not lost).
    pub fn archive_partner(&self, id: &str) -> Result<Partner> {
        self.set_partner_archived(id, true)
    }

    /// Restores an archived partner.
    pub fn restore_partner(&self, id: &str) -> Result<Partner> {
        self.set_partner_archived(id, false)
    }

    fn set_partner_archived(&self, id: &str, archived: bool) -> Result<Partner> {
        let id = validate::id("partner id", id)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = existing(tx, Collection::Partners, "partner", &id)?;
            put_bool(tx, &o, "archived", archived)?;
            touch(tx, &o, ctx)?;
            let partner = project::partner(tx, &id).ok_or_else(|| lost("partner", &id))?;
            Ok((partner, vec![(EntityKind::Partner, id.clone())]))
        })
    }

    /// Logs an outreach to a partner.
    pub fn log_touchpoint(&self, input: NewTouchpoint) -> Result<Touchpoint> {
        let partner_id = validate::id("partner_id", &input.partner_id)?;
        let strength = if input.allow_contact_details {
            Screen::ProfessionalContact
        } else {
            Screen::Strict
        };
        let note = validate::text("note", &input.note, strength)?;
        let id = doc::new_id();
        self.write(SpaceKind::Practice, |tx, ctx| {
            active_partner(tx, &partner_id)?;
            let at = input.at.unwrap_or(ctx.today);
            let o = new_entity(tx, Collection::Touchpoints, &id, ctx)?;
            put_str(tx, &o, "partner_id", &partner_id)?;
            put_str(tx, &o, "member_id", ctx.member_id)?;
            put_str(tx, &o, "kind", input.kind.code())?;
            put_str(tx, &o, "at", &at.to_string())?;
            put_opt_str(tx, &o, "outcome", input.outcome.map(|o| o.code()))?;
            put_text(tx, &o, "note", &note)?;
            put_bool(tx, &o, "archived", false)?;
            let touchpoint = project::touchpoint(tx, &id).ok_or_else(|| lost("touchpoint", &id))?;
            Ok((touchpoint, vec![(EntityKind::Touchpoint, id.clone())]))
        })
    }

    /// Records a referral. Only coded values: a referral never holds a client's identity.
    pub fn record_referral(&self, input: NewReferral) -> Result<Referral> {
        let partner_id = validate::id("partner_id", &input.partner_id)?;
        if input.concerns.is_empty() {
            return Err(Error::invalid(
                "concerns",
                "name at least one presenting concern, e.g. anxiety",
            ));
        }
        let concerns = validate::set("concerns", &input.concerns, |f, v| {
            vocab::open_code(f, vocab::CONCERNS, v)
        })?;
        let modality = input
            .modality
            .as_deref()
            .map(|m| vocab::open_code("modality", vocab::MODALITIES, m))
            .transpose()?;
        let id = doc::new_id();
        self.write(SpaceKind::Practice, |tx, ctx| {
            active_partner(tx, &partner_id)?;
            let at = input.at.unwrap_or(ctx.today);
            let o = new_entity(tx, Collection::Referrals, &id, ctx)?;
            put_str(tx, &o, "partner_id", &partner_id)?;
            put_str(tx, &o, "member_id", ctx.member_id)?;
            put_str(tx, &o, "direction", input.direction.code())?;
            put_str(tx, &o, "at", &at.to_string())?;
            put_set(tx, &o, "concerns", &concerns)?;
            put_opt_str(tx, &o, "age_band", input.age_band.map(|a| a.code()))?;
            put_opt_str(
                tx,
                &o,
                "payer_category",
                input.payer_category.map(|p| p.code()),
            )?;
            put_opt_str(tx, &o, "modality", modality.as_deref())?;
            put_str(
                tx,
                &o,
                "status",
                input.status.unwrap_or(ReferralStatus::Requested).code(),
            )?;
            let referral = project::referral(tx, &id).ok_or_else(|| lost("referral", &id))?;
            Ok((referral, vec![(EntityKind::Referral, id.clone())]))
        })
    }

    /// Updates a referral's status and, optionally, its outcome.
    pub fn update_referral(
        &self,
        id: &str,
        status: ReferralStatus,
        outcome: Option<ReferralOutcome>,
    ) -> Result<Referral> {
        let id = validate::id("referral id", id)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = existing(tx, Collection::Referrals, "referral", &id)?;
            put_str(tx, &o, "status", status.code())?;
            if let Some(outcome) = outcome {
                put_str(tx, &o, "outcome", outcome.code())?;
            }
            touch(tx, &o, ctx)?;
            let referral = project::referral(tx, &id).ok_or_else(|| lost("referral", &id))?;
            Ok((referral, vec![(EntityKind::Referral, id.clone())]))
        })
    }

    /// Schedules a follow-up with a partner.
    pub fn schedule_followup(&self, input: NewFollowup) -> Result<Followup> {
        let partner_id = validate::id("partner_id", &input.partner_id)?;
        let reason = validate::text("reason", &input.reason, Screen::Strict)?;
        if input.cadence_days == Some(0) || input.cadence_days.is_some_and(|d| d > 366) {
            return Err(Error::invalid(
                "cadence_days",
                "must be between 1 and 366 days",
            ));
        }
        let id = doc::new_id();
        self.write(SpaceKind::Practice, |tx, ctx| {
            active_partner(tx, &partner_id)?;
            insert_followup(
                tx,
                ctx,
                &id,
                &partner_id,
                input.due,
                &reason,
                input.cadence_days,
            )?;
            let followup = project::followup(tx, &id).ok_or_else(|| lost("follow-up", &id))?;
            Ok((followup, vec![(EntityKind::Followup, id.clone())]))
        })
    }

    /// Marks a follow-up done (today by default); a repeating one schedules its next.
    pub fn complete_followup(&self, id: &str, on: Option<Day>) -> Result<Followup> {
        let id = validate::id("follow-up id", id)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = open_followup(tx, &id)?;
            let done = on.unwrap_or(ctx.today);
            put_str(tx, &o, "status", FollowupStatus::Done.code())?;
            put_str(tx, &o, "done_at", &done.to_string())?;
            touch(tx, &o, ctx)?;
            let mut refs = vec![(EntityKind::Followup, id.clone())];
            let cadence = get_i64(tx, &o, "cadence_days").and_then(|d| i32::try_from(d).ok());
            if let (Some(days), Some(partner_id)) = (cadence, get_str(tx, &o, "partner_id")) {
                let next_id = doc::new_id();
                let due = done.saturating_add(jiff::Span::new().days(days));
                let reason = project::followup(tx, &id)
                    .map(|f| f.reason)
                    .unwrap_or_default();
                insert_followup(
                    tx,
                    ctx,
                    &next_id,
                    &partner_id,
                    due,
                    &reason,
                    u32::try_from(days).ok(),
                )?;
                refs.push((EntityKind::Followup, next_id));
            }
            let followup = project::followup(tx, &id).ok_or_else(|| lost("follow-up", &id))?;
            Ok((followup, refs))
        })
    }

    /// Moves an open follow-up to a later day.
    pub fn snooze_followup(&self, id: &str, until: Day) -> Result<Followup> {
        let id = validate::id("follow-up id", id)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = open_followup(tx, &id)?;
            if until <= ctx.today {
                return Err(Error::invalid(
                    "until",
                    format!("must be after today ({})", ctx.today),
                ));
            }
            let snoozed = get_i64(tx, &o, "snoozed").unwrap_or(0);
            put_str(tx, &o, "due", &until.to_string())?;
            put_uint(tx, &o, "snoozed", u64::try_from(snoozed + 1).unwrap_or(1))?;
            touch(tx, &o, ctx)?;
            let followup = project::followup(tx, &id).ok_or_else(|| lost("follow-up", &id))?;
            Ok((followup, vec![(EntityKind::Followup, id.clone())]))
        })
    }

    /// Cancels an open follow-up.
    pub fn cancel_followup(&self, id: &str) -> Result<Followup> {
        let id = validate::id("follow-up id", id)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let o = open_followup(tx, &id)?;
            put_str(tx, &o, "status", FollowupStatus::Cancelled.code())?;
            touch(tx, &o, ctx)?;
            let followup = project::followup(tx, &id).ok_or_else(|| lost("follow-up", &id))?;
            Ok((followup, vec![(EntityKind::Followup, id.clone())]))
        })
    }

    /// Sets this clinician's ideal-client statement.
    pub fn set_ideal_client(&self, text: &str) -> Result<Member> {
        let text = validate::text("ideal_client", text, Screen::ProfessionalContact)?;
        self.write(SpaceKind::Practice, |tx, ctx| {
            let id = ctx.member_id.to_string();
            let o = existing(tx, Collection::Members, "member", &id)?;
            put_text(tx, &o, "ideal_client", &text)?;
            touch(tx, &o, ctx)?;
            let member = project::member(tx, &id).ok_or_else(|| lost("member", &id))?;
            Ok((member, vec![(EntityKind::Member, id)]))
        })
    }

    /// Sets whether this clinician accepts new clients.
    pub fn set_accepting(&self, accepting: bool) -> Result<Member> {
        self.write(SpaceKind::Practice, |tx, ctx| {
            let id = ctx.member_id.to_string();
            let o = existing(tx, Collection::Members, "member", &id)?;
            put_bool(tx, &o, "accepting", accepting)?;
            touch(tx, &o, ctx)?;
            let member = project::member(tx, &id).ok_or_else(|| lost("member", &id))?;
            Ok((member, vec![(EntityKind::Member, id)]))
        })
    }

    /// Adds a private note about a partner to this clinician's personal space; it never
    /// reaches colleagues.
    pub fn add_note(&self, partner_id: &str, body: &str) -> Result<Note> {
        let partner_id = validate::id("partner_id", partner_id)?;
        let body = validate::text("note", body, Screen::ProfessionalContact)?;
        if body.trim().is_empty() {
            return Err(Error::invalid("note", "must not be empty"));
        }
        if queries::partner(&self.lock_reader(), &partner_id)?.is_none() {
            return Err(Error::NotFound {
                entity: "partner",
                id: partner_id,
            });
        }
        let id = doc::new_id();
        self.write(SpaceKind::Personal, |tx, ctx| {
            let o = new_entity(tx, Collection::Notes, &id, ctx)?;
            put_str(tx, &o, "partner_id", &partner_id)?;
            put_str(tx, &o, "at", &ctx.today.to_string())?;
            put_text(tx, &o, "body", &body)?;
            put_bool(tx, &o, "archived", false)?;
            let note = project::note(tx, &id).ok_or_else(|| lost("note", &id))?;
            Ok((note, vec![(EntityKind::Note, id.clone())]))
        })
    }
}

fn device_id(conn: &rusqlite::Connection) -> Result<String> {
    queries::home_value(conn, "device_id")?
        .ok_or_else(|| Error::Conflict("the home has no device id".into()))
}

fn add_member<T: Transactable + ReadDoc>(
    tx: &mut T,
    member_id: &str,
    name: &str,
    role: Role,
    device_id: &str,
    now_ms: i64,
) -> Result<()> {
    let members = doc::collection(tx, Collection::Members)?;
    let o = tx.put_object(&members, member_id, ObjType::Map)?;
    put_str(tx, &o, "display_name", name)?;
    put_str(tx, &o, "role", role.code())?;
    put_text(tx, &o, "ideal_client", "")?;
    put_bool(tx, &o, "accepting", true)?;
    put_bool(tx, &o, "archived", false)?;
    put_time(tx, &o, "created_at", now_ms)?;
    put_set(tx, &o, "devices", &BTreeSet::from([device_id.to_string()]))?;
    Ok(())
}

fn lost(entity: &str, id: &str) -> Error {
    Error::Conflict(format!(
        "the {entity} {id} could not be read back after writing it"
    ))
}

/// Creates an entity map with its attribution fields.
fn new_entity<T: Transactable + ReadDoc>(
    tx: &mut T,
    coll: Collection,
    id: &str,
    ctx: &Ctx<'_>,
) -> Result<ObjId> {
    let parent = doc::collection(tx, coll)?;
    let o = tx.put_object(&parent, id, ObjType::Map)?;
    put_time(tx, &o, "created_at", ctx.now_ms)?;
    put_str(tx, &o, "created_by", ctx.member_id)?;
    touch(tx, &o, ctx)?;
    Ok(o)
}

/// Records who changed an entity last and when.
fn touch<T: Transactable>(tx: &mut T, o: &ObjId, ctx: &Ctx<'_>) -> Result<()> {
    put_time(tx, o, "updated_at", ctx.now_ms)?;
    put_str(tx, o, "updated_by", ctx.member_id)
}

fn existing<R: ReadDoc>(tx: &R, coll: Collection, entity: &'static str, id: &str) -> Result<ObjId> {
    doc::entity(tx, coll, id)?.ok_or_else(|| Error::NotFound {
        entity,
        id: id.to_string(),
    })
}

fn active_partner<R: ReadDoc>(tx: &R, id: &str) -> Result<ObjId> {
    let o = existing(tx, Collection::Partners, "partner", id)?;
    if get_bool(tx, &o, "archived") == Some(true) {
        return Err(Error::Conflict(format!(
            "the partner {id} is archived; restore it first (partner restore) to record activity"
        )));
    }
    Ok(o)
}

fn open_followup<R: ReadDoc>(tx: &R, id: &str) -> Result<ObjId> {
    let o = existing(tx, Collection::Followups, "follow-up", id)?;
    match get_str(tx, &o, "status").as_deref() {
        Some("open") | None => Ok(o),
        Some(other) => Err(Error::Conflict(format!(
            "the follow-up {id} is already {other}"
        ))),
    }
}

fn insert_followup<T: Transactable + ReadDoc>(
    tx: &mut T,
    ctx: &Ctx<'_>,
    id: &str,
    partner_id: &str,
    due: Day,
    reason: &str,
    cadence_days: Option<u32>,
) -> Result<()> {
    let o = new_entity(tx, Collection::Followups, id, ctx)?;
    put_str(tx, &o, "partner_id", partner_id)?;
    put_str(tx, &o, "member_id", ctx.member_id)?;
    put_str(tx, &o, "due", &due.to_string())?;
    put_str(tx, &o, "status", FollowupStatus::Open.code())?;
    put_text(tx, &o, "reason", reason)?;
    if let Some(days) = cadence_days {
        put_uint(tx, &o, "cadence_days", u64::from(days))?;
    }
    Ok(())
}

/// A partner edit whose every field has been validated.
struct CheckedEdit {
    strings: Vec<(&'static str, Option<Option<String>>)>,
    kind: Option<&'static str>,
    status: Option<&'static str>,
    telehealth: Option<bool>,
    accepting: Option<bool>,
    sets: Vec<(&'static str, BTreeSet<String>)>,
    texts: Vec<(&'static str, String)>,
    stream_id: Option<Option<String>>,
    owner_member: Option<Option<String>>,
}

impl CheckedEdit {
    fn new(edit: PartnerEdit) -> Result<Self> {
        type Check = fn(&str, Option<&str>) -> Result<Option<String>>;
        let optional = |field: &'static str,
                        value: Option<String>,
                        check: Check|
         -> Result<(&'static str, Option<Option<String>>)> {
            Ok((field, value.map(|v| check(field, Some(&v))).transpose()?))
        };
        let mut strings = vec![];
        if let Some(name) = edit.name {
            strings.push(("name", Some(Some(validate::name("name", &name)?))));
        }
        strings.push(optional(
            "organization",
            edit.organization,
            validate::short,
        )?);
        strings.push(optional("credentials", edit.credentials, validate::short)?);
        strings.push(optional("npi", edit.npi, validate::npi)?);
        strings.push(optional(
            "taxonomy_code",
            edit.taxonomy_code,
            validate::taxonomy_code,
        )?);
        strings.push(optional("email", edit.email, validate::email)?);
        strings.push(optional("phone", edit.phone, validate::phone)?);
        strings.push(optional("website", edit.website, validate::website)?);
        strings.push(optional("city", edit.city, validate::short)?);
        strings.push(optional("region", edit.region, validate::short)?);
        let mut sets = vec![];
        let concern = |f: &str, v: &str| vocab::open_code(f, vocab::CONCERNS, v);
        let modality = |f: &str, v: &str| vocab::open_code(f, vocab::MODALITIES, v);
        for (field, values, check) in [
            (
                "specialties",
                edit.specialties,
                &concern as &dyn Fn(&str, &str) -> Result<String>,
            ),
            ("populations", edit.populations, &vocab::tag),
            ("modalities", edit.modalities, &modality),
            ("insurance", edit.insurance, &vocab::tag),
            ("languages", edit.languages, &vocab::language),
            ("tags", edit.tags, &vocab::tag),
        ] {
            if let Some(values) = values {
                sets.push((field, validate::set(field, &values, check)?));
            }
        }
        let mut texts = vec![];
        for (field, value) in [
            ("ideal_client", edit.ideal_client),
            ("how_we_met", edit.how_we_met),
        ] {
            if let Some(value) = value {
                texts.push((
                    field,
                    validate::text(field, &value, Screen::ProfessionalContact)?,
                ));
            }
        }
        let reference = |field: &str, value: Option<String>| -> Result<Option<Option<String>>> {
            value
                .map(|v| {
                    if v.trim().is_empty() {
                        Ok(None)
                    } else {
                        validate::id(field, &v).map(Some)
                    }
                })
                .transpose()
        };
        Ok(CheckedEdit {
            strings,
            kind: edit.kind.map(|k| k.code()),
            status: edit.status.map(|s| s.code()),
            telehealth: edit.telehealth,
            accepting: edit.accepting,
            sets,
            texts,
            stream_id: reference("stream_id", edit.stream_id)?,
            owner_member: reference("owner_member", edit.owner_member)?,
        })
    }

    fn check_references<R: ReadDoc>(&self, tx: &R) -> Result<()> {
        if let Some(Some(stream)) = &self.stream_id {
            existing(tx, Collection::Streams, "stream", stream)?;
        }
        if let Some(Some(member)) = &self.owner_member {
            existing(tx, Collection::Members, "member", member)?;
        }
        Ok(())
    }

    fn apply<T: Transactable + ReadDoc>(&self, tx: &mut T, o: &ObjId, ctx: &Ctx<'_>) -> Result<()> {
        for (field, value) in &self.strings {
            if let Some(value) = value {
                put_opt_str(tx, o, field, value.as_deref())?;
            }
        }
        if let Some(kind) = self.kind {
            put_str(tx, o, "kind", kind)?;
        }
        if let Some(status) = self.status {
            put_str(tx, o, "status", status)?;
        }
        if let Some(telehealth) = self.telehealth {
            put_bool(tx, o, "telehealth", telehealth)?;
        }
        if let Some(accepting) = self.accepting {
            put_bool(tx, o, "accepting", accepting)?;
        }
        for (field, values) in &self.sets {
            put_set(tx, o, field, values)?;
        }
        for (field, value) in &self.texts {
            put_text(tx, o, field, value)?;
        }
        if let Some(stream) = &self.stream_id {
            put_opt_str(tx, o, "stream_id", stream.as_deref())?;
        }
        if let Some(owner) = &self.owner_member {
            put_opt_str(tx, o, "owner_member", owner.as_deref())?;
        }
        touch(tx, o, ctx)
    }
}
