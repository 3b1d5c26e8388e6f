//! `rapport import csv`: a referral tracker kept in a spreadsheet (partners, and referrals
//! with direction and date) imported in one transaction: nothing is written unless every
//! row is valid (or `--skip-invalid` says otherwise), and the report says which column
//! went where and what was wrong on which line.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rapport_core::model::{NewPartner, NewReferral};
use rapport_core::vocab::{self, AgeBand, Direction, PartnerKind, PayerCategory, StreamKind};
use rapport_core::{Batch, Home, SpaceKind};
use serde::Serialize;

/// What an import did (or would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Each header and the field it was read as (`None`: ignored).
    pub columns: Vec<(String, Option<&'static str>)>,
    /// Data rows read.
    pub rows: usize,
    /// Partners created.
    pub partners_created: usize,
    /// Rows that named a partner already known.
    pub partners_matched: usize,
    /// Referrals recorded.
    pub referrals: usize,
    /// Referrals already known (same partner, direction, day and concerns), not recorded
    /// again: importing the same tracker twice does not double-count.
    pub referrals_already_known: usize,
    /// `(line, what was wrong)`.
    pub errors: Vec<(u64, String)>,
    /// Whether anything was written.
    pub written: bool,
}

/// Recognised headers (lower case, `_` and `-` read as spaces) for each field.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "name",
        &[
            "name",
            "partner",
            "partner name",
            "referral source",
            "source",
        ],
    ),
    ("kind", &["kind", "type", "partner type", "category"]),
    (
        "organization",
        &["organization", "organisation", "practice", "company", "org"],
    ),
    ("email", &["email", "e mail"]),
    ("phone", &["phone", "telephone", "tel"]),
    ("city", &["city", "town"]),
    ("region", &["region", "state", "province"]),
    ("specialties", &["specialties", "specialty", "treats"]),
    ("stream", &["stream", "referral stream"]),
    ("direction", &["direction", "in/out", "referred"]),
    ("date", &["date", "referral date", "day"]),
    ("concerns", &["concern", "concerns", "presenting concern"]),
    ("age_band", &["age band", "age group"]),
    ("payer", &["payer", "payer category", "insurance"]),
];

fn field_for(header: &str) -> Option<&'static str> {
    let key = header.trim().to_lowercase().replace(['_', '-'], " ");
    FIELDS
        .iter()
        .find(|(_, names)| names.contains(&key.as_str()))
        .map(|(field, _)| *field)
}

fn list(text: &str) -> Vec<String> {
    text.split([';', ',', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Imports `path` into `home`.
pub fn import_csv(
    home: &Home,
    path: &Path,
    dry_run: bool,
    skip_invalid: bool,
    progress: &dyn Fn(usize),
) -> Result<Report> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{} has no header row", path.display()))?
        .clone();
    let mut report = Report {
        columns: headers
            .iter()
            .map(|h| (h.to_string(), field_for(h)))
            .collect(),
        ..Report::default()
    };
    if !report.columns.iter().any(|(_, f)| *f == Some("name")) {
        anyhow::bail!(
            "{} has no partner name column (one of: Name, Partner, Referral source)",
            path.display()
        );
    }
    let index: HashMap<&str, usize> = report
        .columns
        .iter()
        .enumerate()
        .filter_map(|(i, (_, f))| f.map(|f| (f, i)))
        .collect();
    let records: Vec<(u64, csv::StringRecord)> = reader
        .records()
        .map(|r| r.map(|r| (r.position().map_or(0, |p| p.line()), r)))
        .collect::<Result<_, _>>()
        .context("the file is not valid CSV")?;
    let mut known: HashMap<String, String> = HashMap::new();
    let mut streams: HashMap<String, String> = HashMap::new();
    let outcome = home.batch(SpaceKind::Practice, |batch| {
        for (n, (line, record)) in records.iter().enumerate() {
            progress(n + 1);
            if record.iter().all(str::is_empty) {
                continue;
            }
            report.rows += 1;
            let get = |field: &str| {
                index
                    .get(field)
                    .and_then(|i| record.get(*i))
                    .unwrap_or("")
                    .to_string()
            };
            match import_row(home, batch, &get, &mut known, &mut streams) {
                Ok((created, referral)) => {
                    if created {
                        report.partners_created += 1;
                    } else {
                        report.partners_matched += 1;
                    }
                    match referral {
                        Some(true) => report.referrals += 1,
                        Some(false) => report.referrals_already_known += 1,
                        None => {}
                    }
                }
                Err(e) => report.errors.push((*line, e.to_string())),
            }
        }
        if dry_run || (!report.errors.is_empty() && !skip_invalid) {
            // Roll the whole import back.
            return Err(rapport_core::Error::Conflict("import rolled back".into()));
        }
        Ok(())
    });
    match outcome {
        Ok(()) => report.written = true,
        Err(rapport_core::Error::Conflict(m)) if m == "import rolled back" => {
            report.written = false
        }
        Err(e) => return Err(e.into()),
    }
    Ok(report)
}

/// One row: the partner (found or created) and, if the row has a direction, a referral.
/// Everything is checked before anything is written, so a bad row writes nothing.
fn import_row(
    home: &Home,
    batch: &mut Batch<'_, '_>,
    get: &dyn Fn(&str) -> String,
    known: &mut HashMap<String, String>,
    streams: &mut HashMap<String, String>,
) -> rapport_core::Result<(bool, Option<bool>)> {
    let name = get("name");
    if name.is_empty() {
        return Err(rapport_core::Error::invalid("name", "is empty"));
    }
    let direction = get("direction");
    let referral = if direction.is_empty() {
        None
    } else {
        let direction = match direction.to_lowercase().as_str() {
            "in" | "received" | "inbound" | "from" => Direction::In,
            "out" | "sent" | "outbound" | "to" => Direction::Out,
            other => {
                return Err(rapport_core::Error::invalid(
                    "direction",
                    format!("{other:?} is not in or out"),
                ));
            }
        };
        let date = get("date");
        if date.is_empty() {
            return Err(rapport_core::Error::invalid(
                "date",
                "a referral needs its date (YYYY-MM-DD)",
            ));
        }
        let at = rapport_core::validate::day("date", &date)?;
        let concerns = list(&get("concerns"));
        if concerns.is_empty() {
            return Err(rapport_core::Error::invalid(
                "concerns",
                "a referral needs at least one concern, e.g. anxiety",
            ));
        }
        for concern in &concerns {
            vocab::open_code("concerns", vocab::CONCERNS, concern)?;
        }
        let age_band = Some(get("age_band"))
            .filter(|s| !s.is_empty())
            .map(|s| AgeBand::parse(&s))
            .transpose()?;
        let payer = Some(get("payer"))
            .filter(|s| !s.is_empty())
            .map(|s| PayerCategory::parse_for("payer", &s))
            .transpose()?;
        Some((direction, at, concerns, age_band, payer))
    };
    let key = name.to_lowercase();
    let existing = match known.get(&key) {
        Some(id) => Some(id.clone()),
        None => home.partners_by_exact_name(&name)?.map(|p| p.id),
    };
    let (partner_id, created) = match existing {
        Some(id) => (id, false),
        None => {
            let kind_text = get("kind");
            let kind = if kind_text.is_empty() {
                PartnerKind::Other
            } else {
                PartnerKind::parse(&kind_text)?
            };
            let stream = get("stream");
            let stream_id = if stream.is_empty() {
                None
            } else if let Some(id) = streams.get(&stream.to_lowercase()) {
                Some(id.clone())
            } else {
                let id = match home.stream_by_name(&stream)? {
                    Some(s) => s.id,
                    None => batch.create_stream(&stream, StreamKind::Other)?.id,
                };
                streams.insert(stream.to_lowercase(), id.clone());
                Some(id)
            };
            let optional = |s: String| (!s.is_empty()).then_some(s);
            let partner = batch.add_partner(NewPartner {
                kind: Some(kind),
                name: name.clone(),
                organization: optional(get("organization")),
                email: optional(get("email")),
                phone: optional(get("phone")),
                city: optional(get("city")),
                region: optional(get("region")),
                specialties: list(&get("specialties")),
                stream_id,
                ..Default::default()
            })?;
            known.insert(key, partner.id.clone());
            (partner.id, true)
        }
    };
    let Some((direction, at, concerns, age_band, payer_category)) = referral else {
        return Ok((created, None));
    };
    let mut wanted: Vec<String> = concerns.iter().map(|c| c.trim().to_lowercase()).collect();
    wanted.sort();
    let duplicate = !created
        && home
            .referrals_of(&partner_id)?
            .iter()
            .any(|r| r.direction == direction && r.at == at && r.concerns == wanted);
    if !duplicate {
        batch.record_referral(NewReferral {
            partner_id,
            direction,
            at: Some(at),
            concerns,
            age_band,
            payer_category,
            modality: None,
            status: None,
            member_id: None,
        })?;
    }
    Ok((created, Some(!duplicate)))
}
