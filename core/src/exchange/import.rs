//! CSV import: a referral tracker kept in a spreadsheet (partners, and referrals with
//! direction and date): nothing is written unless every row is valid (or `skip_invalid`
//! says otherwise), and the report says which column went where and what was wrong on
//! which line.

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

use crate::SpaceKind;
use crate::error::{Error, Result};
use crate::home::{Batch, Home};
use crate::model::{NewPartner, NewReferral};
use crate::vocab::{self, AgeBand, Direction, PartnerKind, PayerCategory, StreamKind};

/// How an import behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ImportOptions {
    /// Check every row and report, but write nothing.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub dry_run: bool,
    /// Write the valid rows even when others are invalid (they are reported).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub skip_invalid: bool,
}

/// A header of the file and the field it was read as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ImportColumn {
    /// The header as written in the file.
    pub header: String,
    /// The field it was read as (`None`: ignored).
    pub field: Option<String>,
}

/// A row that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ImportProblem {
    /// The line of the file (1 is the header).
    pub line: u64,
    /// What was wrong and how to fix it.
    pub message: String,
}

/// What an import did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ImportReport {
    /// Each header and the field it was read as.
    pub columns: Vec<ImportColumn>,
    /// Data rows read.
    pub rows: u64,
    /// Partners created.
    pub partners_created: u64,
    /// Rows that named a partner already known.
    pub partners_matched: u64,
    /// Referrals recorded.
    pub referrals: u64,
    /// Referrals already known (same partner, direction, day and concerns), not recorded
    /// again: importing the same tracker twice does not double-count.
    pub referrals_already_known: u64,
    /// The rows that were wrong.
    pub errors: Vec<ImportProblem>,
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

/// Marks the rollback of the checking pass.
const ROLLED_BACK: &str = "import rolled back";

/// Rows written per transaction: each batch is one Automerge change, kept well under a
/// relay entry (512 KiB) even when every row creates a partner and a referral.
const IMPORT_BATCH: usize = 200;

impl Home {
    /// Imports a CSV referral tracker read from `input`; `progress` hears the number of rows
    /// read so far. The file must have a header row with a partner name column.
    pub fn import_csv(
        &self,
        input: impl Read,
        options: ImportOptions,
        progress: &dyn Fn(u64),
    ) -> Result<ImportReport> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| Error::invalid("csv", format!("the header row cannot be read ({e})")))?
            .clone();
        let columns: Vec<ImportColumn> = headers
            .iter()
            .map(|h| ImportColumn {
                header: h.to_string(),
                field: field_for(h).map(str::to_string),
            })
            .collect();
        let index: HashMap<&str, usize> = headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| field_for(h).map(|f| (f, i)))
            .collect();
        if !index.contains_key("name") {
            return Err(Error::invalid(
                "csv",
                "there is no partner name column (one of: Name, Partner, Referral source)",
            ));
        }
        let records: Vec<(u64, csv::StringRecord)> = reader
            .records()
            .map(|r| r.map(|r| (r.position().map_or(0, |p| p.line()), r)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid("csv", format!("the file is not valid CSV ({e})")))?;
        // First every row is checked in one transaction that is rolled back; then, if the
        // import goes ahead, the rows are written in batches, each its own Automerge
        // change, so that no change outgrows a relay entry (512 KiB) however large the
        // file. Re-importing is harmless, so a failure between batches (a full disk) is
        // fixed by importing the same file again.
        let checked = self.import_rows(&index, &records, None, progress)?;
        if options.dry_run || (!checked.errors.is_empty() && !options.skip_invalid) {
            return Ok(ImportReport {
                columns,
                written: false,
                ..checked
            });
        }
        let written = self.import_rows(&index, &records, Some(IMPORT_BATCH), &|_| {})?;
        Ok(ImportReport {
            columns,
            written: true,
            ..written
        })
    }

    /// Imports `records`; with `commit_every`, in committed batches of that many rows,
    /// otherwise in one transaction rolled back at the end (a check).
    fn import_rows(
        &self,
        index: &HashMap<&str, usize>,
        records: &[(u64, csv::StringRecord)],
        commit_every: Option<usize>,
        progress: &dyn Fn(u64),
    ) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut known: HashMap<String, String> = HashMap::new();
        let mut streams: HashMap<String, String> = HashMap::new();
        let mut done = 0u64;
        for part in records.chunks(commit_every.unwrap_or(records.len().max(1))) {
            let outcome = self.batch(SpaceKind::Practice, |batch| {
                for (line, record) in part {
                    done += 1;
                    progress(done);
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
                    match import_row(self, batch, &get, &mut known, &mut streams) {
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
                        Err(e) => report.errors.push(ImportProblem {
                            line: *line,
                            message: e.to_string(),
                        }),
                    }
                }
                if commit_every.is_none() {
                    return Err(Error::Internal(ROLLED_BACK.into()));
                }
                Ok(())
            });
            match outcome {
                Ok(()) => {}
                Err(Error::Internal(m)) if m == ROLLED_BACK => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

/// One row: the partner (found or created) and, if the row has a direction, a referral.
/// Everything is checked before anything is written, so a bad row writes nothing.
fn import_row(
    home: &Home,
    batch: &mut Batch<'_, '_>,
    get: &dyn Fn(&str) -> String,
    known: &mut HashMap<String, String>,
    streams: &mut HashMap<String, String>,
) -> Result<(bool, Option<bool>)> {
    let name = get("name");
    if name.is_empty() {
        return Err(Error::invalid("name", "is empty"));
    }
    let direction = get("direction");
    let referral = if direction.is_empty() {
        None
    } else {
        let direction = match direction.to_lowercase().as_str() {
            "in" | "received" | "inbound" | "from" => Direction::In,
            "out" | "sent" | "outbound" | "to" => Direction::Out,
            other => {
                return Err(Error::invalid(
                    "direction",
                    format!("{other:?} is not in or out"),
                ));
            }
        };
        let date = get("date");
        if date.is_empty() {
            return Err(Error::invalid(
                "date",
                "a referral needs its date (YYYY-MM-DD)",
            ));
        }
        let at = crate::validate::day("date", &date)?;
        let concerns = list(&get("concerns"));
        if concerns.is_empty() {
            return Err(Error::invalid(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What one relay entry holds (`sync::client::PIECE`).
    const PIECE: usize = 512 * 1024 - 4;

    #[test]
    fn a_large_import_is_written_in_changes_that_fit_a_relay_entry() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        home.create_practice("Riverside", "Ana").unwrap();
        let mut csv = String::from("Name,Type,City,Specialties,Referred,Date,Concerns\n");
        for i in 0..2_500 {
            csv.push_str(&format!(
                "Partner number {i} of the county network,physician,Springfield {i},anxiety;depression;grief,in,2026-01-{:02},anxiety;grief\n",
                i % 28 + 1
            ));
        }
        let report = home
            .import_csv(csv.as_bytes(), ImportOptions::default(), &|_| {})
            .unwrap();
        assert!(report.written);
        assert_eq!((report.partners_created, report.referrals), (2_500, 2_500));
        assert_eq!(home.partner_count().unwrap(), 2_500);
        let pieces = home
            .changes_since_in_pieces(SpaceKind::Practice, &[], PIECE)
            .unwrap();
        let total: usize = pieces.iter().map(Vec::len).sum();
        assert!(
            total > 2 * PIECE,
            "the file must be large enough that one change could not be pushed ({total} bytes)"
        );
        assert!(pieces.iter().all(|p| p.len() <= PIECE));
    }

    #[test]
    fn an_import_with_a_bad_row_writes_nothing_unless_told_to_skip_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        home.create_practice("Riverside", "Ana").unwrap();
        let csv =
            "Name,Referred,Date,Concerns\nGood,in,2026-01-02,anxiety\nBad,in,2026-01-32,anxiety\n";
        let checked = home
            .import_csv(csv.as_bytes(), ImportOptions::default(), &|_| {})
            .unwrap();
        assert!(!checked.written);
        assert_eq!(checked.errors[0].line, 3);
        assert_eq!(home.partner_count().unwrap(), 0);
        let skipped = ImportOptions {
            skip_invalid: true,
            ..ImportOptions::default()
        };
        let report = home.import_csv(csv.as_bytes(), skipped, &|_| {}).unwrap();
        assert!(report.written);
        assert_eq!((report.partners_created, report.errors.len()), (1, 1));
        assert_eq!(home.partner_count().unwrap(), 1);
    }
}
