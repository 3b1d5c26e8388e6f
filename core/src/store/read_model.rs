//! The read model: plain tables and a full-text index derived from the document.
//!
//! Updated in the same SQLite transaction as the chunk append, so the two can never drift
//! apart; rebuilt from the document when its recorded heads or projection version differ.

use automerge::{Automerge, ReadDoc};
use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::doc::{self, Collection, EntityRef, SpaceKind, project};
use crate::error::Result;
use crate::model::{EntityKind, Partner};

/// Version of the projection; bump it when a table or a derived column changes meaning,
/// and every home rebuilds its read model on next open.
pub const MODEL_VERSION: i64 = 4;

fn json<T: Serialize>(value: &T) -> Result<String> {
    // Serializing our own plain records cannot fail; map it anyway rather than panic.
    serde_json::to_string(value)
        .map_err(|e| crate::Error::Conflict(format!("encoding a record: {e}")))
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
    {
        match kind {
            EntityKind::Practice => upsert_practice(conn, doc, space_id)?,
            EntityKind::Member => match project::member(doc, id) {
                Some(m) => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO members (id, display_name, archived, data) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![m.id, m.display_name, m.archived, json(&m)?])?;
                }
                None => delete(conn, "members", id)?,
            },
            EntityKind::Stream => match project::stream(doc, id) {
                Some(s) => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO streams (id, name, data) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![s.id, s.name, json(&s)?])?;
                }
                None => delete(conn, "streams", id)?,
            },
            EntityKind::Partner => match project::partner(doc, id) {
                Some(p) => upsert_partner(conn, &p)?,
                None => delete_partner(conn, id)?,
            },
            EntityKind::Touchpoint => match project::touchpoint(doc, id) {
                Some(t) => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO touchpoints (id, partner_id, member_id, kind, at, outcome, archived, data)
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
                        json(&t)?
                    ])?;
                }
                None => delete(conn, "touchpoints", id)?,
            },
            EntityKind::Referral => {
                conn.prepare_cached("DELETE FROM referral_concerns WHERE referral_id = ?1")?
                    .execute([id])?;
                match project::referral(doc, id) {
                    Some(r) => {
                        conn.prepare_cached(
                            "INSERT OR REPLACE INTO referrals
                             (id, partner_id, member_id, direction, at, status, outcome, age_band, payer_category, modality, data)
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
                            json(&r)?
                        ])?;
                        let mut stmt = conn.prepare_cached(
                            "INSERT OR IGNORE INTO referral_concerns (concern, referral_id) VALUES (?1, ?2)",
                        )?;
                        for concern in &r.concerns {
                            stmt.execute(params![concern, r.id])?;
                        }
                    }
                    None => delete(conn, "referrals", id)?,
                }
            }
            EntityKind::Followup => match project::followup(doc, id) {
                Some(f) => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO followups (id, partner_id, member_id, due, status, data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![f.id, f.partner_id, f.member_id, f.due.to_string(), f.status.code(), json(&f)?])?;
                }
                None => delete(conn, "followups", id)?,
            },
            EntityKind::Note => match project::note(doc, id) {
                Some(n) => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO notes (id, partner_id, at, archived, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![n.id, n.partner_id, n.at.to_string(), n.archived, json(&n)?])?;
                }
                None => delete(conn, "notes", id)?,
            },
        }
    }
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

fn upsert_partner(conn: &Connection, p: &Partner) -> Result<()> {
    let rid: i64 = conn
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
                json(p)?,
                p.name
            ],
            |r| r.get(0),
        )?;
    conn.prepare_cached("DELETE FROM partner_facets WHERE partner_rid = ?1")?
        .execute([rid])?;
    conn.prepare_cached("DELETE FROM partners_fts WHERE rowid = ?1")?
        .execute([rid])?;
    let facets: [(&str, &Vec<String>); 6] = [
        ("specialty", &p.specialties),
        ("population", &p.populations),
        ("modality", &p.modalities),
        ("insurance", &p.insurance),
        ("language", &p.languages),
        ("tag", &p.tags),
    ];
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO partner_facets (facet, value, partner_rid) VALUES (?1, ?2, ?3)",
    )?;
    let mut words = Vec::new();
    for (facet, values) in facets {
        for value in values {
            stmt.execute(params![facet, value, rid])?;
            words.push(value.replace(['_', ':', '-'], " "));
        }
    }
    let place = [p.city.as_deref(), p.region.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let statements = format!("{}\n{}", p.ideal_client, p.how_we_met);
    conn.prepare_cached(
        "INSERT INTO partners_fts (rowid, name, organization, place, facets, statements) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        rid,
        format!("{} {}", p.name, p.credentials.as_deref().unwrap_or("")),
        p.organization.as_deref().unwrap_or(""),
        place,
        words.join(" "),
        statements
    ])?;
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

/// Drops and re-derives every row of a space from its document.
pub fn rebuild(conn: &Connection, doc: &Automerge, space_id: &str, kind: SpaceKind) -> Result<()> {
    let tables: &[&str] = match kind {
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
    };
    for table in tables {
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
