//! Due and overdue follow-ups: persistence, made a list.

use rusqlite::Connection;
use serde::Serialize;

use super::{days_between, window_start};
use crate::error::Result;
use crate::model::Followup;
use crate::store::queries;
use crate::validate::Day;

/// A follow-up that is due, with what is needed to rank and show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct DueFollowup {
    /// The follow-up.
    pub followup: Followup,
    /// The partner's name.
    pub partner_name: String,
    /// Days past due (0: due today; negative: due in the coming days).
    pub days_overdue: i64,
    /// The partner's past value: referrals they sent the practice.
    pub partner_value: u32,
}

/// Open follow-ups due on or before `today + horizon_days`, most overdue first, then by
/// the partner's past value, then by due day and id (a stable order on ties); at most
/// `limit` of them. Follow-ups of archived partners are left out.
pub fn due(
    conn: &Connection,
    today: Day,
    horizon_days: u32,
    limit: Option<u32>,
) -> Result<Vec<DueFollowup>> {
    let until = today.saturating_add(jiff::Span::new().days(i64::from(horizon_days)));
    // Most overdue first is earliest due first, so SQLite can sort and stop early.
    let mut stmt = conn.prepare_cached(
        "SELECT f.data, p.name, COALESCE(a.inbound, 0)
         FROM followups f
         JOIN partners p ON p.id = f.partner_id AND p.archived = 0
         LEFT JOIN partner_activity a ON a.partner_id = f.partner_id
         WHERE f.status = 'open' AND f.due <= ?1
         ORDER BY f.due, COALESCE(a.inbound, 0) DESC, f.id
         LIMIT ?2",
    )?;
    let limit = limit.map_or(-1, i64::from);
    let mut rows = stmt.query(rusqlite::params![until.to_string(), limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let followup: Followup =
            queries::decode(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?)?;
        let value: i64 = row.get(2)?;
        out.push(DueFollowup {
            days_overdue: days_between(followup.due, today),
            followup,
            partner_name: row.get(1)?,
            partner_value: u32::try_from(value).unwrap_or(0),
        });
    }
    Ok(out)
}

/// Only the follow-ups past their due day.
pub fn overdue(conn: &Connection, today: Day) -> Result<Vec<DueFollowup>> {
    let yesterday = window_start("today", today, 2)?;
    due(conn, yesterday, 0, None).map(|rows| {
        rows.into_iter()
            .map(|f| DueFollowup {
                days_overdue: days_between(f.followup.due, today),
                ..f
            })
            .collect()
    })
}

/// How many open follow-ups are past their due day.
pub fn overdue_count(conn: &Connection, today: Day) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM followups f JOIN partners p ON p.id = f.partner_id AND p.archived = 0
             WHERE f.status = 'open' AND f.due < ?1",
        )?
        .query_row([today.to_string()], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
