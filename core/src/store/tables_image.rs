//! A snapshot's SQLite image of the read model's large tables (the
//! [`BULK_COLLECTIONS`]): written by the device that seals a snapshot, checked by a joiner
//! on a connection of its own, then attached and copied record by record into its tables
//! by [`super::read_model::install`], without decoding a row.

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;

/// The collections [`super::read_model::install`] writes with one statement each (from
/// this image, or from JSON), in the order [`super::read_model::export`] writes them.
pub const BULK_COLLECTIONS: [&str; 3] = ["touchpoints", "referrals", "followups"];

/// The schema name under which [`with_tables`] attaches a snapshot's tables.
const SNAPSHOT_TABLES: &str = "snapshot_tables";

/// The definition of each of the [`BULK_COLLECTIONS`]' tables in this file.
fn bulk_definitions(conn: &Connection) -> Result<Vec<String>> {
    BULK_COLLECTIONS
        .iter()
        .map(|table| {
            Ok(conn.query_row(
                "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )?)
        })
        .collect()
}

/// Runs `f` with a temporary in-memory database attached as [`SNAPSHOT_TABLES`],
/// detaching it afterwards whatever `f` returns.
fn with_attached<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    conn.execute_batch(&format!("ATTACH ':memory:' AS {SNAPSHOT_TABLES}"))?;
    let result = f(conn);
    let detached = conn.execute_batch(&format!("DETACH {SNAPSHOT_TABLES}"));
    let value = result?;
    detached?;
    Ok(value)
}

/// The [`BULK_COLLECTIONS`]' tables of a practice's read model as an SQLite database
/// image: the same table definitions, no index. A joiner copies these pages' records
/// into its own tables without decoding them (SQLite's transfer optimization), which is
/// several times faster than writing the rows from JSON.
pub fn export_tables(conn: &mut Connection) -> Result<Vec<u8>> {
    let definitions = bulk_definitions(conn)?;
    with_attached(conn, |conn| {
        for (table, sql) in BULK_COLLECTIONS.iter().zip(&definitions) {
            let sql = sql.strip_prefix("CREATE TABLE ").ok_or_else(|| {
                crate::Error::Internal(format!(
                    "the definition of {table} is not a CREATE TABLE statement"
                ))
            })?;
            conn.execute_batch(&format!("CREATE TABLE {SNAPSHOT_TABLES}.{sql}"))?;
            conn.execute_batch(&format!(
                "INSERT INTO {SNAPSHOT_TABLES}.{table} SELECT * FROM main.{table}"
            ))?;
        }
        Ok(conn.serialize(SNAPSHOT_TABLES)?.to_vec())
    })
}

/// Checks a snapshot's tables image (from [`export_tables`]) attached, as [`with_tables`]
/// attaches it, to a connection of its own, so that nothing in it can touch the home's
/// (a database SQLite cannot read leaves every statement of the connection it is attached
/// to failing, the one that would detach it included). It must keep its text as UTF-8, as
/// every home does, hold exactly the [`BULK_COLLECTIONS`]' tables, defined exactly as
/// `definitions` (this file's), and be intact (SQLite's `quick_check`: every page, record
/// and `NOT NULL` column).
fn check_tables(image: &[u8], definitions: &[String]) -> Result<()> {
    let refused =
        |what: &str| crate::Error::Sync(format!("the snapshot's tables cannot be used: {what}"));
    let sqlite = |e: rusqlite::Error| refused(&e.to_string());
    let mut conn = Connection::open_in_memory().map_err(sqlite)?;
    conn.execute_batch(&format!("ATTACH ':memory:' AS {SNAPSHOT_TABLES}"))
        .map_err(sqlite)?;
    conn.deserialize_read_exact(SNAPSHOT_TABLES, image, image.len(), true)
        .map_err(sqlite)?;
    let encoding: String = conn
        .query_row(&format!("PRAGMA {SNAPSHOT_TABLES}.encoding"), [], |r| {
            r.get(0)
        })
        .map_err(sqlite)?;
    if encoding != "UTF-8" {
        return Err(refused(&format!(
            "its text encoding is {encoding}, not UTF-8"
        )));
    }
    let mut found = Vec::new();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM {SNAPSHOT_TABLES}.sqlite_schema"
        ))
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(sqlite)?;
    for (kind, name, table, sql) in rows {
        if kind != "table" || name != table {
            return Err(refused(&format!("it holds the {kind} {name}")));
        }
        found.push((name, sql));
    }
    found.sort();
    let mut wanted: Vec<(String, String)> = BULK_COLLECTIONS
        .iter()
        .map(|t| t.to_string())
        .zip(definitions.iter().cloned())
        .collect();
    wanted.sort();
    if found != wanted {
        return Err(refused("its tables are not the ones this device keeps"));
    }
    let check = texts(&conn, &format!("PRAGMA {SNAPSHOT_TABLES}.quick_check")).map_err(sqlite)?;
    if check != ["ok"] {
        return Err(refused(&check.join("; ")));
    }
    // `quick_check` lets a text or number column of an ordinary table hold a blob, which
    // none of these columns ever holds and which would leave the row unreadable.
    for table in BULK_COLLECTIONS {
        let columns = texts(
            &conn,
            &format!("SELECT name FROM {SNAPSHOT_TABLES}.pragma_table_info('{table}')"),
        )
        .map_err(sqlite)?;
        let any_blob = columns
            .iter()
            .map(|c| format!("typeof(\"{c}\") = 'blob'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let blob = conn
            .query_row(
                &format!("SELECT 1 FROM {SNAPSHOT_TABLES}.{table} WHERE {any_blob} LIMIT 1"),
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(sqlite)?;
        if blob.is_some() {
            return Err(refused(&format!("a row of {table} holds binary data")));
        }
    }
    Ok(())
}

/// The first column of every row `sql` returns, as text.
fn texts(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare(sql)?.query_map([], |r| r.get(0))?.collect()
}

/// Runs `f` with a snapshot's tables image (from [`export_tables`]), once checked, attached
/// for [`super::read_model::install`] to copy from; it is detached afterwards in every
/// case. Without an image, this is `f(conn)`.
pub fn with_tables<T>(
    conn: &mut Connection,
    image: Option<&[u8]>,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let Some(image) = image else {
        return f(conn);
    };
    check_tables(image, &bulk_definitions(conn)?)?;
    with_attached(conn, |conn| {
        // Writable only because an IMMEDIATE transaction opens a write transaction on
        // every attached database; nothing writes to it.
        conn.deserialize_read_exact(SNAPSHOT_TABLES, image, image.len(), false)?;
        f(conn)
    })
}

/// Copies the attached snapshot tables' records into the (emptied, index-free) bulk
/// tables: SQLite's transfer optimization moves each record as it is, in page order.
/// `SELECT *` also yields the computed `data`, so should the optimization not apply the
/// statement fails (one value too many) rather than quietly taking the slow path.
pub(super) fn copy_tables(conn: &Connection) -> Result<()> {
    for table in BULK_COLLECTIONS {
        conn.execute_batch(&format!(
            "INSERT INTO main.{table} SELECT * FROM {SNAPSHOT_TABLES}.{table}"
        ))
        .map_err(|e| crate::Error::Sync(format!("the snapshot's {table} cannot be copied: {e}")))?;
    }
    Ok(())
}
