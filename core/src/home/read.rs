//! Queries: answered from the read model, never by loading a document.

use super::Home;
use crate::error::{Error, Result};
use crate::model::{
    Followup, Identity, Member, Note, Partner, PartnerFilter, Referral, Stream, Touchpoint,
};
use crate::store::queries;
use crate::validate;
use crate::vocab::FollowupStatus;

impl Home {
    /// Who this device is and which practice it holds; `None` before a practice exists.
    pub fn identity(&self) -> Result<Option<Identity>> {
        let conn = self.lock_reader();
        let get = |key| queries::home_value(&conn, key);
        let (Some(member_id), Some(practice_id), Some(personal_space_id), Some(device_id)) = (
            get("member_id")?,
            get("practice_id")?,
            get("personal_id")?,
            get("device_id")?,
        ) else {
            return Ok(None);
        };
        let practice_name = queries::practice_name(&conn)?.unwrap_or_default();
        Ok(Some(Identity {
            practice_id,
            practice_name,
            member_id,
            device_id,
            personal_space_id,
        }))
    }

    /// This device's id (exists from the first open).
    pub fn device_id(&self) -> Result<String> {
        queries::home_value(&self.lock_reader(), "device_id")?
            .ok_or_else(|| Error::Internal("the home has no device id".into()))
    }

    /// One partner.
    pub fn partner(&self, id: &str) -> Result<Partner> {
        let id = validate::id("partner id", id)?;
        queries::partner(&self.lock_reader(), &id)?.ok_or(Error::NotFound {
            entity: "partner",
            id,
        })
    }

    /// Partners matching a filter (first page of 50 by name by default).
    pub fn partners(&self, filter: &PartnerFilter) -> Result<Vec<Partner>> {
        queries::partners(&self.lock_reader(), filter)
    }

    /// Full-text search over partners, best match first.
    pub fn search_partners(&self, text: &str, limit: u32) -> Result<Vec<Partner>> {
        let filter = PartnerFilter {
            search: Some(text.to_string()),
            limit: Some(limit),
            ..Default::default()
        };
        queries::partners(&self.lock_reader(), &filter)
    }

    /// Resolves what a person typed for a partner: an id, or an unambiguous name prefix.
    pub fn resolve_partner(&self, id_or_name: &str) -> Result<Partner> {
        if let Ok(id) = validate::id("partner", id_or_name)
            && let Some(partner) = queries::partner(&self.lock_reader(), &id)?
        {
            return Ok(partner);
        }
        let matches = queries::partners_by_name_prefix(&self.lock_reader(), id_or_name, 6)?;
        match matches.as_slice() {
            [] => Err(Error::NotFound {
                entity: "partner",
                id: id_or_name.to_string(),
            }),
            [one] => Ok(one.clone()),
            [first, ..]
                if first.name.eq_ignore_ascii_case(id_or_name.trim())
                    && !matches[1].name.eq_ignore_ascii_case(id_or_name.trim()) =>
            {
                Ok(first.clone())
            }
            many => Err(Error::invalid(
                "partner",
                format!(
                    "{id_or_name:?} matches several partners ({}); type more of the name or use the id",
                    many.iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// The partner (not archived) with exactly this name, ignoring case.
    pub fn partners_by_exact_name(&self, name: &str) -> Result<Option<Partner>> {
        let key = crate::store::read_model::name_key(name);
        let candidates = queries::partners_by_name_prefix(&self.lock_reader(), name, 50)?;
        Ok(candidates
            .into_iter()
            .find(|p| crate::store::read_model::name_key(&p.name) == key))
    }

    /// Number of partners that are not archived.
    pub fn partner_count(&self) -> Result<u64> {
        queries::partner_count(&self.lock_reader())
    }

    /// One touchpoint.
    pub fn touchpoint(&self, id: &str) -> Result<Touchpoint> {
        let id = validate::id("touchpoint id", id)?;
        queries::touchpoint(&self.lock_reader(), &id)?.ok_or(Error::NotFound {
            entity: "touchpoint",
            id,
        })
    }

    /// A partner's touchpoints, newest first.
    pub fn touchpoints_of(&self, partner_id: &str) -> Result<Vec<Touchpoint>> {
        let partner = self.partner(partner_id)?;
        queries::touchpoints_of(&self.lock_reader(), &partner.id)
    }

    /// One referral.
    pub fn referral(&self, id: &str) -> Result<Referral> {
        let id = validate::id("referral id", id)?;
        queries::referral(&self.lock_reader(), &id)?.ok_or(Error::NotFound {
            entity: "referral",
            id,
        })
    }

    /// A partner's referrals, newest first.
    pub fn referrals_of(&self, partner_id: &str) -> Result<Vec<Referral>> {
        let partner = self.partner(partner_id)?;
        queries::referrals_of(&self.lock_reader(), &partner.id)
    }

    /// Every referral, newest first, one page.
    pub fn referrals(&self, limit: u32, offset: u32) -> Result<Vec<Referral>> {
        queries::referrals(&self.lock_reader(), limit, offset)
    }

    /// One follow-up.
    pub fn followup(&self, id: &str) -> Result<Followup> {
        let id = validate::id("follow-up id", id)?;
        queries::followup(&self.lock_reader(), &id)?.ok_or(Error::NotFound {
            entity: "follow-up",
            id,
        })
    }

    /// Follow-ups with a status, soonest due first.
    pub fn followups(&self, status: FollowupStatus) -> Result<Vec<Followup>> {
        queries::followups(&self.lock_reader(), status)
    }

    /// A partner's follow-ups.
    pub fn followups_of(&self, partner_id: &str) -> Result<Vec<Followup>> {
        let partner = self.partner(partner_id)?;
        queries::followups_of(&self.lock_reader(), &partner.id)
    }

    /// One member.
    pub fn member(&self, id: &str) -> Result<Member> {
        let id = validate::id("member id", id)?;
        queries::member(&self.lock_reader(), &id)?.ok_or(Error::NotFound {
            entity: "member",
            id,
        })
    }

    /// Every member of the practice.
    pub fn members(&self) -> Result<Vec<Member>> {
        queries::members(&self.lock_reader())
    }

    /// Members' display names by member id (how the membership log names a device's
    /// clinician).
    pub fn member_names(&self) -> Result<std::collections::HashMap<String, String>> {
        Ok(self
            .members()?
            .into_iter()
            .map(|m| (m.id, m.display_name))
            .collect())
    }

    /// One stream.
    pub fn stream(&self, id: &str) -> Result<Stream> {
        let id = validate::id("stream id", id)?;
        queries::stream(&self.lock_reader(), &id)?.ok_or(Error::NotFound {
            entity: "stream",
            id,
        })
    }

    /// Every stream.
    pub fn streams(&self) -> Result<Vec<Stream>> {
        queries::streams(&self.lock_reader())
    }

    /// A stream by name (case-insensitive).
    pub fn stream_by_name(&self, name: &str) -> Result<Option<Stream>> {
        queries::stream_by_name(&self.lock_reader(), name)
    }

    /// This clinician's private notes about a partner.
    pub fn notes_of(&self, partner_id: &str) -> Result<Vec<Note>> {
        let partner = self.partner(partner_id)?;
        queries::notes_of(&self.lock_reader(), &partner.id)
    }

    /// The whole read model as stable text lines (tests compare homes with it).
    pub fn read_model_dump(&self) -> Result<Vec<String>> {
        queries::dump(&self.lock_reader())
    }
}
