//! Going cold: partners who referred before or are active, with no touchpoint or referral
//! for a while, most valuable first. Networking is a long game; this keeps it going.

use rusqlite::Connection;
use serde::Serialize;

use super::{days_between, parse_day, window_start};
use crate::error::Result;
use crate::validate::Day;
use crate::vocab::PartnerStatus;

/// Default quiet period, in days.
pub const DEFAULT_QUIET_DAYS: u32 = 60;

/// A partner gone quiet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ColdPartner {
    /// Partner id.
    pub partner_id: String,
    /// Name.
    pub name: String,
    /// Relationship status.
    pub status: PartnerStatus,
    /// Last touchpoint or referral, if any.
    pub last_contact: Option<Day>,
    /// Days since then (since the partner was added, if never).
    pub days_quiet: i64,
    /// Referrals they sent the practice, all time.
    pub referrals_received: u32,
}

/// Partners with no contact in the last `quiet_days` days who sent referrals before or
/// are marked active; archived partners never appear. Most referrals first, then longest
/// quiet, then name.
pub fn going_cold(conn: &Connection, today: Day, quiet_days: u32) -> Result<Vec<ColdPartner>> {
    // Quiet means the last contact was before the window of `quiet_days` ending today.
    let window_from = window_start("quiet_days", today, quiet_days)?;
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.name, p.status,
                max(COALESCE(a.last_touch, ''), COALESCE(a.last_referral, '')),
                COALESCE(a.inbound, 0), p.created_at
         FROM partners p LEFT JOIN partner_activity a ON a.partner_id = p.id
         WHERE p.archived = 0 AND (COALESCE(a.inbound, 0) > 0 OR p.status = 'active')
           AND max(COALESCE(a.last_touch, ''), COALESCE(a.last_referral, '')) < ?1",
    )?;
    let mut rows = stmt.query([window_from.to_string()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let last_contact = parse_day(Some(row.get::<_, String>(3)?));
        let created_at: i64 = row.get(5)?;
        let since = last_contact.unwrap_or_else(|| {
            jiff::Timestamp::from_millisecond(created_at)
                .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
                .unwrap_or(today)
        });
        // A partner added recently and not contacted yet is new, not cold.
        if last_contact.is_none() && since >= window_from {
            continue;
        }
        out.push(ColdPartner {
            partner_id: row.get(0)?,
            name: row.get(1)?,
            status: PartnerStatus::parse(&row.get::<_, String>(2)?)
                .unwrap_or(PartnerStatus::Active),
            last_contact,
            days_quiet: days_between(since, today),
            referrals_received: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
        });
    }
    out.sort_by(|a, b| {
        b.referrals_received
            .cmp(&a.referrals_received)
            .then(b.days_quiet.cmp(&a.days_quiet))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.partner_id.cmp(&b.partner_id))
    });
    Ok(out)
}
