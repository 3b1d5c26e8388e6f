//! The reciprocity ledger: referrals sent and received, per partner, member or stream.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use super::{parse_day, window_start};
use crate::error::{Error, Result};
use crate::validate::{self, Day};

/// What a ledger is kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum LedgerBy {
    /// One row per partner.
    Partner,
    /// One row per clinician of the practice.
    Member,
    /// One row per referral stream.
    Stream,
}

/// Referrals exchanged over some period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Exchange {
    /// Referrals we sent them.
    pub sent: u32,
    /// Referrals they sent us.
    pub received: u32,
    /// `received - sent`: positive when they give more than they get.
    pub balance: i64,
    /// The last referral either way.
    pub last_exchange: Option<Day>,
}

impl Exchange {
    fn add(&mut self, direction: &str, count: u32, last: Option<Day>) {
        match direction {
            "in" => self.received += count,
            _ => self.sent += count,
        }
        self.balance = i64::from(self.received) - i64::from(self.sent);
        self.last_exchange = self.last_exchange.max(last);
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct LedgerRow {
    /// Partner, member or stream id (empty for partners without a stream).
    pub id: String,
    /// Its name.
    pub name: String,
    /// All time.
    pub all_time: Exchange,
    /// The trailing window.
    pub window: Exchange,
}

/// The two lists that call for action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Gaps {
    /// Partners who refer to us and to whom we have never referred back.
    pub they_send_we_never_send: Vec<LedgerRow>,
    /// Partners we refer to who have never referred to us.
    pub we_send_they_never_send: Vec<LedgerRow>,
}

const COUNTED: &str = "status != 'entered_in_error'";

/// The ledger kept `by` partner, member or stream, for all time and the trailing
/// `window_days`; rows with any exchange, largest imbalance first, then by name.
pub fn ledger(
    conn: &Connection,
    by: LedgerBy,
    today: Day,
    window_days: u32,
) -> Result<Vec<LedgerRow>> {
    let start = window_start("window_days", today, window_days)?.to_string();
    let end = today.to_string();
    let (key, join) = match by {
        LedgerBy::Partner => ("r.partner_id", ""),
        LedgerBy::Member => ("r.member_id", ""),
        LedgerBy::Stream => (
            "COALESCE(p.stream_id, '')",
            "JOIN partners p INDEXED BY partners_by_id ON p.id = r.partner_id",
        ),
    };
    let mut rows: BTreeMap<String, LedgerRow> = BTreeMap::new();
    // All-time figures: per partner they are kept in the activity summary; per member the
    // covering index answers; per stream we sum the partners' summaries.
    let all_time_sql = match by {
        LedgerBy::Partner => "SELECT a.partner_id, d.direction,
                    CASE d.direction WHEN 'in' THEN a.inbound ELSE a.outbound END, a.last_referral
             FROM partner_activity a, (SELECT 'in' AS direction UNION ALL SELECT 'out') d
             WHERE a.inbound + a.outbound > 0"
            .to_string(),
        LedgerBy::Member => format!(
            "SELECT r.member_id, r.direction, count(*), max(r.at) FROM referrals r
             WHERE r.{COUNTED} GROUP BY r.member_id, r.direction"
        ),
        LedgerBy::Stream => "SELECT COALESCE(p.stream_id, ''), d.direction,
                    sum(CASE d.direction WHEN 'in' THEN a.inbound ELSE a.outbound END), max(a.last_referral)
             FROM partner_activity a JOIN partners p ON p.id = a.partner_id,
                  (SELECT 'in' AS direction UNION ALL SELECT 'out') d
             WHERE a.inbound + a.outbound > 0
             GROUP BY 1, 2"
            .to_string(),
    };
    let window_sql = format!(
        "SELECT {key}, r.direction, count(*), max(r.at) FROM referrals r {join}
         WHERE r.at >= ?1 AND r.at <= ?2 AND r.{COUNTED} GROUP BY 1, 2"
    );
    let window_args: [&dyn rusqlite::ToSql; 2] = [&start, &end];
    for (sql, window, args) in [
        (all_time_sql, false, &[][..]),
        (window_sql, true, &window_args[..]),
    ] {
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut result = stmt.query(args)?;
        while let Some(row) = result.next()? {
            let id: String = row.get(0)?;
            let direction: String = row.get(1)?;
            let count = u32::try_from(row.get::<_, i64>(2)?).unwrap_or(0);
            if count == 0 {
                continue;
            }
            let last = parse_day(row.get(3)?);
            let entry = rows.entry(id.clone()).or_insert_with(|| LedgerRow {
                id,
                name: String::new(),
                all_time: Exchange::default(),
                window: Exchange::default(),
            });
            if window {
                entry.window.add(&direction, count, last);
            } else {
                entry.all_time.add(&direction, count, last);
            }
        }
    }
    let names = names(conn, by)?;
    let mut out: Vec<LedgerRow> = rows
        .into_values()
        .map(|mut row| {
            row.name = names.get(&row.id).cloned().unwrap_or_else(|| match by {
                LedgerBy::Stream if row.id.is_empty() => "(no stream)".to_string(),
                _ => "(unknown)".to_string(),
            });
            row
        })
        .collect();
    out.sort_by(|a, b| {
        b.all_time
            .balance
            .abs()
            .cmp(&a.all_time.balance.abs())
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

fn names(conn: &Connection, by: LedgerBy) -> Result<BTreeMap<String, String>> {
    let sql = match by {
        LedgerBy::Partner => "SELECT id, name FROM partners",
        LedgerBy::Member => "SELECT id, display_name FROM members",
        LedgerBy::Stream => "SELECT id, name FROM streams",
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ledger of one partner; an unknown or archived partner is an error.
pub fn of_partner(
    conn: &Connection,
    partner_id: &str,
    today: Day,
    window_days: u32,
) -> Result<LedgerRow> {
    let id = validate::id("partner_id", partner_id)?;
    let partner = crate::store::queries::partner(conn, &id)?.ok_or_else(|| Error::NotFound {
        entity: "partner",
        id: id.clone(),
    })?;
    if partner.archived {
        return Err(Error::Conflict(format!(
            "the partner {} is archived; restore it to see its ledger",
            partner.name
        )));
    }
    let row = ledger(conn, LedgerBy::Partner, today, window_days)?
        .into_iter()
        .find(|r| r.id == id);
    Ok(row.unwrap_or(LedgerRow {
        id,
        name: partner.name,
        all_time: Exchange::default(),
        window: Exchange::default(),
    }))
}

/// Partners who give without getting, and partners who get without giving (all time;
/// archived partners left out), largest first.
pub fn gaps(conn: &Connection, today: Day, window_days: u32) -> Result<Gaps> {
    let archived: std::collections::BTreeSet<String> = conn
        .prepare_cached("SELECT id FROM partners WHERE archived = 1")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let rows: Vec<LedgerRow> = ledger(conn, LedgerBy::Partner, today, window_days)?
        .into_iter()
        .filter(|r| !archived.contains(&r.id))
        .collect();
    Ok(Gaps {
        they_send_we_never_send: rows
            .iter()
            .filter(|r| r.all_time.received > 0 && r.all_time.sent == 0)
            .cloned()
            .collect(),
        we_send_they_never_send: rows
            .iter()
            .filter(|r| r.all_time.sent > 0 && r.all_time.received == 0)
            .cloned()
            .collect(),
    })
}

/// The partners with the largest all-time imbalance (not archived), largest first, from
/// the activity summary alone.
pub fn imbalances(conn: &Connection, limit: u32) -> Result<Vec<LedgerRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.partner_id, p.name, a.outbound, a.inbound, a.last_referral
         FROM partner_activity a JOIN partners p ON p.id = a.partner_id AND p.archived = 0
         WHERE a.inbound != a.outbound
         ORDER BY abs(a.inbound - a.outbound) DESC, p.name, a.partner_id
         LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        let sent = u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0);
        let received = u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0);
        Ok(LedgerRow {
            id: r.get(0)?,
            name: r.get(1)?,
            all_time: Exchange {
                sent,
                received,
                balance: i64::from(received) - i64::from(sent),
                last_exchange: parse_day(r.get(4)?),
            },
            window: Exchange::default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
