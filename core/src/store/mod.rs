//! The home's SQLite file: schema, migrations, and the connection settings.
//!
//! One file per device home, WAL mode, one writer. Migrations run by `user_version` inside
//! an IMMEDIATE transaction; a file from a newer Rapport is refused before anything is
//! written to it.

pub mod chunks;
pub mod queries;
pub mod read_model;
pub mod repair;
mod schema;
pub mod tables_image;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

/// Migrations in order; migration `i` brings the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: identity, spaces, chunk log, read model and full-text index.
    r#"
    CREATE TABLE home (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE spaces (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        doc_heads BLOB NOT NULL,
        model_heads BLOB NOT NULL,
        model_version INTEGER NOT NULL,
        schema INTEGER NOT NULL
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        space_id TEXT NOT NULL REFERENCES spaces(id),
        snapshot INTEGER NOT NULL,
        bytes BLOB NOT NULL
    );
    CREATE INDEX chunks_by_space ON chunks(space_id, id);

    CREATE TABLE practice (space_id TEXT PRIMARY KEY, name TEXT NOT NULL, settings TEXT NOT NULL);
    CREATE TABLE members (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, archived INTEGER NOT NULL, data TEXT NOT NULL);
    CREATE TABLE streams (id TEXT PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL);
    CREATE TABLE partners (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        stream_id TEXT,
        status TEXT NOT NULL,
        city_key TEXT,
        archived INTEGER NOT NULL,
        accepting INTEGER NOT NULL,
        telehealth INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX partners_by_name ON partners(archived, name_key, id);
    CREATE INDEX partners_by_stream ON partners(stream_id);
    CREATE TABLE partner_facets (
        facet TEXT NOT NULL,
        value TEXT NOT NULL,
        partner_rid INTEGER NOT NULL,
        PRIMARY KEY (facet, value, partner_rid)
    ) WITHOUT ROWID;
    CREATE INDEX partner_facets_by_partner ON partner_facets(partner_rid);
    CREATE VIRTUAL TABLE partners_fts USING fts5(
        name, organization, place, facets, statements,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE touchpoints (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT,
        archived INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX touchpoints_by_partner ON touchpoints(partner_id, at);
    CREATE INDEX touchpoints_by_day ON touchpoints(at);
    CREATE TABLE referrals (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        at TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        age_band TEXT,
        payer_category TEXT,
        modality TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX referrals_by_partner ON referrals(partner_id, at);
    CREATE INDEX referrals_by_day ON referrals(at);
    CREATE TABLE referral_concerns (
        concern TEXT NOT NULL,
        referral_id TEXT NOT NULL,
        PRIMARY KEY (concern, referral_id)
    ) WITHOUT ROWID;
    CREATE INDEX referral_concerns_by_referral ON referral_concerns(referral_id);
    CREATE TABLE followups (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        due TEXT NOT NULL,
        status TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX followups_by_status ON followups(status, due);
    CREATE INDEX followups_by_partner ON followups(partner_id);
    CREATE TABLE notes (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        at TEXT NOT NULL,
        archived INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX notes_by_partner ON notes(partner_id, at);
    "#,
    // 2: per-space sync state (relay cursor, heads the relay acknowledged, key epoch).
    r#"
    CREATE TABLE sync_state (
        space_id TEXT PRIMARY KEY REFERENCES spaces(id),
        relay_cursor INTEGER NOT NULL DEFAULT 0,
        acked_heads BLOB NOT NULL DEFAULT x'',
        key_epoch INTEGER NOT NULL DEFAULT 0,
        last_sync_at INTEGER
    );
    "#,
    // 3: what the insights read: a per-partner activity summary, partner names as a
    //    column, and covering indexes so that no insight reads JSON rows.
    r#"
    CREATE TABLE partner_activity (
        partner_id TEXT PRIMARY KEY,
        first_touch TEXT,
        last_touch TEXT,
        first_inbound TEXT,
        last_referral TEXT,
        inbound INTEGER NOT NULL,
        outbound INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX partner_activity_by_first_touch ON partner_activity(first_touch);
    ALTER TABLE partners ADD COLUMN name TEXT NOT NULL DEFAULT '';
    CREATE INDEX partners_lean ON partners(
        archived, id, name, status, created_at, stream_id, accepting, telehealth, city_key
    );
    CREATE INDEX partners_by_id ON partners(id, stream_id, name, archived);
    DROP INDEX referrals_by_day;
    CREATE INDEX referrals_by_day ON referrals(at, direction, status, partner_id, member_id);
    DROP INDEX referrals_by_partner;
    CREATE INDEX referrals_by_partner ON referrals(partner_id, direction, status, at);
    CREATE INDEX referrals_by_direction_day ON referrals(direction, at, status, partner_id);
    CREATE INDEX referrals_by_member ON referrals(member_id, direction, status, at);
    DROP INDEX touchpoints_by_partner;
    CREATE INDEX touchpoints_by_partner ON touchpoints(partner_id, archived, at);
    "#,
    // 4: the relay this home syncs through and each space's keys by epoch (secret).
    r#"
    CREATE TABLE relay (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        addr TEXT NOT NULL,
        fingerprint BLOB NOT NULL
    );
    CREATE TABLE space_keys (
        space_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        key BLOB NOT NULL,
        PRIMARY KEY (space_id, epoch)
    );
    "#,
    // 5: touchpoints, referrals and follow-ups keep every field in a column and no longer
    //    store their record's JSON beside them: `data` is computed from the columns when
    //    read (a virtual column). About a third less to write and keep (the large
    //    practice's file: 170 MB before), which is most of what joining costs.
    r#"
    CREATE TABLE touchpoints_v5 (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT,
        archived INTEGER NOT NULL,
        note TEXT NOT NULL,
        data TEXT GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id, 'kind', kind,
            'at', at, 'outcome', outcome, 'note', note,
            'archived', json(iif(archived, 'true', 'false'))
        )) VIRTUAL
    );
    INSERT INTO touchpoints_v5 (id, partner_id, member_id, kind, at, outcome, archived, note)
        SELECT id, partner_id, member_id, kind, at, outcome, archived,
               coalesce(json_extract(data, '$.note'), '')
        FROM touchpoints;
    DROP TABLE touchpoints;
    ALTER TABLE touchpoints_v5 RENAME TO touchpoints;
    CREATE INDEX touchpoints_by_partner ON touchpoints(partner_id, archived, at);
    CREATE INDEX touchpoints_by_day ON touchpoints(at);

    CREATE TABLE referrals_v5 (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        at TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        age_band TEXT,
        payer_category TEXT,
        modality TEXT,
        concerns TEXT NOT NULL,
        data TEXT GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id,
            'direction', direction, 'at', at, 'concerns', json(concerns),
            'age_band', age_band, 'payer_category', payer_category, 'modality', modality,
            'status', status, 'outcome', outcome
        )) VIRTUAL
    );
    INSERT INTO referrals_v5 (id, partner_id, member_id, direction, at, status, outcome,
                              age_band, payer_category, modality, concerns)
        SELECT id, partner_id, member_id, direction, at, status, outcome, age_band,
               payer_category, modality, coalesce(json_extract(data, '$.concerns'), '[]')
        FROM referrals;
    DROP TABLE referrals;
    ALTER TABLE referrals_v5 RENAME TO referrals;
    CREATE INDEX referrals_by_day ON referrals(at, direction, status, partner_id, member_id);
    CREATE INDEX referrals_by_partner ON referrals(partner_id, direction, status, at);
    CREATE INDEX referrals_by_direction_day ON referrals(direction, at, status, partner_id);
    CREATE INDEX referrals_by_member ON referrals(member_id, direction, status, at);

    CREATE TABLE followups_v5 (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        due TEXT NOT NULL,
        status TEXT NOT NULL,
        done_at TEXT,
        cadence_days INTEGER,
        reason TEXT NOT NULL,
        snoozed INTEGER NOT NULL,
        auto INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        data TEXT GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id, 'due', due,
            'done_at', done_at, 'cadence_days', cadence_days, 'reason', reason,
            'status', status, 'snoozed', snoozed,
            'auto', json(iif(auto, 'true', 'false')), 'attempt', attempt
        )) VIRTUAL
    );
    INSERT INTO followups_v5 (id, partner_id, member_id, due, status, done_at, cadence_days,
                              reason, snoozed, auto, attempt)
        SELECT id, partner_id, member_id, due, status, json_extract(data, '$.done_at'),
               json_extract(data, '$.cadence_days'),
               coalesce(json_extract(data, '$.reason'), ''),
               coalesce(json_extract(data, '$.snoozed'), 0),
               coalesce(json_extract(data, '$.auto'), 0),
               coalesce(json_extract(data, '$.attempt'), 0)
        FROM followups;
    DROP TABLE followups;
    ALTER TABLE followups_v5 RENAME TO followups;
    CREATE INDEX followups_by_status ON followups(status, due);
    CREATE INDEX followups_by_partner ON followups(partner_id);
    "#,
    // 6: touchpoints, referrals and follow-ups key their rows by a unique index on `id`
    //    instead of a text primary key (the same constraint and lookups, but an index a
    //    join can drop and build again). With no index left on them, a table that a
    //    snapshot carries as SQLite pages is copied in page order, record by record
    //    without decoding any (SQLite's transfer optimization): the bulk of a join. Their
    //    computed `data` has no declared type, so that checking a snapshot's copy of these
    //    tables (`quick_check`) does not compute it for every row: it is text either way.
    r#"
    CREATE TABLE touchpoints_v6 (
        id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT,
        archived INTEGER NOT NULL,
        note TEXT NOT NULL,
        data GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id, 'kind', kind,
            'at', at, 'outcome', outcome, 'note', note,
            'archived', json(iif(archived, 'true', 'false'))
        )) VIRTUAL
    );
    INSERT INTO touchpoints_v6 (id, partner_id, member_id, kind, at, outcome, archived, note)
        SELECT id, partner_id, member_id, kind, at, outcome, archived, note
        FROM touchpoints;
    DROP TABLE touchpoints;
    ALTER TABLE touchpoints_v6 RENAME TO touchpoints;
    CREATE UNIQUE INDEX touchpoints_by_id ON touchpoints(id);
    CREATE INDEX touchpoints_by_partner ON touchpoints(partner_id, archived, at);
    CREATE INDEX touchpoints_by_day ON touchpoints(at);

    CREATE TABLE referrals_v6 (
        id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        at TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        age_band TEXT,
        payer_category TEXT,
        modality TEXT,
        concerns TEXT NOT NULL,
        data GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id,
            'direction', direction, 'at', at, 'concerns', json(concerns),
            'age_band', age_band, 'payer_category', payer_category, 'modality', modality,
            'status', status, 'outcome', outcome
        )) VIRTUAL
    );
    INSERT INTO referrals_v6 (id, partner_id, member_id, direction, at, status, outcome,
                              age_band, payer_category, modality, concerns)
        SELECT id, partner_id, member_id, direction, at, status, outcome,
               age_band, payer_category, modality, concerns
        FROM referrals;
    DROP TABLE referrals;
    ALTER TABLE referrals_v6 RENAME TO referrals;
    CREATE UNIQUE INDEX referrals_by_id ON referrals(id);
    CREATE INDEX referrals_by_day ON referrals(at, direction, status, partner_id, member_id);
    CREATE INDEX referrals_by_partner ON referrals(partner_id, direction, status, at);
    CREATE INDEX referrals_by_direction_day ON referrals(direction, at, status, partner_id);
    CREATE INDEX referrals_by_member ON referrals(member_id, direction, status, at);

    CREATE TABLE followups_v6 (
        id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        due TEXT NOT NULL,
        status TEXT NOT NULL,
        done_at TEXT,
        cadence_days INTEGER,
        reason TEXT NOT NULL,
        snoozed INTEGER NOT NULL,
        auto INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        data GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id, 'due', due,
            'done_at', done_at, 'cadence_days', cadence_days, 'reason', reason,
            'status', status, 'snoozed', snoozed,
            'auto', json(iif(auto, 'true', 'false')), 'attempt', attempt
        )) VIRTUAL
    );
    INSERT INTO followups_v6 (id, partner_id, member_id, due, status, done_at, cadence_days,
                              reason, snoozed, auto, attempt)
        SELECT id, partner_id, member_id, due, status, done_at, cadence_days,
               reason, snoozed, auto, attempt
        FROM followups;
    DROP TABLE followups;
    ALTER TABLE followups_v6 RENAME TO followups;
    CREATE UNIQUE INDEX followups_by_id ON followups(id);
    CREATE INDEX followups_by_status ON followups(status, due);
    CREATE INDEX followups_by_partner ON followups(partner_id);
    "#,
    // 7: each space's membership log as this device verified it (keys come only from
    //    it), and the newest signed heads statement of each device, for noticing a relay
    //    that withholds someone's changes.
    r#"
    CREATE TABLE membership_ops (
        space_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        op BLOB NOT NULL,
        PRIMARY KEY (space_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE membership_state (
        space_id TEXT PRIMARY KEY,
        state BLOB NOT NULL
    );
    CREATE TABLE heads_statements (
        space_id TEXT NOT NULL,
        device TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        statement BLOB NOT NULL,
        PRIMARY KEY (space_id, device)
    );
    "#,
    // 8: whether the changes a heads statement names are in this device's document
    //    (`reached`), and whether this device passed the statement on in a push of its
    //    own (`forwarded`), so each statement travels once per device.
    r#"
    ALTER TABLE heads_statements ADD COLUMN reached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE heads_statements ADD COLUMN forwarded INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// The store version this build creates and understands.
pub const STORE_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database file inside a home directory.
pub const DB_FILE: &str = "rapport.db";

/// Maps an SQLite error that means "this file is damaged or not ours".
pub fn classify(path: &Path, err: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match err.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => Error::CorruptHome {
            path: path.to_path_buf(),
            reason: err.to_string(),
        },
        _ => Error::Storage(err),
    }
}

/// The WAL size, in pages, past which the writer checkpoints on its own, in the commit
/// that crosses it; the checkpointer thread normally keeps the WAL far below it. Larger
/// than the WAL that installing a large practice leaves (about 12,000 pages), so that
/// the commits right after an install do not copy it all into the file themselves.
const WAL_AUTOCHECKPOINT: i64 = 100_000;

/// The size, in bytes, the WAL file is cut back to when it starts over.
const WAL_SIZE_LIMIT: i64 = 8 * 1024 * 1024;

/// The page size of a new home's file, in bytes. Twice SQLite's default: the read model's
/// B-trees have half as many pages to split, balance and write, which makes installing a
/// practice's read model (the bulk of joining it) about 15 % faster. A file keeps the
/// page size it was created with.
pub const PAGE_SIZE: i64 = 8192;

/// The writer's page cache (SQLite's default, 2 MiB; negative means KiB).
pub const CACHE_SIZE: i64 = -2000;

/// Opens (creating if needed) the home database and brings it to [`STORE_VERSION`].
pub fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Read the version before any statement that writes, so a file from a newer Rapport
    // (or one that is not a database at all) is left exactly as it was.
    let version = user_version(&conn).map_err(|e| classify(path, e))?;
    if version > STORE_VERSION {
        return Err(Error::HomeTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: STORE_VERSION,
        });
    }
    if version == 0 && page_count(&conn).map_err(|e| classify(path, e))? == 0 {
        // Only a file with nothing in it yet can choose its page size.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| classify(path, e))?;
    // FULL: a write the API reported as committed survives power loss, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", CACHE_SIZE)?;
    // Checkpoints run on the home's checkpointer thread, off the write path; this is
    // only a safety net should that thread fall far behind.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
    // Once a checkpoint has copied everything, the next write starts the WAL over and cuts
    // the file back to this size: a join leaves about 95 MB of WAL that would otherwise
    // stay on the device for as long as the app runs.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    migrate(path, &conn, STORE_VERSION)?;
    optimize(&conn)?;
    Ok(conn)
}

/// Keeps the query planner's statistics current (SQLite's recommended practice), bounded
/// so that it never costs more than a few milliseconds.
pub fn optimize(conn: &Connection) -> Result<()> {
    conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")?;
    Ok(())
}

/// Copies the WAL into the database in the background, so that a durable write never
/// pays for a checkpoint's fsync of the database file. Stops when dropped.
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path` every `every`.
    pub fn start(path: &Path, every: Duration) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("rapport-checkpoint".into())
            .spawn(move || {
                let Ok(conn) = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                ) else {
                    return;
                };
                // PASSIVE never waits for, or blocks, the writer or readers.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "background checkpoint skipped");
                    }
                }
            })
            .ok();
        Checkpointer {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens a read-only connection for queries, so readers never block the writer.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// How many pages the file has (0 for a file just created).
fn page_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA page_count", [], |row| row.get(0))
}

/// The file's `user_version`.
pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies migrations up to `target` in one IMMEDIATE transaction.
pub fn migrate(path: &Path, conn: &Connection, target: i64) -> Result<()> {
    let current = user_version(conn).map_err(|e| classify(path, e))?;
    if current >= target {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    if current == 0 && target == STORE_VERSION {
        // A new file: the schema as it stands, not its history.
        tx.execute_batch(schema::SCHEMA)
            .map_err(|e| classify(path, e))?;
    } else {
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let to = index as i64 + 1;
            if to > current && to <= target {
                tx.execute_batch(sql).map_err(|e| classify(path, e))?;
            }
        }
    }
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A new file is made from `schema::SCHEMA`; one migrated from each earlier version
    /// must define every table, index and virtual table with exactly the same text.
    #[test]
    fn upgrading_from_every_version_matches_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = open_writer(&dir.path().join("fresh.db")).unwrap();
        assert!(schema(&fresh).len() > 40, "{:?}", schema(&fresh));
        for start in 1..STORE_VERSION {
            let path = dir.path().join(format!("v{start}.db"));
            {
                let conn = Connection::open(&path).unwrap();
                migrate(&path, &conn, start).unwrap();
                assert_eq!(user_version(&conn).unwrap(), start);
            }
            let upgraded = open_writer(&path).unwrap();
            assert_eq!(user_version(&upgraded).unwrap(), STORE_VERSION);
            assert_eq!(schema(&upgraded), schema(&fresh), "upgrade from v{start}");
        }
    }

    #[test]
    fn a_new_file_gets_the_larger_pages_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let fresh = open_writer(&dir.path().join("fresh.db")).unwrap();
        assert_eq!(page_size(&fresh), PAGE_SIZE);
        let old = dir.path().join("old.db");
        {
            let conn = Connection::open(&old).unwrap();
            conn.execute_batch("PRAGMA page_size = 4096; CREATE TABLE t (x);")
                .unwrap();
        }
        let reopened = open_writer(&old).unwrap();
        assert_eq!(page_size(&reopened), 4096, "a file keeps its page size");
        assert_eq!(user_version(&reopened).unwrap(), STORE_VERSION);
    }

    #[test]
    fn the_wal_shrinks_back_after_a_large_write_once_it_is_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rapport.db");
        let conn = open_writer(&path).unwrap();
        let wal = || {
            std::fs::metadata(path.with_extension("db-wal"))
                .unwrap()
                .len()
        };
        conn.execute_batch("CREATE TABLE big (b BLOB)").unwrap();
        conn.execute(
            "INSERT INTO big VALUES (zeroblob(?1))",
            [3 * WAL_SIZE_LIMIT],
        )
        .unwrap();
        assert!(
            wal() > 2 * WAL_SIZE_LIMIT as u64,
            "the large write went to the WAL"
        );
        // What the checkpointer thread does, then the next small write.
        let checkpointer = open_writer(&path).unwrap();
        checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        conn.execute("DELETE FROM big", []).unwrap();
        assert!(
            wal() <= WAL_SIZE_LIMIT as u64,
            "the WAL was cut back to {WAL_SIZE_LIMIT} bytes, not {}",
            wal()
        );
    }

    #[test]
    fn records_stored_as_json_before_v5_read_back_the_same_from_columns() {
        use crate::model::{Followup, Referral, Touchpoint};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        let touchpoint = r#"{"id":"t1","partner_id":"p1","member_id":"m1","kind":"email",
            "at":"2026-03-02","outcome":null,"note":"Sent the flyer, \"both\" sites été","archived":true}"#;
        let referral = r#"{"id":"r1","partner_id":"p1","member_id":"m1","direction":"in",
            "at":"2026-03-04","concerns":["trauma","anxiety"],"age_band":"adult",
            "payer_category":null,"modality":"telehealth","status":"active","outcome":"intake_held"}"#;
        let followup = r#"{"id":"f1","partner_id":"p1","member_id":"m1","due":"2026-04-01",
            "done_at":"2026-03-30","cadence_days":21,"reason":"thank them","status":"done",
            "snoozed":2,"auto":true,"attempt":3}"#;
        {
            let conn = Connection::open(&path).unwrap();
            migrate(&path, &conn, 4).unwrap();
            conn.execute(
                "INSERT INTO touchpoints VALUES ('t1', 'p1', 'm1', 'email', '2026-03-02', NULL, 1, ?1)",
                [touchpoint],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO referrals VALUES ('r1', 'p1', 'm1', 'in', '2026-03-04', 'active',
                 'intake_held', 'adult', NULL, 'telehealth', ?1)",
                [referral],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO followups VALUES ('f1', 'p1', 'm1', '2026-04-01', 'done', ?1)",
                [followup],
            )
            .unwrap();
        }
        let conn = open_writer(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), STORE_VERSION);
        assert_eq!(
            queries::touchpoint(&conn, "t1").unwrap(),
            Some(serde_json::from_str::<Touchpoint>(touchpoint).unwrap())
        );
        assert_eq!(
            queries::referral(&conn, "r1").unwrap(),
            Some(serde_json::from_str::<Referral>(referral).unwrap())
        );
        assert_eq!(
            queries::followup(&conn, "f1").unwrap(),
            Some(serde_json::from_str::<Followup>(followup).unwrap())
        );
        let concerns: String = conn
            .query_row("SELECT concerns FROM referrals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(concerns, r#"["trauma","anxiety"]"#, "a column of its own");
        // Since v6 the ids are kept unique by an index (which a join drops and builds).
        for table in ["touchpoints", "referrals", "followups"] {
            let columns: String = conn
                .query_row(
                    "SELECT group_concat(name) FROM pragma_table_info(?1)",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            let err = conn
                .execute_batch(&format!(
                    "INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}"
                ))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("UNIQUE constraint failed: {table}.id")),
                "{table}: {err}"
            );
        }
    }

    #[test]
    fn a_newer_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", STORE_VERSION + 1)
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = open_writer(&path).unwrap_err();
        assert!(matches!(err, Error::HomeTooNew { found, .. } if found == STORE_VERSION + 1));
        assert!(err.to_string().contains("update Rapport"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(
            &path,
            b"this is not sqlite at all, just some bytes padded out....",
        )
        .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = open_writer(&path).unwrap_err();
        assert!(matches!(err, Error::CorruptHome { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
