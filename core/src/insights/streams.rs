//! Referral streams: "two or three streams, not one basket". Shares of inbound referrals
//! per stream over trailing windows, their concentration and the warnings that follow.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use super::window_start;
use crate::error::Result;
use crate::validate::Day;

/// The windows the report covers by default.
pub const DEFAULT_WINDOWS: [u32; 2] = [90, 365];
/// A stream above this share dominates.
pub const DOMINANT_SHARE: f64 = 50.0;
/// A stream at or above this share counts as active.
pub const ACTIVE_SHARE: f64 = 10.0;

/// One stream's share in a window and the one before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct StreamShare {
    /// Stream id (empty: partners without a stream).
    pub stream_id: String,
    /// Stream name.
    pub name: String,
    /// Inbound referrals in the window.
    pub count: u32,
    /// Percentage of the window's inbound referrals.
    pub share: f64,
    /// Inbound referrals in the previous window of the same length.
    pub previous_count: u32,
    /// Percentage in the previous window.
    pub previous_share: f64,
    /// `share - previous_share`, in percentage points.
    pub change: f64,
}

/// Something to act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum StreamWarning {
    /// One stream brings more than half of the inbound referrals.
    Dominant {
        /// The stream.
        name: String,
        /// Its share, in percent.
        share: f64,
    },
    /// Fewer than two streams bring at least 10 % each.
    TooFewStreams {
        /// How many do.
        active: u32,
    },
}

impl StreamWarning {
    /// The warning in words.
    pub fn message(&self) -> String {
        match self {
            StreamWarning::Dominant { name, share } => format!(
                "{name} brings {share:.0}% of inbound referrals: if it dries up, so does the caseload"
            ),
            StreamWarning::TooFewStreams { active } => format!(
                "only {active} stream(s) bring at least 10% of inbound referrals; grow two or three"
            ),
        }
    }
}

/// The report for one trailing window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct StreamWindow {
    /// Window length in days.
    pub days: u32,
    /// First day of the window.
    pub from: Day,
    /// Inbound referrals in the window.
    pub total: u32,
    /// Inbound referrals in the previous window.
    pub previous_total: u32,
    /// Every stream, largest share first.
    pub shares: Vec<StreamShare>,
    /// Herfindahl-Hirschman index: sum of squared percentage shares, 0 to 10,000.
    pub hhi: f64,
    /// The same for the previous window.
    pub previous_hhi: f64,
    /// Warnings for this window.
    pub warnings: Vec<StreamWarning>,
}

/// Counts of inbound referrals per stream id (empty: no stream) in `[from, to]`.
fn inbound_by_stream(conn: &Connection, from: Day, to: Day) -> Result<BTreeMap<String, u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(p.stream_id, ''), count(*)
         FROM referrals r JOIN partners p INDEXED BY partners_by_id ON p.id = r.partner_id
         WHERE r.direction = 'in' AND r.at >= ?1 AND r.at <= ?2 AND r.status != 'entered_in_error'
         GROUP BY 1",
    )?;
    let rows = stmt.query_map([from.to_string(), to.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn percent(count: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        f64::from(count) * 100.0 / f64::from(total)
    }
}

/// The concentration of a set of percentage shares.
pub fn hhi(shares: impl IntoIterator<Item = f64>) -> f64 {
    shares.into_iter().map(|s| s * s).sum()
}

/// The stream report for one trailing window ending on `today`.
pub fn window(conn: &Connection, today: Day, days: u32) -> Result<StreamWindow> {
    let from = window_start("days", today, days)?;
    let previous_to = from.saturating_sub(jiff::Span::new().days(1));
    let previous_from = window_start("days", previous_to, days)?;
    let current = inbound_by_stream(conn, from, today)?;
    let previous = inbound_by_stream(conn, previous_from, previous_to)?;
    let total: u32 = current.values().sum();
    let previous_total: u32 = previous.values().sum();

    let mut names: BTreeMap<String, String> = conn
        .prepare_cached("SELECT id, name FROM streams")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if current.contains_key("") || previous.contains_key("") {
        names.insert(String::new(), "(no stream)".into());
    }
    let mut shares: Vec<StreamShare> = names
        .into_iter()
        .map(|(stream_id, name)| {
            let count = current.get(&stream_id).copied().unwrap_or(0);
            let previous_count = previous.get(&stream_id).copied().unwrap_or(0);
            let share = percent(count, total);
            let previous_share = percent(previous_count, previous_total);
            StreamShare {
                stream_id,
                name,
                count,
                share,
                previous_count,
                previous_share,
                change: share - previous_share,
            }
        })
        .collect();
    shares.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));

    let mut warnings = Vec::new();
    if let Some(top) = shares.first().filter(|s| s.share > DOMINANT_SHARE) {
        warnings.push(StreamWarning::Dominant {
            name: top.name.clone(),
            share: top.share,
        });
    }
    let active = shares.iter().filter(|s| s.share >= ACTIVE_SHARE).count();
    if active < 2 {
        warnings.push(StreamWarning::TooFewStreams {
            active: u32::try_from(active).unwrap_or(0),
        });
    }
    Ok(StreamWindow {
        days,
        from,
        total,
        previous_total,
        hhi: hhi(shares.iter().map(|s| s.share)),
        previous_hhi: hhi(shares.iter().map(|s| s.previous_share)),
        shares,
        warnings,
    })
}

/// The report for the trailing 90 and 365 days.
pub fn report(conn: &Connection, today: Day) -> Result<Vec<StreamWindow>> {
    DEFAULT_WINDOWS
        .iter()
        .map(|days| window(conn, today, *days))
        .collect()
}
