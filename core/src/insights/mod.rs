//! Insights that grow a referral network, answered from the read model (never by scanning
//! the Automerge document) as functions of the data and an explicit `today`, so they are
//! testable and the same on every device.
//!
//! - [`followups`]: due and overdue follow-ups, ordered by how overdue and by value;
//! - [`reciprocity`]: the ledger of referrals sent and received;
//! - [`streams`]: inbound shares per stream, concentration (HHI) and warnings;
//! - [`cold`]: valuable partners gone quiet;
//! - [`matching`]: who fits a de-identified need, with reasons;
//! - [`trends`]: the long game, month by month and cohort by cohort;
//! - [`digest`]: the weekly summary.

pub mod cold;
pub mod digest;
pub mod followups;
pub mod matching;
pub mod reciprocity;
pub mod streams;
pub mod trends;

use crate::error::{Error, Result};
use crate::validate::Day;

/// Checks a trailing window and returns its first day (inclusive): the window of `days`
/// days ending on `today` is `[today - days + 1, today]`.
pub fn window_start(field: &str, today: Day, days: u32) -> Result<Day> {
    if days == 0 {
        return Err(Error::invalid(field, "a window must be at least one day"));
    }
    if days > 36_600 {
        return Err(Error::invalid(field, "a window must be at most 100 years"));
    }
    Ok(today.saturating_sub(jiff::Span::new().days(i64::from(days) - 1)))
}

/// Whole days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: Day, to: Day) -> i64 {
    i64::from(to.since(from).map(|span| span.get_days()).unwrap_or(0))
}

/// Parses a day read back from the read model; `None` for a malformed one.
pub(crate) fn parse_day(text: Option<String>) -> Option<Day> {
    text.and_then(|t| t.parse().ok())
}

#[cfg(test)]
mod tests;
