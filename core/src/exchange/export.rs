//! Export: the practice's data for a spreadsheet (CSV of partners), for another program
//! (JSON of everything shared) or for a backup (the Automerge document itself).

use std::collections::HashMap;

use serde_json::json;

use crate::SpaceKind;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::model::{Partner, PartnerFilter};

/// What an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum ExportFormat {
    /// Members, streams, partners, touchpoints, referrals and follow-ups as one JSON object.
    Json,
    /// One row per active partner, in the columns `import_csv` reads back.
    Csv,
    /// The practice's Automerge document (binary), a complete backup of the shared space.
    Automerge,
}

/// The columns of a CSV export, readable by `import_csv`.
const CSV_COLUMNS: [&str; 9] = [
    "name",
    "kind",
    "organization",
    "email",
    "phone",
    "city",
    "region",
    "specialties",
    "stream",
];

/// Partners are read in pages of this many.
const PAGE: u32 = 1_000;

impl Home {
    /// Exports the practice's shared data in `format`. Personal notes are never exported.
    pub fn export(&self, format: ExportFormat) -> Result<Vec<u8>> {
        match format {
            ExportFormat::Json => self.export_json(),
            ExportFormat::Csv => self.export_csv(),
            ExportFormat::Automerge => self.export_document(SpaceKind::Practice),
        }
    }

    /// Every partner, archived ones when `include_archived`, page by page.
    fn all_partners(&self, include_archived: bool) -> Result<Vec<Partner>> {
        let mut partners = Vec::new();
        loop {
            let page = self.partners(&PartnerFilter {
                include_archived,
                limit: Some(PAGE),
                offset: Some(u32::try_from(partners.len()).unwrap_or(u32::MAX)),
                ..Default::default()
            })?;
            let last = page.len() < PAGE as usize;
            partners.extend(page);
            if last {
                return Ok(partners);
            }
        }
    }

    fn export_json(&self) -> Result<Vec<u8>> {
        let partners = self.all_partners(true)?;
        let mut touchpoints = Vec::new();
        let mut referrals = Vec::new();
        let mut followups = Vec::new();
        for p in &partners {
            touchpoints.extend(self.touchpoints_of(&p.id)?);
            referrals.extend(self.referrals_of(&p.id)?);
            followups.extend(self.followups_of(&p.id)?);
        }
        let value = json!({
            "practice": self.identity()?.map(|i| i.practice_name),
            "members": self.members()?,
            "streams": self.streams()?,
            "partners": partners,
            "touchpoints": touchpoints,
            "referrals": referrals,
            "followups": followups,
        });
        serde_json::to_vec_pretty(&value).map_err(|e| Error::Internal(format!("export: {e}")))
    }

    fn export_csv(&self) -> Result<Vec<u8>> {
        let streams: HashMap<String, String> = self
            .streams()?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        let failed = |e: csv::Error| Error::Internal(format!("writing CSV: {e}"));
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(CSV_COLUMNS).map_err(failed)?;
        for p in self.all_partners(false)? {
            let stream = p
                .stream_id
                .as_ref()
                .and_then(|s| streams.get(s))
                .map_or("", String::as_str);
            writer
                .write_record([
                    p.name.as_str(),
                    p.kind.code(),
                    p.organization.as_deref().unwrap_or(""),
                    p.email.as_deref().unwrap_or(""),
                    p.phone.as_deref().unwrap_or(""),
                    p.city.as_deref().unwrap_or(""),
                    p.region.as_deref().unwrap_or(""),
                    &p.specialties.join(";"),
                    stream,
                ])
                .map_err(failed)?;
        }
        writer
            .into_inner()
            .map_err(|e| Error::Internal(format!("writing CSV: {e}")))
    }
}
