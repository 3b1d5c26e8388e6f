//! What the home keeps of each space's membership log: the operations this device
//! verified, the state after them, and (in `space_keys`) the content keys they gave it.
//! The home stores; `sync` verifies before it hands anything over.

use rapport_wire::membership::{LogState, SignedOp};
use rusqlite::{Connection, OptionalExtension, params};

use super::Home;
use super::sync_state::write_space_key;
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::sealed::crypto::SpaceKey;

/// A verified stretch of a space's log as the home keeps it: operations from `state.len -
/// ops.len()` on, and the state after the last.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedLog<'a> {
    /// The operations.
    pub ops: &'a [SignedOp],
    /// The state after them.
    pub state: &'a LogState,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::Internal(format!("the home's stored {what} does not decode: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::Internal(e.to_string()))
}

/// The stored state of a space's log.
pub(super) fn read_state(conn: &Connection, space_id: &str) -> Result<Option<LogState>> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT state FROM membership_state WHERE space_id = ?1")?
        .query_row([space_id], |r| r.get(0))
        .optional()?;
    bytes.map(|b| decode(&b, "membership state")).transpose()
}

/// Keeps `log` (its operations not stored yet and its state, when newer), in the
/// caller's transaction. An operation already stored under the same seq must be the same
/// one: a different one is a fork and is refused.
pub(super) fn write_log(conn: &Connection, space_id: &str, log: &VerifiedLog<'_>) -> Result<()> {
    let stored_len: u64 = conn
        .prepare_cached("SELECT count(*) FROM membership_ops WHERE space_id = ?1")?
        .query_row([space_id], |r| r.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))?;
    let first = log.state.len.saturating_sub(log.ops.len() as u64);
    if first > stored_len {
        return Err(Error::Internal(format!(
            "a membership log stretch from {first} does not follow the {stored_len} operations stored"
        )));
    }
    for (seq, op) in (first..).zip(log.ops) {
        let bytes = encode(op)?;
        if seq < stored_len {
            let same: Option<Vec<u8>> = conn
                .prepare_cached("SELECT op FROM membership_ops WHERE space_id = ?1 AND seq = ?2")?
                .query_row(params![space_id, seq as i64], |r| r.get(0))
                .optional()?;
            if same.as_deref() != Some(bytes.as_slice()) {
                return Err(Error::Sync(
                    "the relay served a membership log that forks from the one this device verified; it is refused".into(),
                ));
            }
            continue;
        }
        conn.prepare_cached("INSERT INTO membership_ops (space_id, seq, op) VALUES (?1, ?2, ?3)")?
            .execute(params![space_id, seq as i64, bytes])?;
    }
    if log.state.len >= stored_len {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO membership_state (space_id, state) VALUES (?1, ?2)",
        )?
        .execute(params![space_id, encode(log.state)?])?;
    }
    Ok(())
}

impl Home {
    /// A space's membership as this device verified it (`None` before the space has a
    /// log here).
    pub fn membership(&self, kind: SpaceKind) -> Result<Option<LogState>> {
        let space = self.space_id(kind)?;
        read_state(&self.lock_reader(), &space)
    }

    /// The operations of a space's log from `from` on, as verified.
    pub fn membership_ops(&self, kind: SpaceKind, from: u64) -> Result<Vec<SignedOp>> {
        let space = self.space_id(kind)?;
        let conn = self.lock_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT op FROM membership_ops WHERE space_id = ?1 AND seq >= ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![space, from as i64], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|r| decode(&r?, "membership operation")).collect()
    }

    /// Keeps newly verified operations of a space's log, the state after them and the
    /// keys they gave this device, in one transaction.
    pub fn absorb_membership(
        &self,
        kind: SpaceKind,
        log: &VerifiedLog<'_>,
        keys: &[SpaceKey],
    ) -> Result<()> {
        let space = self.space_id(kind)?;
        let writer = self.lock_writer();
        let tx = rusqlite::Transaction::new_unchecked(
            &writer.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        write_log(&tx, &space, log)?;
        for key in keys {
            write_space_key(&tx, &space, key)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every content key this device holds for a space, oldest first.
    pub fn space_keys(&self, kind: SpaceKind) -> Result<Vec<SpaceKey>> {
        let space = self.space_id(kind)?;
        let conn = self.lock_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT epoch, key FROM space_keys WHERE space_id = ?1 ORDER BY epoch",
        )?;
        let rows = stmt.query_map([space], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (epoch, bytes) = row?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| Error::Internal("a stored space key is damaged".into()))?;
            keys.push(SpaceKey::from_bytes(epoch, bytes));
        }
        Ok(keys)
    }
}
