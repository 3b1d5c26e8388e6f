//! Entity writes. Every write runs inside a [`Batch`]: one Automerge transaction and one
//! SQLite transaction, all or nothing. A single call on [`Home`](super::Home) is a batch
//! of one; an import is a batch of many that either lands whole or not at all.

use std::collections::BTreeSet;

use automerge::transaction::{Transactable, Transaction};
use automerge::{ObjId, ObjType, ReadDoc};

use super::Ctx;
use super::partner_edit::CheckedEdit;
use crate::doc::fields::{
    get_bool, get_i64, get_str, put_bool, put_opt_str, put_set, put_str, put_text, put_time,
    put_uint,
};
use crate::doc::{self, Collection, EntityRef, SpaceKind, existing, project};
use crate::error::{Error, Result};
use crate::model::{
    EntityKind, Followup, Member, NewFollowup, NewPartner, NewReferral, NewTouchpoint, Note,
    Partner, PartnerEdit, Referral, Stream, Touchpoint,
};
use crate::privacy::Screen;
use crate::validate::{self, Day};
use crate::vocab::{
    self, FollowupStatus, PartnerStatus, ReferralOutcome, ReferralStatus, Role, StreamKind,
    TouchpointOutcome,
};

/// Writes to one space that commit together or not at all.
pub struct Batch<'a, 'b> {
    tx: &'a mut Transaction<'b>,
    ctx: &'a Ctx,
    space: SpaceKind,
    pub(super) refs: Vec<EntityRef>,
}

impl<'a, 'b> Batch<'a, 'b> {
    pub(super) fn new(tx: &'a mut Transaction<'b>, ctx: &'a Ctx, space: SpaceKind) -> Self {
        Batch {
            tx,
            ctx,
            space,
            refs: Vec::new(),
        }
    }

    /// Today in the user's time zone.
    pub fn today(&self) -> Day {
        self.ctx.today
    }

    /// The member making these writes.
    pub fn member_id(&self) -> &str {
        &self.ctx.member_id
    }

    fn in_space(&self, space: SpaceKind, what: &str) -> Result<()> {
        if self.space == space {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "{what} belongs to the {} space, not this {} batch",
                space.code(),
                self.space.code()
            )))
        }
    }

    /// The clinician a record belongs to: the one named, who must be a member, or this
    /// device's member.
    fn member_for(&self, field: &str, given: Option<&str>) -> Result<String> {
        match given.map(str::trim).filter(|m| !m.is_empty()) {
            None => Ok(self.ctx.member_id.clone()),
            Some(member) => {
                let id = validate::id(field, member)?;
                existing(self.tx, Collection::Members, "member", &id)?;
                Ok(id)
            }
        }
    }

    /// Adds a colleague's member record (owner or admin only), e.g. for a clinician whose
    /// history is imported before they have a device.
    pub fn add_member(&mut self, display_name: &str, role: Role) -> Result<Member> {
        self.in_space(SpaceKind::Practice, "a member")?;
        let name = validate::name("display_name", display_name)?;
        let me = existing(self.tx, Collection::Members, "member", &self.ctx.member_id)?;
        let my_role = get_str(self.tx, &me, "role").and_then(|r| Role::parse(&r).ok());
        if !matches!(my_role, Some(Role::Owner | Role::Admin)) {
            return Err(Error::Conflict(
                "only an owner or admin can add members to the practice".into(),
            ));
        }
        if role == Role::Owner {
            return Err(Error::invalid(
                "role",
                "a practice has one owner; add the member as admin or member",
            ));
        }
        let id = doc::new_id();
        add_member(self.tx, &id, &name, role, None, self.ctx.now_ms)?;
        self.done(EntityKind::Member, &id);
        project::member(self.tx, &id).ok_or_else(|| lost("member", &id))
    }

    fn done(&mut self, kind: EntityKind, id: &str) {
        self.refs.push((kind, id.to_string()));
    }

    /// Creates a referral stream; names are unique within the practice.
    pub fn create_stream(&mut self, name: &str, kind: StreamKind) -> Result<Stream> {
        self.in_space(SpaceKind::Practice, "a stream")?;
        let name = validate::name("stream name", name)?;
        let streams = doc::collection(self.tx, Collection::Streams)?;
        let taken = self.tx.keys(&streams).any(|id| {
            project::stream(self.tx, &id)
                .is_some_and(|s| s.name.to_lowercase() == name.to_lowercase())
        });
        if taken {
            return Err(Error::Conflict(format!(
                "a stream named {name:?} already exists"
            )));
        }
        let id = doc::new_id();
        let o = self.new_entity(Collection::Streams, &id)?;
        put_str(self.tx, &o, "name", &name)?;
        put_str(self.tx, &o, "kind", kind.code())?;
        self.done(EntityKind::Stream, &id);
        project::stream(self.tx, &id).ok_or_else(|| lost("stream", &id))
    }

    /// Adds a partner.
    pub fn add_partner(&mut self, input: NewPartner) -> Result<Partner> {
        self.in_space(SpaceKind::Practice, "a partner")?;
        let kind = input.kind.ok_or_else(|| {
            Error::invalid(
                "kind",
                "is required: therapist, physician, school, community_group, organization or other",
            )
        })?;
        let owner_given = input.owner_member.is_some();
        let checked = CheckedEdit::new(PartnerEdit {
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
            cadence_steps: Some(input.cadence_steps),
        })?;
        checked.check_references(self.tx)?;
        let id = doc::new_id();
        let o = self.new_entity(Collection::Partners, &id)?;
        if !owner_given {
            put_str(self.tx, &o, "owner_member", &self.ctx.member_id)?;
        }
        checked.apply(self.tx, &o)?;
        self.done(EntityKind::Partner, &id);
        project::partner(self.tx, &id).ok_or_else(|| lost("partner", &id))
    }

    /// Edits a partner: only the fields given change.
    pub fn edit_partner(&mut self, id: &str, edit: PartnerEdit) -> Result<Partner> {
        self.in_space(SpaceKind::Practice, "a partner")?;
        let id = validate::id("partner id", id)?;
        let checked = CheckedEdit::new(edit)?;
        let o = existing(self.tx, Collection::Partners, "partner", &id)?;
        checked.check_references(self.tx)?;
        checked.apply(self.tx, &o)?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Partner, &id);
        project::partner(self.tx, &id).ok_or_else(|| lost("partner", &id))
    }

    /// Archives (soft-deletes) or restores a partner.
    pub fn set_partner_archived(&mut self, id: &str, archived: bool) -> Result<Partner> {
        self.in_space(SpaceKind::Practice, "a partner")?;
        let id = validate::id("partner id", id)?;
        let o = existing(self.tx, Collection::Partners, "partner", &id)?;
        put_bool(self.tx, &o, "archived", archived)?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Partner, &id);
        project::partner(self.tx, &id).ok_or_else(|| lost("partner", &id))
    }

    /// Logs an outreach to a partner.
    pub fn log_touchpoint(&mut self, input: NewTouchpoint) -> Result<Touchpoint> {
        self.in_space(SpaceKind::Practice, "a touchpoint")?;
        let partner_id = validate::id("partner_id", &input.partner_id)?;
        let strength = if input.allow_contact_details {
            Screen::ProfessionalContact
        } else {
            Screen::Strict
        };
        let note = validate::text("note", &input.note, strength)?;
        let member_id = self.member_for("member_id", input.member_id.as_deref())?;
        active_partner(self.tx, &partner_id)?;
        let at = input.at.unwrap_or(self.ctx.today);
        let id = doc::new_id();
        let o = self.new_entity(Collection::Touchpoints, &id)?;
        put_str(self.tx, &o, "partner_id", &partner_id)?;
        put_str(self.tx, &o, "member_id", &member_id)?;
        put_str(self.tx, &o, "kind", input.kind.code())?;
        put_str(self.tx, &o, "at", &at.to_string())?;
        put_opt_str(self.tx, &o, "outcome", input.outcome.map(|o| o.code()))?;
        put_text(self.tx, &o, "note", &note)?;
        self.done(EntityKind::Touchpoint, &id);
        match input.outcome {
            Some(TouchpointOutcome::NoResponse) => {
                self.advance_cadence(&partner_id, &member_id, at)?
            }
            Some(TouchpointOutcome::Reached | TouchpointOutcome::Scheduled) => {
                self.reset_cadence(&partner_id, at)?
            }
            // A decline ends this round of outreach without judging the relationship.
            Some(TouchpointOutcome::Declined) => self.reset_cadence(&partner_id, at)?,
            None => {}
        }
        project::touchpoint(self.tx, &id).ok_or_else(|| lost("touchpoint", &id))
    }

    /// Records a referral. Only coded values: a referral never holds a client's identity.
    pub fn record_referral(&mut self, input: NewReferral) -> Result<Referral> {
        self.in_space(SpaceKind::Practice, "a referral")?;
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
        let member_id = self.member_for("member_id", input.member_id.as_deref())?;
        active_partner(self.tx, &partner_id)?;
        let at = input.at.unwrap_or(self.ctx.today);
        let id = doc::new_id();
        let o = self.new_entity(Collection::Referrals, &id)?;
        put_str(self.tx, &o, "partner_id", &partner_id)?;
        put_str(self.tx, &o, "member_id", &member_id)?;
        put_str(self.tx, &o, "direction", input.direction.code())?;
        put_str(self.tx, &o, "at", &at.to_string())?;
        put_set(self.tx, &o, "concerns", &concerns)?;
        put_opt_str(self.tx, &o, "age_band", input.age_band.map(|a| a.code()))?;
        put_opt_str(
            self.tx,
            &o,
            "payer_category",
            input.payer_category.map(|p| p.code()),
        )?;
        put_opt_str(self.tx, &o, "modality", modality.as_deref())?;
        put_str(
            self.tx,
            &o,
            "status",
            input.status.unwrap_or(ReferralStatus::Requested).code(),
        )?;
        self.done(EntityKind::Referral, &id);
        // A referral exchanged is the best reply there is.
        self.reset_cadence(&partner_id, at)?;
        project::referral(self.tx, &id).ok_or_else(|| lost("referral", &id))
    }

    /// Updates a referral's status and, optionally, its outcome.
    pub fn update_referral(
        &mut self,
        id: &str,
        status: ReferralStatus,
        outcome: Option<ReferralOutcome>,
    ) -> Result<Referral> {
        self.in_space(SpaceKind::Practice, "a referral")?;
        let id = validate::id("referral id", id)?;
        let o = existing(self.tx, Collection::Referrals, "referral", &id)?;
        put_str(self.tx, &o, "status", status.code())?;
        if let Some(outcome) = outcome {
            put_str(self.tx, &o, "outcome", outcome.code())?;
        }
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Referral, &id);
        project::referral(self.tx, &id).ok_or_else(|| lost("referral", &id))
    }

    /// Schedules a follow-up with a partner.
    pub fn schedule_followup(&mut self, input: NewFollowup) -> Result<Followup> {
        self.in_space(SpaceKind::Practice, "a follow-up")?;
        let partner_id = validate::id("partner_id", &input.partner_id)?;
        let reason = validate::text("reason", &input.reason, Screen::Strict)?;
        if input.cadence_days == Some(0) || input.cadence_days.is_some_and(|d| d > 366) {
            return Err(Error::invalid(
                "cadence_days",
                "must be between 1 and 366 days",
            ));
        }
        let member_id = self.member_for("member_id", input.member_id.as_deref())?;
        active_partner(self.tx, &partner_id)?;
        let id = doc::new_id();
        self.insert_followup(
            &id,
            &partner_id,
            &member_id,
            input.due,
            &reason,
            input.cadence_days,
        )?;
        project::followup(self.tx, &id).ok_or_else(|| lost("follow-up", &id))
    }

    /// Marks a follow-up done (today by default); a repeating one schedules its next.
    pub fn complete_followup(&mut self, id: &str, on: Option<Day>) -> Result<Followup> {
        self.in_space(SpaceKind::Practice, "a follow-up")?;
        let id = validate::id("follow-up id", id)?;
        let o = open_followup(self.tx, &id)?;
        let done = on.unwrap_or(self.ctx.today);
        put_str(self.tx, &o, "status", FollowupStatus::Done.code())?;
        put_str(self.tx, &o, "done_at", &done.to_string())?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Followup, &id);
        let cadence = get_i64(self.tx, &o, "cadence_days").and_then(|d| u32::try_from(d).ok());
        if let (Some(days), Some(partner_id)) = (cadence, get_str(self.tx, &o, "partner_id")) {
            let due = done.saturating_add(jiff::Span::new().days(i64::from(days)));
            let previous = project::followup(self.tx, &id);
            let reason = previous
                .as_ref()
                .map(|f| f.reason.clone())
                .unwrap_or_default();
            let member_id = previous.map_or_else(|| self.ctx.member_id.clone(), |f| f.member_id);
            self.insert_followup(
                &doc::new_id(),
                &partner_id,
                &member_id,
                due,
                &reason,
                Some(days),
            )?;
        }
        project::followup(self.tx, &id).ok_or_else(|| lost("follow-up", &id))
    }

    /// Moves an open follow-up to a later day.
    pub fn snooze_followup(&mut self, id: &str, until: Day) -> Result<Followup> {
        self.in_space(SpaceKind::Practice, "a follow-up")?;
        let id = validate::id("follow-up id", id)?;
        let o = open_followup(self.tx, &id)?;
        if until <= self.ctx.today {
            return Err(Error::invalid(
                "until",
                format!("must be after today ({})", self.ctx.today),
            ));
        }
        let snoozed = get_i64(self.tx, &o, "snoozed").unwrap_or(0);
        put_str(self.tx, &o, "due", &until.to_string())?;
        put_uint(
            self.tx,
            &o,
            "snoozed",
            u64::try_from(snoozed + 1).unwrap_or(1),
        )?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Followup, &id);
        project::followup(self.tx, &id).ok_or_else(|| lost("follow-up", &id))
    }

    /// Cancels an open follow-up.
    pub fn cancel_followup(&mut self, id: &str) -> Result<Followup> {
        self.in_space(SpaceKind::Practice, "a follow-up")?;
        let id = validate::id("follow-up id", id)?;
        let o = open_followup(self.tx, &id)?;
        put_str(self.tx, &o, "status", FollowupStatus::Cancelled.code())?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Followup, &id);
        project::followup(self.tx, &id).ok_or_else(|| lost("follow-up", &id))
    }

    /// Sets this clinician's ideal-client statement.
    pub fn set_ideal_client(&mut self, text: &str) -> Result<Member> {
        self.in_space(SpaceKind::Practice, "a member")?;
        let text = validate::text("ideal_client", text, Screen::ProfessionalContact)?;
        let id = self.ctx.member_id.clone();
        let o = existing(self.tx, Collection::Members, "member", &id)?;
        put_text(self.tx, &o, "ideal_client", &text)?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Member, &id);
        project::member(self.tx, &id).ok_or_else(|| lost("member", &id))
    }

    /// Sets whether this clinician accepts new clients.
    pub fn set_accepting(&mut self, accepting: bool) -> Result<Member> {
        self.in_space(SpaceKind::Practice, "a member")?;
        let id = self.ctx.member_id.clone();
        let o = existing(self.tx, Collection::Members, "member", &id)?;
        put_bool(self.tx, &o, "accepting", accepting)?;
        touch(self.tx, &o, self.ctx)?;
        self.done(EntityKind::Member, &id);
        project::member(self.tx, &id).ok_or_else(|| lost("member", &id))
    }

    /// Adds a private note about a partner (personal space; the caller checks the partner
    /// exists, since partners live in the practice space).
    pub fn add_note(&mut self, partner_id: &str, body: &str) -> Result<Note> {
        self.in_space(SpaceKind::Personal, "a personal note")?;
        let partner_id = validate::id("partner_id", partner_id)?;
        let body = validate::text("note", body, Screen::ProfessionalContact)?;
        if body.trim().is_empty() {
            return Err(Error::invalid("note", "must not be empty"));
        }
        let id = doc::new_id();
        let o = self.new_entity(Collection::Notes, &id)?;
        put_str(self.tx, &o, "partner_id", &partner_id)?;
        put_str(self.tx, &o, "at", &self.ctx.today.to_string())?;
        put_text(self.tx, &o, "body", &body)?;
        self.done(EntityKind::Note, &id);
        project::note(self.tx, &id).ok_or_else(|| lost("note", &id))
    }

    /// Sets the practice's default follow-up backoff (days between unanswered attempts;
    /// the last step repeats).
    pub fn set_default_cadence(&mut self, steps: &[u32]) -> Result<Vec<u32>> {
        self.in_space(SpaceKind::Practice, "the practice's cadence")?;
        if steps.is_empty() {
            return Err(Error::invalid(
                "cadence_steps",
                "give at least one step, e.g. 14,21,30",
            ));
        }
        validate::cadence_steps("cadence_steps", steps)?;
        let stored = project::format_steps(steps);
        let settings = doc::collection(self.tx, Collection::Settings)?;
        put_str(self.tx, &settings, "cadence_steps", &stored)?;
        self.done(EntityKind::Practice, "");
        Ok(project::parse_steps(&stored))
    }

    /// The backoff that applies to a partner: its own, the practice's, or 14, 21, 30.
    fn cadence_for(&self, partner: &ObjId) -> Vec<u32> {
        let own = get_str(self.tx, partner, "cadence_steps")
            .map(|s| project::parse_steps(&s))
            .unwrap_or_default();
        if !own.is_empty() {
            return own;
        }
        let practice = doc::collection(self.tx, Collection::Settings)
            .ok()
            .and_then(|s| get_str(self.tx, &s, "cadence_steps"))
            .map(|s| project::parse_steps(&s))
            .unwrap_or_default();
        if practice.is_empty() {
            DEFAULT_CADENCE.to_vec()
        } else {
            practice
        }
    }

    /// Outreach got no response: the pending automatic follow-up (if any) is done, and the
    /// next is scheduled one backoff step later. Never closes the relationship.
    fn advance_cadence(&mut self, partner_id: &str, member_id: &str, at: Day) -> Result<()> {
        let partner = existing(self.tx, Collection::Partners, "partner", partner_id)?;
        self.close_auto_followup(&partner, at)?;
        let attempt = get_i64(self.tx, &partner, "cadence_attempt")
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0);
        let steps = self.cadence_for(&partner);
        let step = steps[usize::try_from(attempt)
            .unwrap_or(usize::MAX)
            .min(steps.len() - 1)];
        let due = at.saturating_add(jiff::Span::new().days(i64::from(step)));
        let id = doc::new_id();
        let reason = format!("No response yet (attempt {}): follow up", attempt + 1);
        self.insert_followup(&id, partner_id, member_id, due, &reason, None)?;
        let followup = existing(self.tx, Collection::Followups, "follow-up", &id)?;
        put_bool(self.tx, &followup, "auto", true)?;
        put_uint(self.tx, &followup, "attempt", u64::from(attempt + 1))?;
        put_uint(self.tx, &partner, "cadence_attempt", u64::from(attempt + 1))?;
        put_str(self.tx, &partner, "auto_followup", &id)?;
        self.done(EntityKind::Partner, partner_id);
        Ok(())
    }

    /// They replied, a meeting was scheduled or a referral was exchanged: the backoff starts
    /// again from its first step and the pending automatic follow-up is done.
    fn reset_cadence(&mut self, partner_id: &str, at: Day) -> Result<()> {
        let partner = existing(self.tx, Collection::Partners, "partner", partner_id)?;
        self.close_auto_followup(&partner, at)?;
        if get_i64(self.tx, &partner, "cadence_attempt").unwrap_or(0) != 0 {
            put_uint(self.tx, &partner, "cadence_attempt", 0)?;
            self.done(EntityKind::Partner, partner_id);
        }
        Ok(())
    }

    fn close_auto_followup(&mut self, partner: &ObjId, at: Day) -> Result<()> {
        let Some(id) = get_str(self.tx, partner, "auto_followup") else {
            return Ok(());
        };
        if let Ok(followup) = open_followup(self.tx, &id) {
            put_str(self.tx, &followup, "status", FollowupStatus::Done.code())?;
            put_str(self.tx, &followup, "done_at", &at.to_string())?;
            touch(self.tx, &followup, self.ctx)?;
            self.done(EntityKind::Followup, &id);
        }
        Ok(())
    }

    /// Creates an entity map with its attribution fields. `updated_*` and `archived` are
    /// left out until they differ from their defaults (`created_*`, false): every op costs
    /// document size and load time, and a practice has hundreds of thousands of entities.
    fn new_entity(&mut self, coll: Collection, id: &str) -> Result<ObjId> {
        let parent = doc::collection(self.tx, coll)?;
        let o = self.tx.put_object(&parent, id, ObjType::Map)?;
        put_time(self.tx, &o, "created_at", self.ctx.now_ms)?;
        put_str(self.tx, &o, "created_by", &self.ctx.member_id)?;
        Ok(o)
    }

    fn insert_followup(
        &mut self,
        id: &str,
        partner_id: &str,
        member_id: &str,
        due: Day,
        reason: &str,
        cadence_days: Option<u32>,
    ) -> Result<()> {
        let o = self.new_entity(Collection::Followups, id)?;
        put_str(self.tx, &o, "partner_id", partner_id)?;
        put_str(self.tx, &o, "member_id", member_id)?;
        put_str(self.tx, &o, "due", &due.to_string())?;
        put_str(self.tx, &o, "status", FollowupStatus::Open.code())?;
        put_text(self.tx, &o, "reason", reason)?;
        if let Some(days) = cadence_days {
            put_uint(self.tx, &o, "cadence_days", u64::from(days))?;
        }
        self.done(EntityKind::Followup, id);
        Ok(())
    }
}

/// The follow-up backoff when neither the partner nor the practice set one: gentle, and
/// the last step repeats for as long as nobody answers.
pub const DEFAULT_CADENCE: [u32; 3] = [14, 21, 30];

/// Writes a member entry (genesis and joining).
pub(super) fn add_member<T: Transactable + ReadDoc>(
    tx: &mut T,
    member_id: &str,
    name: &str,
    role: Role,
    device_id: Option<&str>,
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
    put_set(
        tx,
        &o,
        "devices",
        &device_id
            .map(str::to_string)
            .into_iter()
            .collect::<BTreeSet<_>>(),
    )?;
    Ok(())
}

fn lost(entity: &str, id: &str) -> Error {
    Error::Internal(format!(
        "the {entity} {id} could not be read back after writing it"
    ))
}

/// Records who changed an entity last and when.
pub(super) fn touch<T: Transactable>(tx: &mut T, o: &ObjId, ctx: &Ctx) -> Result<()> {
    put_time(tx, o, "updated_at", ctx.now_ms)?;
    put_str(tx, o, "updated_by", &ctx.member_id)
}

fn active_partner<R: ReadDoc>(tx: &R, id: &str) -> Result<ObjId> {
    let o = existing(tx, Collection::Partners, "partner", id)?;
    if get_bool(tx, &o, "archived") == Some(true) {
        return Err(Error::Conflict(format!(
            "the partner {id} is archived; restore it first to record activity"
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
