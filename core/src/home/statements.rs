//! What a home keeps to check the relay's delivery: the newest epoch of an entry merged
//! per space, and the heads statements: the newest signed statement of each other device
//! per space (see [`crate::sealed::entry`]), whether this device's document has the
//! changes it names (`reached`) and whether this device passed it on (`forwarded`).

use automerge::ChangeHash;
use rapport_wire::DeviceId;
use rusqlite::{OptionalExtension, params};

use super::{Home, load_space};
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::sealed::entry::HeadsStatement;

/// A heads statement as this device keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptStatement {
    /// The statement, verified when it arrived.
    pub statement: HeadsStatement,
    /// Whether this device's document has every change it names.
    pub reached: bool,
    /// Whether this device passed it on in one of its pushes.
    pub forwarded: bool,
}

/// Which mark [`Home::mark_statements`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementMark {
    /// The changes it names are in the document now.
    Reached,
    /// Passed on in a push.
    Forwarded,
}

impl Home {
    /// The statements kept for a space, newest first. A row that does not decode (it
    /// cannot come from this build) is left out.
    pub fn heads_statements(&self, kind: SpaceKind) -> Result<Vec<KeptStatement>> {
        let space = self.space_id(kind)?;
        let conn = self.lock_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT statement, reached, forwarded FROM heads_statements
             WHERE space_id = ?1 ORDER BY at_ms DESC",
        )?;
        let rows = stmt.query_map([space], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        let mut kept = Vec::new();
        for row in rows {
            let (blob, reached, forwarded) = row?;
            if let Ok(statement) = postcard::from_bytes(&blob) {
                kept.push(KeptStatement {
                    statement,
                    reached,
                    forwarded,
                });
            }
        }
        Ok(kept)
    }

    /// Keeps `statement` (already verified) unless a statement of its device at least as
    /// new is kept; returns whether it was.
    pub fn keep_heads_statement(
        &self,
        kind: SpaceKind,
        statement: &HeadsStatement,
        reached: bool,
    ) -> Result<bool> {
        let space = self.space_id(kind)?;
        let device = statement.device.to_string();
        let blob = postcard::to_allocvec(statement)
            .map_err(|e| Error::Internal(format!("a heads statement does not encode: {e}")))?;
        let writer = self.lock_writer();
        let newest: Option<i64> = writer
            .conn
            .query_row(
                "SELECT at_ms FROM heads_statements WHERE space_id = ?1 AND device = ?2",
                params![space, device],
                |r| r.get(0),
            )
            .optional()?;
        if newest.is_some_and(|at| at >= statement.at_ms) {
            return Ok(false);
        }
        // A statement is a hint that the next push of its device renews: losing one to a
        // power cut costs nothing, so it skips the fsync.
        relaxed(&writer.conn, |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO heads_statements
                    (space_id, device, at_ms, statement, reached, forwarded)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![space, device, statement.at_ms, blob, reached],
            )
            .map(drop)
        })?;
        Ok(true)
    }

    /// Sets `mark` on the kept statements of these `(device, at_ms)`; a statement replaced
    /// by a newer one since keeps its own marks.
    pub fn mark_statements(
        &self,
        kind: SpaceKind,
        which: &[(DeviceId, i64)],
        mark: StatementMark,
    ) -> Result<()> {
        if which.is_empty() {
            return Ok(());
        }
        let space = self.space_id(kind)?;
        let sql = match mark {
            StatementMark::Reached => {
                "UPDATE heads_statements SET reached = 1
                 WHERE space_id = ?1 AND device = ?2 AND at_ms = ?3"
            }
            StatementMark::Forwarded => {
                "UPDATE heads_statements SET forwarded = 1
                 WHERE space_id = ?1 AND device = ?2 AND at_ms = ?3"
            }
        };
        let writer = self.lock_writer();
        relaxed(&writer.conn, |conn| {
            let tx = conn.unchecked_transaction()?;
            for (device, at_ms) in which {
                tx.execute(sql, params![space, device.to_string(), at_ms])?;
            }
            tx.commit()
        })?;
        Ok(())
    }

    /// Where re-reading a space's relay log from its start stands, after a pull found
    /// changes withheld: `due:MARK` or `done:MARK` (MARK names the withheld statements).
    pub fn rescan_mark(&self, kind: SpaceKind) -> Result<Option<String>> {
        self.space_value("withheld_rescan", kind)
    }

    /// Records where re-reading from the start stands (see [`Home::rescan_mark`]).
    pub fn set_rescan_mark(&self, kind: SpaceKind, mark: &str) -> Result<()> {
        self.set_space_value("withheld_rescan", kind, mark)
    }

    /// The newest key epoch of an entry merged in a space (0 before any).
    pub fn newest_merged_epoch(&self, kind: SpaceKind) -> Result<u32> {
        Ok(self
            .space_value("newest_merged_epoch", kind)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Records the newest key epoch of an entry merged in a space (without an fsync: the
    /// merge it follows skips one too, and both are fetched again after a power cut).
    pub fn set_newest_merged_epoch(&self, kind: SpaceKind, epoch: u32) -> Result<()> {
        let key = self.space_setting("newest_merged_epoch", kind)?;
        let writer = self.lock_writer();
        relaxed(&writer.conn, |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO home (key, value) VALUES (?1, ?2)",
                params![key, epoch.to_string()],
            )
            .map(drop)
        })
    }

    /// Whether the space's document has every change of `heads` (loads the document).
    pub fn has_changes(&self, kind: SpaceKind, heads: &[[u8; 32]]) -> Result<bool> {
        let mut writer = self.lock_writer();
        let super::Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        let doc = space.doc.as_ref().ok_or(Error::NoPractice)?;
        Ok(heads
            .iter()
            .all(|h| doc.get_change_meta_by_hash(&ChangeHash(*h)).is_some()))
    }
}

/// Runs `write` without waiting for the disk (`synchronous=NORMAL`): for what can be lost
/// to a power cut without harm. The next durable write's fsync covers it.
fn relaxed(
    conn: &rusqlite::Connection,
    write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
) -> Result<()> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = write(conn);
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(result?)
}
