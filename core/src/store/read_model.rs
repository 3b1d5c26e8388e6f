//! The read model: plain tables and a full-text index derived from the document.
//!
//! Updated in the same SQLite transaction as the chunk append, so the two can never drift
//! apart; rebuilt from the document when its recorded heads or projection version differ.

use automerge::{Automerge, ReadDoc};
use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::tables_image::BULK_COLLECTIONS;
use crate::doc::{self, Collection, EntityRef, SpaceKind, project};
use crate::error::Result;
use crate::model::{EntityKind, Followup, Member, Note, Partner, Referral, Stream, Touchpoint};

/// Version of the projection; bump it when a table or a derived column changes meaning,
/// and every home rebuilds its read model on next open.
pub const MODEL_VERSION: i64 = 4;

fn json<T: Serialize>(value: &T) -> Result<String> {
    // Serializing our own plain records cannot fail; map it anyway rather than panic.
    serde_json::to_string(value)
        .map_err(|e| crate::Error::Internal(format!("encoding a record: {e}")))
}

/// Brings the rows of the given entities in line with the document.
pub fn apply(conn: &Connection, doc: &Automerge, space_id: &str, refs: &[EntityRef]) -> Result<()> {
    // Partners whose activity summary must be recomputed: those a touched touchpoint or
    // referral pointed at before this change and after it.
    let mut affected: BTreeSet<String> = BTreeSet::new();
    if refs.len() > BULK_REFRESH {
        for (kind, id) in refs {
            apply_one(conn, doc, space_id, *kind, id)?;
        }
        return refresh_all_activity(conn);
    }
    for (kind, id) in refs {
        match kind {
            EntityKind::Touchpoint => affected.extend(partner_of(conn, "touchpoints", id)?),
            EntityKind::Referral => affected.extend(partner_of(conn, "referrals", id)?),
            _ => {}
        }
        apply_one(conn, doc, space_id, *kind, id)?;
        match kind {
            EntityKind::Touchpoint => affected.extend(partner_of(conn, "touchpoints", id)?),
            EntityKind::Referral => affected.extend(partner_of(conn, "referrals", id)?),
            _ => {}
        }
    }
    for partner_id in &affected {
        refresh_activity(conn, partner_id)?;
    }
    Ok(())
}

/// Past this many changed entities, the activity summary is recomputed in one pass.
const BULK_REFRESH: usize = 5_000;

/// Recomputes every partner's activity summary with two grouped scans.
fn refresh_all_activity(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "DELETE FROM partner_activity;
         INSERT INTO partner_activity
            (partner_id, first_touch, last_touch, first_inbound, last_referral, inbound, outbound)
         SELECT ids.partner_id, t.first_touch, t.last_touch, r.first_inbound, r.last_referral,
                COALESCE(r.inbound, 0), COALESCE(r.outbound, 0)
         FROM (SELECT partner_id FROM touchpoints UNION SELECT partner_id FROM referrals) ids
         LEFT JOIN (SELECT partner_id, min(at) AS first_touch, max(at) AS last_touch
                    FROM touchpoints WHERE archived = 0 GROUP BY partner_id) t ON t.partner_id = ids.partner_id
         LEFT JOIN (SELECT partner_id,
                           min(CASE WHEN direction = 'in' THEN at END) AS first_inbound,
                           max(at) AS last_referral,
                           sum(direction = 'in') AS inbound,
                           sum(direction = 'out') AS outbound
                    FROM referrals WHERE status != 'entered_in_error' GROUP BY partner_id) r
                ON r.partner_id = ids.partner_id;",
    )?;
    Ok(())
}

fn partner_of(conn: &Connection, table: &str, id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(&format!("SELECT partner_id FROM {table} WHERE id = ?1"))?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Recomputes one partner's activity summary from its touchpoints and referrals (indexed
/// by partner, so this reads only that partner's rows).
fn refresh_activity(conn: &Connection, partner_id: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO partner_activity
            (partner_id, first_touch, last_touch, first_inbound, last_referral, inbound, outbound)
         SELECT ?1,
            (SELECT min(at) FROM touchpoints WHERE partner_id = ?1 AND archived = 0),
            (SELECT max(at) FROM touchpoints WHERE partner_id = ?1 AND archived = 0),
            (SELECT min(at) FROM referrals WHERE partner_id = ?1 AND direction = 'in' AND status != 'entered_in_error'),
            (SELECT max(at) FROM referrals WHERE partner_id = ?1 AND status != 'entered_in_error'),
            (SELECT count(*) FROM referrals WHERE partner_id = ?1 AND direction = 'in' AND status != 'entered_in_error'),
            (SELECT count(*) FROM referrals WHERE partner_id = ?1 AND direction = 'out' AND status != 'entered_in_error')",
    )?
    .execute([partner_id])?;
    Ok(())
}

fn apply_one(
    conn: &Connection,
    doc: &Automerge,
    space_id: &str,
    kind: EntityKind,
    id: &str,
) -> Result<()> {
    match kind {
        EntityKind::Practice => upsert_practice(conn, doc, space_id),
        EntityKind::Member => match project::member(doc, id) {
            Some(m) => put_member(conn, &m),
            None => delete(conn, "members", id),
        },
        EntityKind::Stream => match project::stream(doc, id) {
            Some(s) => put_stream(conn, &s),
            None => delete(conn, "streams", id),
        },
        EntityKind::Partner => match project::partner(doc, id) {
            Some(p) => upsert_partner(conn, &p, &json(&p)?),
            None => delete_partner(conn, id),
        },
        EntityKind::Touchpoint => match project::touchpoint(doc, id) {
            Some(t) => put_touchpoint(conn, &t),
            None => delete(conn, "touchpoints", id),
        },
        EntityKind::Referral => {
            conn.prepare_cached("DELETE FROM referral_concerns WHERE referral_id = ?1")?
                .execute([id])?;
            match project::referral(doc, id) {
                Some(r) => put_referral(conn, &r),
                None => delete(conn, "referrals", id),
            }
        }
        EntityKind::Followup => match project::followup(doc, id) {
            Some(f) => put_followup(conn, &f),
            None => delete(conn, "followups", id),
        },
        EntityKind::Note => match project::note(doc, id) {
            Some(n) => put_note(conn, &n, &json(&n)?),
            None => delete(conn, "notes", id),
        },
    }
}

/// Writes a member's row.
pub(crate) fn put_member(conn: &Connection, m: &Member) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO members (id, display_name, archived, data) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![m.id, m.display_name, m.archived, json(m)?])?;
    Ok(())
}

fn put_stream(conn: &Connection, s: &Stream) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO streams (id, name, data) VALUES (?1, ?2, ?3)")?
        .execute(params![s.id, s.name, json(s)?])?;
    Ok(())
}

fn put_touchpoint(conn: &Connection, t: &Touchpoint) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO touchpoints (id, partner_id, member_id, kind, at, outcome, archived, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        t.id,
        t.partner_id,
        t.member_id,
        t.kind.code(),
        t.at.to_string(),
        t.outcome.map(|o| o.code()),
        t.archived,
        t.note
    ])?;
    Ok(())
}

/// Writes a referral's row and its concerns (the caller has cleared older concerns).
fn put_referral(conn: &Connection, r: &Referral) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO referrals
         (id, partner_id, member_id, direction, at, status, outcome, age_band, payer_category, modality, concerns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        r.id,
        r.partner_id,
        r.member_id,
        r.direction.code(),
        r.at.to_string(),
        r.status.code(),
        r.outcome.map(|o| o.code()),
        r.age_band.map(|a| a.code()),
        r.payer_category.map(|p| p.code()),
        r.modality,
        json(&r.concerns)?
    ])?;
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO referral_concerns (concern, referral_id) VALUES (?1, ?2)",
    )?;
    for concern in &r.concerns {
        stmt.execute(params![concern, r.id])?;
    }
    Ok(())
}

fn put_followup(conn: &Connection, f: &Followup) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO followups
         (id, partner_id, member_id, due, status, done_at, cadence_days, reason, snoozed, auto, attempt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        f.id,
        f.partner_id,
        f.member_id,
        f.due.to_string(),
        f.status.code(),
        f.done_at.map(|d| d.to_string()),
        f.cadence_days,
        f.reason,
        f.snoozed,
        f.auto,
        f.attempt
    ])?;
    Ok(())
}

fn put_note(conn: &Connection, n: &Note, data: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO notes (id, partner_id, at, archived, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![n.id, n.partner_id, n.at.to_string(), n.archived, data])?;
    Ok(())
}

fn delete(conn: &Connection, table: &str, id: &str) -> Result<()> {
    conn.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?
        .execute([id])?;
    Ok(())
}

fn upsert_practice(conn: &Connection, doc: &Automerge, space_id: &str) -> Result<()> {
    let Some(name) = project::practice_name(doc) else {
        return Ok(());
    };
    let settings = doc::collection(doc, Collection::Settings)
        .ok()
        .map(|s| {
            let map: serde_json::Map<String, serde_json::Value> = doc
                .keys(&s)
                .filter_map(|k| doc::fields::get_str(doc, &s, &k).map(|v| (k, v.into())))
                .collect();
            serde_json::Value::Object(map).to_string()
        })
        .unwrap_or_else(|| "{}".to_string());
    conn.prepare_cached(
        "INSERT OR REPLACE INTO practice (space_id, name, settings) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![space_id, name, settings])?;
    Ok(())
}

/// The lower-cased key partners are sorted and prefix-matched by.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

fn upsert_partner(conn: &Connection, p: &Partner, data: &str) -> Result<()> {
    let rid = write_partner_row(conn, p, data)?;
    conn.prepare_cached("DELETE FROM partner_facets WHERE partner_rid = ?1")?
        .execute([rid])?;
    conn.prepare_cached("DELETE FROM partners_fts WHERE rowid = ?1")?
        .execute([rid])?;
    write_facets(conn, rid, p)?;
    let [name, organization, place, facets, statements] = full_text(p);
    conn.prepare_cached(
        "INSERT INTO partners_fts (rowid, name, organization, place, facets, statements) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![rid, name, organization, place, facets, statements])?;
    Ok(())
}

/// Writes a partner's row (inserted or updated in place) and returns its rowid.
fn write_partner_row(conn: &Connection, p: &Partner, data: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO partners (id, name_key, kind, stream_id, status, city_key, archived, accepting,
             telehealth, created_at, data, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key, kind = excluded.kind,
             stream_id = excluded.stream_id, status = excluded.status, city_key = excluded.city_key,
             archived = excluded.archived, accepting = excluded.accepting,
             telehealth = excluded.telehealth, created_at = excluded.created_at, data = excluded.data
             RETURNING rid",
        )?
        .query_row(
            params![
                p.id,
                name_key(&p.name),
                p.kind.code(),
                p.stream_id,
                p.status.code(),
                p.city.as_deref().map(name_key),
                p.archived,
                p.accepting,
                p.telehealth,
                p.created_at,
                data,
                p.name
            ],
            |r| r.get(0),
        )?)
}

/// A partner's facet values, by facet.
fn facets(p: &Partner) -> [(&'static str, &Vec<String>); 6] {
    [
        ("specialty", &p.specialties),
        ("population", &p.populations),
        ("modality", &p.modalities),
        ("insurance", &p.insurance),
        ("language", &p.languages),
        ("tag", &p.tags),
    ]
}

fn write_facets(conn: &Connection, rid: i64, p: &Partner) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO partner_facets (facet, value, partner_rid) VALUES (?1, ?2, ?3)",
    )?;
    for (facet, values) in facets(p) {
        for value in values {
            stmt.execute(params![facet, value, rid])?;
        }
    }
    Ok(())
}

/// A partner's full-text columns: name, organization, place, facet words, statements.
fn full_text(p: &Partner) -> [String; 5] {
    let words = facets(p)
        .into_iter()
        .flat_map(|(_, values)| values.iter().map(|v| v.replace(['_', ':', '-'], " ")))
        .collect::<Vec<_>>()
        .join(" ");
    let place = [p.city.as_deref(), p.region.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    [
        format!("{} {}", p.name, p.credentials.as_deref().unwrap_or("")),
        p.organization.clone().unwrap_or_default(),
        place,
        words,
        format!("{}\n{}", p.ideal_client, p.how_we_met),
    ]
}

/// Writes the partners of a snapshot into an emptied read model. Their full-text entries
/// go in with one statement: FTS5 writes its pending entries out at every statement
/// that changes it, so one statement per partner would build (and merge) thousands of
/// one-entry segments.
fn install_partners(conn: &Connection, raws: &[Box<RawValue>]) -> Result<()> {
    let mut entries = Vec::with_capacity(raws.len());
    each(raws, |p: &Partner, data| {
        let rid = write_partner_row(conn, p, data)?;
        write_facets(conn, rid, p)?;
        let [name, organization, place, facets, statements] = full_text(p);
        entries.push(serde_json::json!([
            rid,
            name,
            organization,
            place,
            facets,
            statements
        ]));
        Ok(())
    })?;
    conn.execute(
        "INSERT INTO partners_fts (rowid, name, organization, place, facets, statements)
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5
         FROM json_each(?1)",
        [serde_json::Value::Array(entries).to_string()],
    )?;
    Ok(())
}

fn delete_partner(conn: &Connection, id: &str) -> Result<()> {
    let rid: Option<i64> = conn
        .prepare_cached("SELECT rid FROM partners WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .ok();
    if let Some(rid) = rid {
        conn.execute("DELETE FROM partner_facets WHERE partner_rid = ?1", [rid])?;
        conn.execute("DELETE FROM partners_fts WHERE rowid = ?1", [rid])?;
        conn.execute("DELETE FROM partners WHERE rid = ?1", [rid])?;
    }
    Ok(())
}

/// Every entity of a space, as refs.
pub fn all_refs(doc: &Automerge, kind: SpaceKind) -> Vec<EntityRef> {
    let mut refs = vec![];
    if kind == SpaceKind::Practice {
        refs.push((EntityKind::Practice, String::new()));
    }
    for coll in kind.collections() {
        if *coll == Collection::Settings {
            continue;
        }
        if let Ok(obj) = doc::collection(doc, *coll) {
            refs.extend(doc.keys(&obj).map(|id| (coll.entity(), id)));
        }
    }
    refs
}

/// The read-model tables that hold a space's rows.
fn tables_of(kind: SpaceKind) -> &'static [&'static str] {
    match kind {
        SpaceKind::Practice => &[
            "practice",
            "members",
            "streams",
            "partner_facets",
            "partners_fts",
            "partners",
            "touchpoints",
            "referral_concerns",
            "referrals",
            "followups",
        ],
        SpaceKind::Personal => &["notes"],
    }
}

/// Drops and re-derives every row of a space from its document.
pub fn rebuild(conn: &Connection, doc: &Automerge, space_id: &str, kind: SpaceKind) -> Result<()> {
    for table in tables_of(kind) {
        conn.execute(&format!("DELETE FROM {table}"), [])?;
    }
    let refs = all_refs(doc, kind);
    for (entity, id) in &refs {
        apply_one(conn, doc, space_id, *entity, id)?;
    }
    if kind == SpaceKind::Practice {
        refresh_all_activity(conn)?;
    }
    Ok(())
}

/// The entity records of a space's read model: what a snapshot carries so that a joining
/// device can install the read model without loading and projecting the document.
#[derive(Debug, Default, Deserialize)]
pub struct Records {
    /// The projection version the records were written by; installing needs the same.
    pub model_version: i64,
    /// The practice's name and settings (practice space only).
    #[serde(default)]
    pub practice: Option<PracticeRecord>,
    /// Members.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Referral streams.
    #[serde(default)]
    pub streams: Vec<Stream>,
    /// Partners.
    #[serde(default)]
    pub partners: Vec<Box<RawValue>>,
    /// Touchpoints.
    #[serde(default)]
    pub touchpoints: Option<JsonText>,
    /// Referrals.
    #[serde(default)]
    pub referrals: Option<JsonText>,
    /// Follow-ups.
    #[serde(default)]
    pub followups: Option<JsonText>,
    /// Personal notes (personal space only).
    #[serde(default)]
    pub notes: Vec<Box<RawValue>>,
    /// The [`BULK_COLLECTIONS`]' tables as an SQLite database image (from
    /// [`super::tables_image::export_tables`]), when the snapshot carries them that way instead of as JSON.
    #[serde(skip)]
    pub tables: Option<Vec<u8>>,
}

/// A collection's records as the text of one JSON array, handed to SQLite as it is
/// (SQLite parses it, and refuses it if it is not JSON).
#[derive(Debug)]
pub struct JsonText(pub String);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: &RawValue = Deserialize::deserialize(deserializer)?;
        Ok(JsonText(raw.get().to_owned()))
    }
}

/// A space's read model as [`export`] writes it: the JSON of [`Records`], and where each
/// of the [`BULK_COLLECTIONS`] arrays starts and ends in it (a practice's only).
#[derive(Debug)]
pub struct Export {
    /// The JSON text.
    pub json: Vec<u8>,
    /// Byte ranges of the bulk collections' arrays, in order.
    pub bulk: Vec<std::ops::Range<usize>>,
}

/// The practice row of the read model.
#[derive(Debug, Deserialize)]
pub struct PracticeRecord {
    /// The practice's name.
    pub name: String,
    /// Its settings, as stored.
    pub settings: serde_json::Value,
}

/// The collections of a space's records, each with the table that holds its JSON.
fn record_tables(kind: SpaceKind) -> &'static [&'static str] {
    match kind {
        SpaceKind::Practice => &[
            "members",
            "streams",
            "partners",
            "touchpoints",
            "referrals",
            "followups",
        ],
        SpaceKind::Personal => &["notes"],
    }
}

/// Writes a space's read model as the JSON of [`Records`]. Each row already stores its
/// record's JSON, so this copies text and parses nothing. Only the tables of `kind` are
/// read: a practice export never contains a personal note. With `bulk_as_json` false the
/// [`BULK_COLLECTIONS`] are left out, for [`super::tables_image::export_tables`] to carry.
pub fn export(
    conn: &Connection,
    space_id: &str,
    kind: SpaceKind,
    bulk_as_json: bool,
) -> Result<Export> {
    let mut out = format!("{{\"model_version\":{MODEL_VERSION}");
    if kind == SpaceKind::Practice {
        let practice: Option<(String, String)> = conn
            .query_row(
                "SELECT name, settings FROM practice WHERE space_id = ?1",
                [space_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((name, settings)) = practice {
            out.push_str(",\"practice\":{\"name\":");
            out.push_str(&json(&name)?);
            out.push_str(",\"settings\":");
            out.push_str(&settings);
            out.push('}');
        }
    }
    let mut bulk = Vec::new();
    for table in record_tables(kind) {
        if !bulk_as_json && BULK_COLLECTIONS.contains(table) {
            continue;
        }
        out.push_str(&format!(",\"{table}\":"));
        let start = out.len();
        out.push('[');
        let mut stmt = conn.prepare(&format!("SELECT data FROM {table}"))?;
        let mut rows = stmt.query([])?;
        let mut first = true;
        while let Some(row) = rows.next()? {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?);
        }
        out.push(']');
        if BULK_COLLECTIONS.contains(table) {
            bulk.push(start..out.len());
        }
    }
    out.push('}');
    Ok(Export {
        json: out.into_bytes(),
        bulk,
    })
}

/// The page cache while installing a snapshot's read model, in KiB.
const INSTALL_CACHE_KIB: i64 = 256 * 1024;

/// The tables whose indexes [`install`] creates once their rows are in.
const REINDEXED_TABLES: [&str; 6] = [
    "partners",
    "partner_facets",
    "touchpoints",
    "referrals",
    "referral_concerns",
    "followups",
];

/// The name and definition of each index on `tables` other than those of their primary
/// keys and unique constraints (which SQLite makes itself and which cannot be dropped).
fn secondary_indexes(conn: &Connection, tables: &[&str]) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT name, sql FROM sqlite_schema
         WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = ?1 ORDER BY name",
    )?;
    let mut indexes = Vec::new();
    for table in tables {
        let rows = stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            indexes.push(row?);
        }
    }
    Ok(indexes)
}

/// Parses each record and writes it with its JSON as received (it is what the sender
/// stored, so it is not encoded again).
fn each<T: serde::de::DeserializeOwned>(
    raws: &[Box<RawValue>],
    mut put: impl FnMut(&T, &str) -> Result<()>,
) -> Result<()> {
    for raw in raws {
        let record: T = serde_json::from_str(raw.get()).map_err(|e| {
            crate::Error::Sync(format!(
                "a record in the snapshot's read model is malformed: {e}"
            ))
        })?;
        put(&record, raw.get())?;
    }
    Ok(())
}

/// Replaces a space's read model with `records` (from [`export`] on another device, at
/// the document heads the caller records beside them).
pub fn install(
    conn: &Connection,
    space_id: &str,
    kind: SpaceKind,
    records: &Records,
) -> Result<()> {
    for table in tables_of(kind) {
        conn.execute(&format!("DELETE FROM {table}"), [])?;
    }
    if let Some(practice) = &records.practice {
        conn.execute(
            "INSERT OR REPLACE INTO practice (space_id, name, settings) VALUES (?1, ?2, ?3)",
            params![space_id, practice.name, practice.settings.to_string()],
        )?;
    }
    // The whole read model is written in one transaction: a large page cache keeps the
    // index pages in memory until the commit instead of spilling them as they change.
    conn.execute_batch(&format!("PRAGMA cache_size = -{INSTALL_CACHE_KIB}"))?;
    // The bulk-loaded tables' secondary indexes are created again once their rows are
    // in: SQLite then sorts each index's keys once and writes its pages in order, instead
    // of inserting 100,000 keys one by one at random places (about a quarter less time).
    // The definitions are the ones this file holds, so the indexes come back exactly as
    // the migrations made them; all of it is inside the caller's transaction.
    let indexes = if kind == SpaceKind::Practice {
        secondary_indexes(conn, &REINDEXED_TABLES)?
    } else {
        Vec::new()
    };
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    let result = (|| {
        for m in &records.members {
            put_member(conn, m)?;
        }
        for s in &records.streams {
            put_stream(conn, s)?;
        }
        install_partners(conn, &records.partners)?;
        // The three large collections go in one statement each, SQLite reading the JSON
        // itself (as JSONB, so each field is not parsed again): about 10 % faster than a
        // statement per row. The columns are the codes the records hold, as
        // `put_touchpoint`, `put_referral` and `put_followup` write them; a test compares
        // the installed rows with projected ones.
        let bulk = |array: &Option<JsonText>, sql: &str| -> Result<()> {
            if let Some(array) = array {
                conn.execute(sql, [&array.0]).map_err(|e| {
                    if e.to_string().contains("JSON") {
                        crate::Error::Sync(format!(
                            "a collection in the snapshot's read model is malformed: {e}"
                        ))
                    } else {
                        e.into()
                    }
                })?;
            }
            Ok(())
        };
        if records.tables.is_some() {
            super::tables_image::copy_tables(conn)?;
        }
        bulk(
            &records.touchpoints,
            "INSERT INTO touchpoints (id, partner_id, member_id, kind, at, outcome, archived, note)
             SELECT value->>'id', value->>'partner_id', value->>'member_id', value->>'kind',
                    value->>'at', value->>'outcome', value->>'archived', value->>'note'
             FROM jsonb_each(?1)",
        )?;
        bulk(
            &records.referrals,
            "INSERT INTO referrals
             (id, partner_id, member_id, direction, at, status, outcome, age_band, payer_category, modality, concerns)
             SELECT value->>'id', value->>'partner_id', value->>'member_id', value->>'direction',
                    value->>'at', value->>'status', value->>'outcome', value->>'age_band',
                    value->>'payer_category', value->>'modality', json(value->'concerns')
             FROM jsonb_each(?1)",
        )?;
        // From the rows just written: each referral's short concerns array is parsed
        // again, not the whole collection.
        conn.execute(
            "INSERT OR IGNORE INTO referral_concerns (concern, referral_id)
             SELECT concern.value, referrals.id
             FROM referrals, json_each(referrals.concerns) AS concern",
            [],
        )?;
        bulk(
            &records.followups,
            "INSERT INTO followups
             (id, partner_id, member_id, due, status, done_at, cadence_days, reason, snoozed, auto, attempt)
             SELECT value->>'id', value->>'partner_id', value->>'member_id', value->>'due',
                    value->>'status', value->>'done_at', value->>'cadence_days', value->>'reason',
                    value->>'snoozed', value->>'auto', value->>'attempt'
             FROM jsonb_each(?1)",
        )?;
        each(&records.notes, |n: &Note, data| put_note(conn, n, data))?;
        for (_, sql) in &indexes {
            conn.execute_batch(sql)?;
        }
        Ok::<(), crate::Error>(())
    })();
    conn.execute_batch(&format!("PRAGMA cache_size = {}", crate::store::CACHE_SIZE))?;
    result?;
    if kind == SpaceKind::Practice {
        refresh_all_activity(conn)?;
    }
    Ok(())
}
