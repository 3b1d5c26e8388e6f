//! Projections: one entity of the document as a model record.
//!
//! Used to keep the read model in step with the document. An entity whose required fields
//! are missing or malformed (a buggy or hostile peer) projects to `None` and is left out of
//! the read model rather than failing the merge; unknown fields are simply not read.

use automerge::{ObjId, ROOT, ReadDoc};

use super::fields::{get_bool, get_i64, get_map, get_set, get_str, get_text};
use super::{Collection, entity};
use crate::model::{Followup, Member, Note, Partner, Referral, Stream, Touchpoint};
use crate::validate::Day;
use crate::vocab::{
    AgeBand, Direction, FollowupStatus, PartnerKind, PartnerStatus, PayerCategory, ReferralOutcome,
    ReferralStatus, Role, StreamKind, TouchpointKind, TouchpointOutcome,
};

fn obj<R: ReadDoc>(doc: &R, coll: Collection, id: &str) -> Option<ObjId> {
    entity(doc, coll, id).ok().flatten()
}

fn code<T>(
    doc: &impl ReadDoc,
    o: &ObjId,
    key: &str,
    parse: fn(&str) -> crate::Result<T>,
) -> Option<T> {
    get_str(doc, o, key).and_then(|s| parse(&s).ok())
}

fn day(doc: &impl ReadDoc, o: &ObjId, key: &str) -> Option<Day> {
    get_str(doc, o, key).and_then(|s| s.parse().ok())
}

/// The practice's name.
pub fn practice_name<R: ReadDoc>(doc: &R) -> Option<String> {
    let practice = get_map(doc, &ROOT, "practice")?;
    get_str(doc, &practice, "name")
}

/// A member of the practice.
pub fn member<R: ReadDoc>(doc: &R, id: &str) -> Option<Member> {
    let o = obj(doc, Collection::Members, id)?;
    Some(Member {
        id: id.to_string(),
        display_name: get_str(doc, &o, "display_name")?,
        role: code(doc, &o, "role", Role::parse).unwrap_or(Role::Member),
        ideal_client: get_text(doc, &o, "ideal_client"),
        accepting: get_bool(doc, &o, "accepting").unwrap_or(true),
        archived: get_bool(doc, &o, "archived").unwrap_or(false),
    })
}

/// A referral stream.
pub fn stream<R: ReadDoc>(doc: &R, id: &str) -> Option<Stream> {
    let o = obj(doc, Collection::Streams, id)?;
    Some(Stream {
        id: id.to_string(),
        name: get_str(doc, &o, "name")?,
        kind: code(doc, &o, "kind", StreamKind::parse).unwrap_or(StreamKind::Other),
    })
}

/// A partner.
pub fn partner<R: ReadDoc>(doc: &R, id: &str) -> Option<Partner> {
    let o = obj(doc, Collection::Partners, id)?;
    let created_at = get_i64(doc, &o, "created_at").unwrap_or(0);
    let created_by = get_str(doc, &o, "created_by").unwrap_or_default();
    Some(Partner {
        id: id.to_string(),
        kind: code(doc, &o, "kind", PartnerKind::parse).unwrap_or(PartnerKind::Other),
        name: get_str(doc, &o, "name")?,
        organization: get_str(doc, &o, "organization"),
        credentials: get_str(doc, &o, "credentials"),
        npi: get_str(doc, &o, "npi"),
        taxonomy_code: get_str(doc, &o, "taxonomy_code"),
        email: get_str(doc, &o, "email"),
        phone: get_str(doc, &o, "phone"),
        website: get_str(doc, &o, "website"),
        city: get_str(doc, &o, "city"),
        region: get_str(doc, &o, "region"),
        telehealth: get_bool(doc, &o, "telehealth").unwrap_or(false),
        accepting: get_bool(doc, &o, "accepting").unwrap_or(true),
        specialties: get_set(doc, &o, "specialties"),
        populations: get_set(doc, &o, "populations"),
        modalities: get_set(doc, &o, "modalities"),
        insurance: get_set(doc, &o, "insurance"),
        languages: get_set(doc, &o, "languages"),
        tags: get_set(doc, &o, "tags"),
        ideal_client: get_text(doc, &o, "ideal_client"),
        how_we_met: get_text(doc, &o, "how_we_met"),
        stream_id: get_str(doc, &o, "stream_id"),
        status: code(doc, &o, "status", PartnerStatus::parse).unwrap_or(PartnerStatus::Prospect),
        owner_member: get_str(doc, &o, "owner_member"),
        cadence_steps: get_str(doc, &o, "cadence_steps")
            .map(|s| parse_steps(&s))
            .unwrap_or_default(),
        cadence_attempt: get_i64(doc, &o, "cadence_attempt")
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
        archived: get_bool(doc, &o, "archived").unwrap_or(false),
        created_at,
        updated_at: get_i64(doc, &o, "updated_at").unwrap_or(created_at),
        updated_by: get_str(doc, &o, "updated_by").unwrap_or_else(|| created_by.clone()),
        created_by,
    })
}

/// A touchpoint.
pub fn touchpoint<R: ReadDoc>(doc: &R, id: &str) -> Option<Touchpoint> {
    let o = obj(doc, Collection::Touchpoints, id)?;
    Some(Touchpoint {
        id: id.to_string(),
        partner_id: get_str(doc, &o, "partner_id")?,
        member_id: get_str(doc, &o, "member_id").unwrap_or_default(),
        kind: code(doc, &o, "kind", TouchpointKind::parse).unwrap_or(TouchpointKind::Other),
        at: day(doc, &o, "at")?,
        outcome: code(doc, &o, "outcome", TouchpointOutcome::parse),
        note: get_text(doc, &o, "note"),
        archived: get_bool(doc, &o, "archived").unwrap_or(false),
    })
}

/// A referral.
pub fn referral<R: ReadDoc>(doc: &R, id: &str) -> Option<Referral> {
    let o = obj(doc, Collection::Referrals, id)?;
    Some(Referral {
        id: id.to_string(),
        partner_id: get_str(doc, &o, "partner_id")?,
        member_id: get_str(doc, &o, "member_id").unwrap_or_default(),
        direction: code(doc, &o, "direction", Direction::parse)?,
        at: day(doc, &o, "at")?,
        concerns: get_set(doc, &o, "concerns"),
        age_band: code(doc, &o, "age_band", AgeBand::parse),
        payer_category: code(doc, &o, "payer_category", PayerCategory::parse),
        modality: get_str(doc, &o, "modality"),
        status: code(doc, &o, "status", ReferralStatus::parse).unwrap_or(ReferralStatus::Requested),
        outcome: code(doc, &o, "outcome", ReferralOutcome::parse),
    })
}

/// A follow-up.
pub fn followup<R: ReadDoc>(doc: &R, id: &str) -> Option<Followup> {
    let o = obj(doc, Collection::Followups, id)?;
    Some(Followup {
        id: id.to_string(),
        partner_id: get_str(doc, &o, "partner_id")?,
        member_id: get_str(doc, &o, "member_id").unwrap_or_default(),
        due: day(doc, &o, "due")?,
        done_at: day(doc, &o, "done_at"),
        cadence_days: get_i64(doc, &o, "cadence_days").and_then(|d| u32::try_from(d).ok()),
        reason: get_text(doc, &o, "reason"),
        status: code(doc, &o, "status", FollowupStatus::parse).unwrap_or(FollowupStatus::Open),
        snoozed: get_i64(doc, &o, "snoozed")
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
        auto: get_bool(doc, &o, "auto").unwrap_or(false),
        attempt: get_i64(doc, &o, "attempt")
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
    })
}

/// A personal note.
pub fn note<R: ReadDoc>(doc: &R, id: &str) -> Option<Note> {
    let o = obj(doc, Collection::Notes, id)?;
    Some(Note {
        id: id.to_string(),
        partner_id: get_str(doc, &o, "partner_id")?,
        body: get_text(doc, &o, "body"),
        at: day(doc, &o, "at")?,
        archived: get_bool(doc, &o, "archived").unwrap_or(false),
    })
}

/// Parses a stored cadence (`"14,21,30"`); anything malformed is dropped.
pub fn parse_steps(text: &str) -> Vec<u32> {
    text.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|d| (1..=366).contains(d))
        .collect()
}

/// Writes a cadence the way [`parse_steps`] reads it.
pub fn format_steps(steps: &[u32]) -> String {
    steps
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
