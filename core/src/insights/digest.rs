//! The weekly digest: one call with what to do this week.

use rusqlite::Connection;
use serde::Serialize;

use super::cold::{ColdPartner, DEFAULT_QUIET_DAYS, going_cold};
use super::followups::{DueFollowup, due, overdue_count};
use super::reciprocity::{LedgerRow, imbalances};
use super::streams;
use crate::error::Result;
use crate::validate::Day;

/// How many entries each list of the digest keeps.
pub const DIGEST_LIST: usize = 10;
/// How many reciprocity imbalances the digest shows.
pub const DIGEST_IMBALANCES: usize = 5;

/// What to do this week.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Digest {
    /// The day it was made for.
    pub today: Day,
    /// Follow-ups overdue or due in the next 7 days, most urgent first.
    pub due_followups: Vec<DueFollowup>,
    /// All follow-ups past their due day.
    pub overdue_count: u64,
    /// Valuable partners gone quiet (60 days), most valuable first.
    pub going_cold: Vec<ColdPartner>,
    /// Stream warnings, each prefixed with its window.
    pub stream_warnings: Vec<String>,
    /// The partners with the largest all-time imbalance of referrals (the window figures
    /// are left empty here).
    pub imbalances: Vec<LedgerRow>,
}

/// Builds the digest for `today`.
pub fn weekly(conn: &Connection, today: Day) -> Result<Digest> {
    let due_followups = due(conn, today, 7, Some(DIGEST_LIST as u32))?;
    let overdue_count = overdue_count(conn, today)?;
    let mut cold = going_cold(conn, today, DEFAULT_QUIET_DAYS)?;
    cold.truncate(DIGEST_LIST);
    let mut stream_warnings = Vec::new();
    for window in streams::report(conn, today)? {
        for warning in &window.warnings {
            stream_warnings.push(format!("last {} days: {}", window.days, warning.message()));
        }
    }
    Ok(Digest {
        today,
        due_followups,
        overdue_count,
        going_cold: cold,
        stream_warnings,
        imbalances: imbalances(conn, DIGEST_IMBALANCES as u32)?,
    })
}
