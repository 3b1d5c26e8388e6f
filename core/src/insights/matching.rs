//! Matching: given a de-identified need, who fits best and why. Helping a client find the
//! right therapist matters most; every match says why it was ranked where it is.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Member, Partner};
use crate::store::queries;
use crate::validate;
use crate::vocab::{self, AgeBand, PayerCategory};

/// A client's need, described only with codes: never who the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Need {
    /// Presenting concerns (concern codes).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub concerns: Vec<String>,
    /// Age band.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub age_band: Option<AgeBand>,
    /// Payer category.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub payer_category: Option<PayerCategory>,
    /// Service format (modality code).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub modality: Option<String>,
    /// Language (ISO 639-1).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub language: Option<String>,
    /// The client wants telehealth.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub telehealth: bool,
    /// The client wants to be seen in this city.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub city: Option<String>,
    /// Only candidates accepting new clients.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub accepting_only: bool,
    /// How many matches to return (default 10, at most 100).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub limit: Option<u32>,
}

/// Who a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum MatchKind {
    /// A referral partner (an outbound referral).
    Partner,
    /// A clinician of the practice (an internal referral).
    Member,
}

/// One ranked candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Match {
    /// Partner or member.
    pub kind: MatchKind,
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Higher is better.
    pub score: u32,
    /// Why it fits, in words.
    pub reasons: Vec<String>,
    /// What does not fit, in words.
    pub caveats: Vec<String>,
}

struct Checked {
    concerns: Vec<String>,
    modality: Option<String>,
    language: Option<String>,
    city: Option<String>,
}

fn check(need: &Need) -> Result<Checked> {
    let concerns = validate::set("concerns", &need.concerns, |f, v| {
        vocab::open_code(f, vocab::CONCERNS, v)
    })?
    .into_iter()
    .collect();
    let checked = Checked {
        concerns,
        modality: need
            .modality
            .as_deref()
            .map(|m| vocab::open_code("modality", vocab::MODALITIES, m))
            .transpose()?,
        language: need
            .language
            .as_deref()
            .map(|l| vocab::language("language", l))
            .transpose()?,
        city: validate::short("city", need.city.as_deref())?,
    };
    let empty = checked.concerns.is_empty()
        && need.age_band.is_none()
        && need.payer_category.is_none()
        && checked.modality.is_none()
        && checked.language.is_none()
        && checked.city.is_none()
        && !need.telehealth;
    if empty {
        return Err(Error::invalid(
            "need",
            "describe the need: at least a concern, age band, payer, modality, language, telehealth or city",
        ));
    }
    Ok(checked)
}

fn words(code: &str) -> String {
    code.trim_start_matches(vocab::CUSTOM_PREFIX)
        .replace(['_', '-'], " ")
}

/// Ranks partners and members for a need: highest score first, then by name and id, so
/// equal scores always come out in the same order. Archived partners and members never
/// appear.
pub fn rank(conn: &Connection, need: &Need) -> Result<Vec<Match>> {
    let checked = check(need)?;
    let limit = usize::try_from(need.limit.unwrap_or(10).clamp(1, 100)).unwrap_or(10);
    let mut out = partners(conn, need, &checked)?;
    out.extend(members(conn, need, &checked)?);
    out.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    });
    out.truncate(limit);
    Ok(out)
}

fn partners(conn: &Connection, need: &Need, checked: &Checked) -> Result<Vec<Match>> {
    // Facet hits per partner, straight from the (facet, value) index.
    let mut wanted: Vec<(&str, String)> = checked
        .concerns
        .iter()
        .map(|c| ("specialty", c.clone()))
        .collect();
    if let Some(age) = need.age_band {
        wanted.push(("population", age.code().to_string()));
    }
    if let Some(payer) = need.payer_category {
        wanted.push(("insurance", payer.code().to_string()));
    }
    if let Some(m) = &checked.modality {
        wanted.push(("modality", m.clone()));
    }
    if let Some(l) = &checked.language {
        wanted.push(("language", l.clone()));
    }
    let mut hits: BTreeMap<i64, Vec<(&str, String)>> = BTreeMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT partner_rid FROM partner_facets WHERE facet = ?1 AND value = ?2")?;
    for (facet, value) in &wanted {
        for rid in stmt.query_map([facet, &value.as_str()], |r| r.get::<_, i64>(0))? {
            hits.entry(rid?).or_default().push((facet, value.clone()));
        }
    }
    let city_key = checked
        .city
        .as_deref()
        .map(crate::store::read_model::name_key);
    let mut candidates = conn.prepare_cached(
        "SELECT p.rid, p.accepting, p.telehealth, p.city_key, COALESCE(a.outbound, 0)
         FROM partners p LEFT JOIN partner_activity a ON a.partner_id = p.id WHERE p.archived = 0",
    )?;
    let mut rows = candidates.query([])?;
    let mut scored: Vec<(i64, u32, Vec<String>, Vec<String>)> = Vec::new();
    while let Some(row) = rows.next()? {
        let rid: i64 = row.get(0)?;
        let accepting: bool = row.get(1)?;
        let telehealth: bool = row.get(2)?;
        let city: Option<String> = row.get(3)?;
        let sent_before: i64 = row.get(4)?;
        let facets = hits.get(&rid).map(Vec::as_slice).unwrap_or(&[]);
        let concern_hits: Vec<&String> = facets
            .iter()
            .filter(|(f, _)| *f == "specialty")
            .map(|(_, v)| v)
            .collect();
        if !checked.concerns.is_empty() && concern_hits.is_empty() {
            continue;
        }
        if need.accepting_only && !accepting {
            continue;
        }
        let mut score = 0;
        let mut reasons = Vec::new();
        let mut caveats = Vec::new();
        for concern in &concern_hits {
            score += 3;
            reasons.push(format!("treats {}", words(concern)));
        }
        for concern in checked
            .concerns
            .iter()
            .filter(|c| !concern_hits.contains(c))
        {
            caveats.push(format!("does not list {}", words(concern)));
        }
        let has = |facet: &str| facets.iter().any(|(f, _)| *f == facet);
        if let Some(age) = need.age_band {
            if has("population") {
                score += 2;
                reasons.push(format!("works with {}", words(age.code())));
            } else {
                caveats.push(format!("does not list {}", words(age.code())));
            }
        }
        if let Some(payer) = need.payer_category {
            if has("insurance") {
                score += 2;
                reasons.push(format!("takes {}", words(payer.code())));
            } else {
                caveats.push(format!("does not list {}", words(payer.code())));
            }
        }
        if let Some(m) = &checked.modality {
            if has("modality") {
                score += 2;
                reasons.push(format!("offers {}", words(m)));
            } else {
                caveats.push(format!("does not offer {}", words(m)));
            }
        }
        if let Some(l) = &checked.language {
            if has("language") {
                score += 2;
                reasons.push(format!("speaks {l}"));
            } else {
                caveats.push(format!("does not list language {l}"));
            }
        }
        if need.telehealth {
            if telehealth {
                score += 1;
                reasons.push("offers telehealth".to_string());
            } else {
                caveats.push("no telehealth".to_string());
            }
        }
        if let Some(wanted_city) = &city_key {
            if city.as_deref() == Some(wanted_city.as_str()) {
                score += 2;
                reasons.push(format!(
                    "in {}",
                    checked.city.as_deref().unwrap_or_default()
                ));
            } else if !(need.telehealth && telehealth) {
                caveats.push("in another city".to_string());
            }
        }
        if accepting {
            score += 1;
            reasons.push("accepting new clients".to_string());
        } else {
            caveats.push("not accepting new clients".to_string());
        }
        if sent_before > 0 {
            score += 1;
            reasons.push(format!("we have referred to them before ({sent_before})"));
        }
        scored.push((rid, score, reasons, caveats));
    }
    // Names are only decoded for the candidates that matter.
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let cutoff = scored.get(99).map_or(0, |s| s.1);
    let mut out = Vec::new();
    let mut by_rid = conn.prepare_cached("SELECT data FROM partners WHERE rid = ?1")?;
    for (rid, score, reasons, caveats) in scored.into_iter().take_while(|s| s.1 >= cutoff) {
        let data: String = by_rid.query_row([rid], |r| r.get(0))?;
        let partner: Partner = queries::decode(&data)?;
        out.push(Match {
            kind: MatchKind::Partner,
            id: partner.id,
            name: partner.name,
            score,
            reasons,
            caveats,
        });
    }
    Ok(out)
}

fn members(conn: &Connection, need: &Need, checked: &Checked) -> Result<Vec<Match>> {
    let mut out = Vec::new();
    for member in queries::members(conn)? {
        let Member {
            id,
            display_name,
            ideal_client,
            accepting,
            archived,
            ..
        } = member;
        if archived || (need.accepting_only && !accepting) {
            continue;
        }
        let statement = ideal_client.to_lowercase();
        let mentioned: Vec<&String> = checked
            .concerns
            .iter()
            .filter(|c| {
                words(c)
                    .split(' ')
                    .any(|w| w.len() > 2 && statement.contains(w))
            })
            .collect();
        if checked.concerns.is_empty() || mentioned.is_empty() {
            continue;
        }
        let mut score = 0;
        let mut reasons = Vec::new();
        for concern in &mentioned {
            score += 3;
            reasons.push(format!("ideal client mentions {}", words(concern)));
        }
        if let Some(age) = need.age_band {
            let age_words = words(age.code());
            if statement.contains(&age_words)
                || (age == AgeBand::Adolescent && statement.contains("teen"))
            {
                score += 2;
                reasons.push(format!("ideal client mentions {age_words}"));
            }
        }
        if accepting {
            score += 1;
            reasons.push("accepting new clients".to_string());
        }
        reasons.push("a colleague in the practice (internal referral)".to_string());
        out.push(Match {
            kind: MatchKind::Member,
            id,
            name: display_name,
            score,
            reasons,
            caveats: Vec::new(),
        });
    }
    Ok(out)
}
