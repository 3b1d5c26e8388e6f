//! The long game: referrals month by month, how long partners take from first contact to
//! first referral, and what each cohort of new contacts brought in afterwards.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use super::{days_between, parse_day};
use crate::error::{Error, Result};
use crate::validate::Day;

/// Referrals per month for one stream or partner, aligned with [`Trends::months`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct MonthlySeries {
    /// Stream or partner id (empty: partners without a stream).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Referrals received, per month.
    pub inbound: Vec<u32>,
    /// Referrals sent, per month.
    pub outbound: Vec<u32>,
}

/// How long one partner took from first contact to first referral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PartnerLag {
    /// Partner id.
    pub partner_id: String,
    /// Name.
    pub name: String,
    /// First touchpoint.
    pub first_touch: Day,
    /// First referral they sent us.
    pub first_inbound: Day,
    /// Days between the two.
    pub days: i64,
}

/// Partners first contacted in one quarter and what they brought in afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Cohort {
    /// The quarter, e.g. `2026-Q1`.
    pub period: String,
    /// Partners whose first touchpoint fell in it.
    pub partners: u32,
    /// Inbound referrals from them within 3 months of their first contact.
    pub within_3_months: u32,
    /// Within 6 months.
    pub within_6_months: u32,
    /// Within 12 months.
    pub within_12_months: u32,
    /// Months from the quarter's start to today (capped at 12): later windows are partial.
    pub months_observed: u32,
}

/// The long-game report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Trends {
    /// The months covered, `YYYY-MM`, oldest first.
    pub months: Vec<String>,
    /// Per stream.
    pub by_stream: Vec<MonthlySeries>,
    /// The partners with the most referrals in the period, per month.
    pub top_partners: Vec<MonthlySeries>,
    /// Partners who referred after we first reached out, quickest first.
    pub time_to_first_referral: Vec<PartnerLag>,
    /// The median of those lags, in days.
    pub median_days_to_first_referral: Option<f64>,
    /// Quarterly cohorts of first contacts in the period.
    pub cohorts: Vec<Cohort>,
}

/// How many partners the per-partner series keep.
pub const TOP_PARTNERS: usize = 10;

fn month_key(day: Day) -> String {
    format!("{:04}-{:02}", day.year(), day.month())
}

fn quarter_key(day: Day) -> String {
    format!("{:04}-Q{}", day.year(), (day.month() - 1) / 3 + 1)
}

/// Trends over the `months` calendar months ending with the month of `today`.
pub fn trends(conn: &Connection, today: Day, months: u32) -> Result<Trends> {
    if months == 0 || months > 240 {
        return Err(Error::invalid("months", "must be between 1 and 240"));
    }
    let first = today
        .first_of_month()
        .saturating_sub(jiff::Span::new().months(i64::from(months) - 1));
    let month_list: Vec<String> = (0..months)
        .map(|i| month_key(first.saturating_add(jiff::Span::new().months(i64::from(i)))))
        .collect();
    let index: BTreeMap<&str, usize> = month_list
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let (from, to) = (first.to_string(), today.to_string());

    let series = |sql: &str| -> Result<BTreeMap<String, MonthlySeries>> {
        let mut out: BTreeMap<String, MonthlySeries> = BTreeMap::new();
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([&from, &to])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let month: String = row.get(1)?;
            let direction: String = row.get(2)?;
            let count = u32::try_from(row.get::<_, i64>(3)?).unwrap_or(0);
            let Some(&i) = index.get(month.as_str()) else {
                continue;
            };
            let entry = out.entry(id.clone()).or_insert_with(|| MonthlySeries {
                id,
                name: String::new(),
                inbound: vec![0; month_list.len()],
                outbound: vec![0; month_list.len()],
            });
            if direction == "in" {
                entry.inbound[i] += count;
            } else {
                entry.outbound[i] += count;
            }
        }
        Ok(out)
    };
    let mut by_stream = series(
        "SELECT COALESCE(p.stream_id, ''), substr(r.at, 1, 7), r.direction, count(*)
         FROM referrals r JOIN partners p INDEXED BY partners_by_id ON p.id = r.partner_id
         WHERE r.at >= ?1 AND r.at <= ?2 AND r.status != 'entered_in_error' GROUP BY 1, 2, 3",
    )?;
    let by_partner = series(
        "SELECT r.partner_id, substr(r.at, 1, 7), r.direction, count(*) FROM referrals r
         WHERE r.at >= ?1 AND r.at <= ?2 AND r.status != 'entered_in_error' GROUP BY 1, 2, 3",
    )?;

    let stream_names: BTreeMap<String, String> = conn
        .prepare_cached("SELECT id, name FROM streams")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, name) in &stream_names {
        by_stream
            .entry(id.clone())
            .or_insert_with(|| MonthlySeries {
                id: id.clone(),
                name: String::new(),
                inbound: vec![0; month_list.len()],
                outbound: vec![0; month_list.len()],
            });
        if let Some(s) = by_stream.get_mut(id) {
            s.name = name.clone();
        }
    }
    if let Some(s) = by_stream.get_mut("") {
        s.name = "(no stream)".into();
    }
    let mut by_stream: Vec<MonthlySeries> = by_stream.into_values().collect();
    by_stream.sort_by(|a, b| a.name.cmp(&b.name));

    let total = |s: &MonthlySeries| s.inbound.iter().chain(&s.outbound).sum::<u32>();
    let mut top_partners: Vec<MonthlySeries> = by_partner.into_values().collect();
    top_partners.sort_by(|a, b| total(b).cmp(&total(a)).then_with(|| a.id.cmp(&b.id)));
    top_partners.truncate(TOP_PARTNERS);
    let mut name_of = conn.prepare_cached("SELECT name FROM partners WHERE id = ?1")?;
    for s in &mut top_partners {
        s.name = name_of
            .query_row([&s.id], |r| r.get(0))
            .unwrap_or_else(|_| "(unknown)".into());
    }

    let mut lags = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT a.partner_id, p.name, a.first_touch, a.first_inbound
         FROM partner_activity a JOIN partners p ON p.id = a.partner_id
         WHERE a.first_touch IS NOT NULL AND a.first_inbound IS NOT NULL AND a.first_inbound >= a.first_touch",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (Some(first_touch), Some(first_inbound)) =
            (parse_day(row.get(2)?), parse_day(row.get(3)?))
        else {
            continue;
        };
        lags.push(PartnerLag {
            partner_id: row.get(0)?,
            name: row.get(1)?,
            first_touch,
            first_inbound,
            days: days_between(first_touch, first_inbound),
        });
    }
    lags.sort_by(|a, b| {
        a.days
            .cmp(&b.days)
            .then_with(|| a.partner_id.cmp(&b.partner_id))
    });
    let median_days_to_first_referral = match lags.len() {
        0 => None,
        n if n % 2 == 1 => Some(lags[n / 2].days as f64),
        n => Some((lags[n / 2 - 1].days + lags[n / 2].days) as f64 / 2.0),
    };

    Ok(Trends {
        months: month_list,
        by_stream,
        top_partners,
        time_to_first_referral: lags,
        median_days_to_first_referral,
        cohorts: cohorts(conn, today, first)?,
    })
}

fn cohorts(conn: &Connection, today: Day, from: Day) -> Result<Vec<Cohort>> {
    let mut cohorts: BTreeMap<String, Cohort> = BTreeMap::new();
    let months_between = |a: Day, b: Day| -> u32 {
        let months = (i32::from(b.year()) - i32::from(a.year())) * 12 + i32::from(b.month())
            - i32::from(a.month());
        u32::try_from(months.max(0)).unwrap_or(0)
    };
    let mut members =
        conn.prepare_cached("SELECT first_touch FROM partner_activity WHERE first_touch >= ?1")?;
    for first_touch in members.query_map([from.to_string()], |r| r.get::<_, String>(0))? {
        let Some(day) = parse_day(Some(first_touch?)) else {
            continue;
        };
        let key = quarter_key(day);
        let quarter_start = Day::new(day.year(), (day.month() - 1) / 3 * 3 + 1, 1).unwrap_or(day);
        let cohort = cohorts.entry(key.clone()).or_insert_with(|| Cohort {
            period: key,
            partners: 0,
            within_3_months: 0,
            within_6_months: 0,
            within_12_months: 0,
            months_observed: months_between(quarter_start, today).min(12),
        });
        cohort.partners += 1;
    }
    let mut referrals = conn.prepare_cached(
        // CROSS JOIN keeps SQLite driving from the few recent partners, not all referrals.
        "SELECT a.first_touch, r.at FROM partner_activity a
         CROSS JOIN referrals r ON r.partner_id = a.partner_id AND r.direction = 'in' AND r.status != 'entered_in_error'
         WHERE a.first_touch >= ?1 AND r.at >= a.first_touch",
    )?;
    let mut rows = referrals.query([from.to_string()])?;
    while let Some(row) = rows.next()? {
        let (Some(first), Some(at)) = (parse_day(row.get(0)?), parse_day(row.get(1)?)) else {
            continue;
        };
        let Some(cohort) = cohorts.get_mut(&quarter_key(first)) else {
            continue;
        };
        for (months, counter) in [
            (3, &mut cohort.within_3_months),
            (6, &mut cohort.within_6_months),
            (12, &mut cohort.within_12_months),
        ] {
            if at < first.saturating_add(jiff::Span::new().months(months)) {
                *counter += 1;
            }
        }
    }
    Ok(cohorts.into_values().collect())
}
