//! The read model checked against its document, and repaired.
//!
//! A device that joins from a snapshot installs the read model from the snapshot's
//! records without projecting the document (what makes a join fast). The records are
//! sealed by a member, but a member's device can be faulty or hostile: records that say
//! something the document does not would show this device a practice its colleagues do
//! not have. So when the document is first loaded, [`repair`] projects it again and
//! compares every row: what differed is rebuilt from the document and named.

use std::collections::BTreeSet;

use automerge::Automerge;
use rusqlite::Connection;

use super::read_model;
use crate::doc::{EntityRef, SpaceKind};
use crate::error::Result;
use crate::model::EntityKind;

/// Each table of a space's read model as a query whose first column is the id of the
/// entity its row belongs to and whose other columns are everything the row says, with
/// the partners' row ids (which differ between two projections of the same document)
/// replaced by the partner's id.
fn views(conn: &Connection, kind: SpaceKind) -> Result<Vec<(EntityKind, String)>> {
    if kind != SpaceKind::Practice {
        return Ok(vec![(EntityKind::Note, "SELECT * FROM notes".into())]);
    }
    let partner_columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('partners') WHERE name != 'rid'")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let partner_columns = partner_columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(vec![
        (
            EntityKind::Practice,
            "SELECT '', name, settings FROM practice".into(),
        ),
        (EntityKind::Member, "SELECT * FROM members".into()),
        (EntityKind::Stream, "SELECT * FROM streams".into()),
        (
            EntityKind::Partner,
            format!("SELECT id, {partner_columns} FROM partners"),
        ),
        (
            EntityKind::Partner,
            "SELECT p.id, f.facet, f.value FROM partner_facets f \
             JOIN partners p ON p.rid = f.partner_rid"
                .into(),
        ),
        (
            EntityKind::Partner,
            "SELECT p.id, f.name, f.organization, f.place, f.facets, f.statements \
             FROM partners_fts f JOIN partners p ON p.rid = f.rowid"
                .into(),
        ),
        (EntityKind::Partner, "SELECT * FROM partner_activity".into()),
        (EntityKind::Touchpoint, "SELECT * FROM touchpoints".into()),
        (EntityKind::Referral, "SELECT * FROM referrals".into()),
        (
            EntityKind::Referral,
            "SELECT referral_id, concern FROM referral_concerns".into(),
        ),
        (EntityKind::Followup, "SELECT * FROM followups".into()),
    ])
}

/// Rebuilds a space's read model from `doc` and returns the entities whose rows were not
/// what the document says (empty when the read model was right). Runs inside the
/// caller's transaction.
pub fn repair(
    conn: &Connection,
    doc: &Automerge,
    space_id: &str,
    kind: SpaceKind,
) -> Result<Vec<EntityRef>> {
    let views = views(conn, kind)?;
    for (i, (_, view)) in views.iter().enumerate() {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.repair_{i}; CREATE TEMP TABLE repair_{i} AS {view};"
        ))?;
    }
    read_model::rebuild(conn, doc, space_id, kind)?;
    let mut wrong = BTreeSet::new();
    for (i, (entity, view)) in views.iter().enumerate() {
        for (a, b) in [
            (view.clone(), format!("SELECT * FROM temp.repair_{i}")),
            (format!("SELECT * FROM temp.repair_{i}"), view.clone()),
        ] {
            let mut stmt =
                conn.prepare(&format!("SELECT * FROM ({a}) EXCEPT SELECT * FROM ({b})"))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id = match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    _ => String::new(),
                };
                wrong.insert((*entity, id));
            }
        }
        conn.execute_batch(&format!("DROP TABLE temp.repair_{i};"))?;
    }
    Ok(wrong.into_iter().collect())
}
