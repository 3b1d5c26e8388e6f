//! Queries over the read model. None of them touches the Automerge document.

use rusqlite::{Connection, OptionalExtension, ToSql, params};
use serde::de::DeserializeOwned;

use super::read_model::name_key;
use crate::error::{Error, Result};
use crate::model::{Followup, Member, Note, Partner, PartnerFilter, Referral, Stream, Touchpoint};
use crate::vocab::FollowupStatus;

/// Default page size of lists.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page a list returns.
pub const MAX_LIMIT: u32 = 1_000;

/// Decodes a `data` column.
pub fn decode<T: DeserializeOwned>(data: &str) -> Result<T> {
    serde_json::from_str(data)
        .map_err(|e| Error::Internal(format!("the read model holds a row this build cannot read ({e}); it will be rebuilt on next open")))
}

/// Rows whose `data` column decodes to `T`.
pub fn rows<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let data = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        out.push(decode(data)?);
    }
    Ok(out)
}

fn one<T: DeserializeOwned>(conn: &Connection, sql: &str, id: &str) -> Result<Option<T>> {
    let data: Option<String> = conn
        .prepare_cached(sql)?
        .query_row([id], |r| r.get(0))
        .optional()?;
    data.as_deref().map(decode).transpose()
}

/// A home setting (device id, member id, ...).
pub fn home_value(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM home WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// The practice's name.
pub fn practice_name(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT name FROM practice LIMIT 1", [], |r| r.get(0))
        .optional()?)
}

/// Practice-wide settings (a JSON object of strings).
pub fn practice_settings(conn: &Connection) -> Result<serde_json::Map<String, serde_json::Value>> {
    let raw: Option<String> = conn
        .query_row("SELECT settings FROM practice LIMIT 1", [], |r| r.get(0))
        .optional()?;
    Ok(raw
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default())
}

/// One partner.
pub fn partner(conn: &Connection, id: &str) -> Result<Option<Partner>> {
    one(conn, "SELECT data FROM partners WHERE id = ?1", id)
}

/// Turns what a person typed into an FTS5 query: every word must match, as a prefix.
pub fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| format!("\"{}\"*", t.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Partners matching a filter, ordered by name (or by relevance when searching).
pub fn partners(conn: &Connection, filter: &PartnerFilter) -> Result<Vec<Partner>> {
    let mut sql = String::from("SELECT p.data FROM partners p");
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let search = filter.search.as_deref().and_then(fts_query);
    if let Some(q) = &search {
        sql.push_str(" JOIN partners_fts f ON f.rowid = p.rid");
        clauses.push("partners_fts MATCH ?".into());
        args.push(Box::new(q.clone()));
    }
    if !filter.include_archived {
        clauses.push("p.archived = 0".into());
    }
    if let Some(kind) = filter.kind {
        clauses.push("p.kind = ?".into());
        args.push(Box::new(kind.code()));
    }
    if let Some(stream) = &filter.stream_id {
        clauses.push("p.stream_id = ?".into());
        args.push(Box::new(stream.clone()));
    }
    if let Some(status) = filter.status {
        clauses.push("p.status = ?".into());
        args.push(Box::new(status.code()));
    }
    if let Some(city) = &filter.city {
        clauses.push("p.city_key = ?".into());
        args.push(Box::new(name_key(city)));
    }
    if let Some(specialty) = &filter.specialty {
        clauses.push(
            "p.rid IN (SELECT partner_rid FROM partner_facets WHERE facet = 'specialty' AND value = ?)".into(),
        );
        args.push(Box::new(specialty.trim().to_ascii_lowercase()));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(if search.is_some() {
        " ORDER BY f.rank, p.name_key, p.id"
    } else {
        " ORDER BY p.archived, p.name_key, p.id"
    });
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    sql.push_str(" LIMIT ? OFFSET ?");
    args.push(Box::new(limit));
    args.push(Box::new(filter.offset.unwrap_or(0)));
    let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
    rows(conn, &sql, &refs)
}

/// Partners whose name starts with `prefix` (case-insensitive), for "id or name" arguments.
pub fn partners_by_name_prefix(
    conn: &Connection,
    prefix: &str,
    limit: u32,
) -> Result<Vec<Partner>> {
    let key = name_key(prefix);
    let upper = format!("{key}\u{10FFFF}");
    rows(
        conn,
        "SELECT data FROM partners WHERE archived = 0 AND name_key >= ?1 AND name_key < ?2 ORDER BY name_key, id LIMIT ?3",
        &[&key, &upper, &limit],
    )
}

/// Number of partners (not archived).
pub fn partner_count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM partners WHERE archived = 0",
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One member.
pub fn member(conn: &Connection, id: &str) -> Result<Option<Member>> {
    one(conn, "SELECT data FROM members WHERE id = ?1", id)
}

/// Every member, by name.
pub fn members(conn: &Connection) -> Result<Vec<Member>> {
    rows(
        conn,
        "SELECT data FROM members ORDER BY archived, display_name, id",
        &[],
    )
}

/// One stream.
pub fn stream(conn: &Connection, id: &str) -> Result<Option<Stream>> {
    one(conn, "SELECT data FROM streams WHERE id = ?1", id)
}

/// Every stream, by name.
pub fn streams(conn: &Connection) -> Result<Vec<Stream>> {
    rows(conn, "SELECT data FROM streams ORDER BY name, id", &[])
}

/// One touchpoint.
pub fn touchpoint(conn: &Connection, id: &str) -> Result<Option<Touchpoint>> {
    one(conn, "SELECT data FROM touchpoints WHERE id = ?1", id)
}

/// A partner's touchpoints, newest first.
pub fn touchpoints_of(conn: &Connection, partner_id: &str) -> Result<Vec<Touchpoint>> {
    rows(
        conn,
        "SELECT data FROM touchpoints WHERE partner_id = ?1 AND archived = 0 ORDER BY at DESC, id DESC",
        &[&partner_id],
    )
}

/// One referral.
pub fn referral(conn: &Connection, id: &str) -> Result<Option<Referral>> {
    one(conn, "SELECT data FROM referrals WHERE id = ?1", id)
}

/// A partner's referrals, newest first.
pub fn referrals_of(conn: &Connection, partner_id: &str) -> Result<Vec<Referral>> {
    rows(
        conn,
        "SELECT data FROM referrals WHERE partner_id = ?1 ORDER BY at DESC, id DESC",
        &[&partner_id],
    )
}

/// Every referral, newest first, one page.
pub fn referrals(conn: &Connection, limit: u32, offset: u32) -> Result<Vec<Referral>> {
    let limit = limit.clamp(1, MAX_LIMIT);
    rows(
        conn,
        "SELECT data FROM referrals ORDER BY at DESC, id DESC LIMIT ?1 OFFSET ?2",
        &[&limit, &offset],
    )
}

/// One follow-up.
pub fn followup(conn: &Connection, id: &str) -> Result<Option<Followup>> {
    one(conn, "SELECT data FROM followups WHERE id = ?1", id)
}

/// Follow-ups with a status, soonest due first.
pub fn followups(conn: &Connection, status: FollowupStatus) -> Result<Vec<Followup>> {
    rows(
        conn,
        "SELECT data FROM followups WHERE status = ?1 ORDER BY due, id",
        &[&status.code()],
    )
}

/// A partner's follow-ups, soonest first.
pub fn followups_of(conn: &Connection, partner_id: &str) -> Result<Vec<Followup>> {
    rows(
        conn,
        "SELECT data FROM followups WHERE partner_id = ?1 ORDER BY due, id",
        &[&partner_id],
    )
}

/// One personal note.
pub fn note(conn: &Connection, id: &str) -> Result<Option<Note>> {
    one(conn, "SELECT data FROM notes WHERE id = ?1", id)
}

/// Personal notes about a partner, newest first.
pub fn notes_of(conn: &Connection, partner_id: &str) -> Result<Vec<Note>> {
    rows(
        conn,
        "SELECT data FROM notes WHERE partner_id = ?1 AND archived = 0 ORDER BY at DESC, id DESC",
        &[&partner_id],
    )
}

/// Every row of the read model as text, table by table, in a stable order: two homes
/// with the same document produce the same dump. Used by tests and diagnostics.
pub fn dump(conn: &Connection) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (table, order) in [
        ("practice", "name"),
        ("members", "id"),
        ("streams", "id"),
        ("partners", "id"),
        ("partner_facets", "facet, value, partner_rid"),
        ("touchpoints", "id"),
        ("referrals", "id"),
        ("referral_concerns", "concern, referral_id"),
        ("followups", "id"),
        ("notes", "id"),
        ("partner_activity", "partner_id"),
    ] {
        let columns = match table {
            "practice" => "name, settings",
            "partners" => {
                "id, name_key, kind, stream_id, status, city_key, archived, accepting, telehealth, data"
            }
            "partner_facets" => "facet, value, (SELECT id FROM partners WHERE rid = partner_rid)",
            _ => "*",
        };
        let order = if table == "partner_facets" {
            "1, 2, 3"
        } else {
            order
        };
        let mut stmt = conn.prepare(&format!("SELECT {columns} FROM {table} ORDER BY {order}"))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let mut line = format!("{table}:");
            for i in 0..n {
                line.push_str(&format!(" {:?}", row.get_ref(i)?));
            }
            out.push(line);
        }
    }
    let mut fts = conn.prepare(
        "SELECT p.id, f.name, f.organization, f.place, f.facets, f.statements
         FROM partners_fts f JOIN partners p ON p.rid = f.rowid ORDER BY p.id",
    )?;
    let mut rows = fts.query([])?;
    while let Some(row) = rows.next()? {
        let cols: Vec<String> = (0..6).map(|i| format!("{:?}", row.get_ref(i))).collect();
        out.push(format!("fts: {}", cols.join(" ")));
    }
    Ok(out)
}

/// Checks that a name is free among streams (case-insensitive).
pub fn stream_by_name(conn: &Connection, name: &str) -> Result<Option<Stream>> {
    let all = streams(conn)?;
    Ok(all
        .into_iter()
        .find(|s| name_key(&s.name) == name_key(name)))
}

/// Number of rows in a table (for stats).
pub fn count(conn: &Connection, table: &str) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| {
        r.get(0)
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}
