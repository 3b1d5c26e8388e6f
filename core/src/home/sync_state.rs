//! What sync keeps in the home: the device's keys, the relay, each space's keys by epoch,
//! its relay cursor and the heads the relay acknowledged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{OptionalExtension, params};

use super::Home;
use super::membership::{VerifiedLog, write_log};
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::sealed::crypto::{BoxKey, SpaceKey};
use crate::store::{chunks, queries};

/// The relay a home syncs through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// `host:port` to dial.
    pub addr: String,
    /// SHA-256 of its certificate.
    pub fingerprint: [u8; 32],
}

/// What a device that joined a practice keeps about syncing it: the relay it came
/// through and, for the practice (and a clinician's personal space, for their further
/// device), the keys, the verified membership log and the log position it fetched up to.
#[derive(Debug, Clone, Copy)]
pub struct JoinedVia<'a> {
    /// The relay named by the invite.
    pub relay: &'a RelayInfo,
    /// The practice.
    pub practice: SpaceJoin<'a>,
    /// For another device of an existing clinician: their personal space.
    pub personal: Option<SpaceJoin<'a>>,
}

/// What a joining device keeps of one space.
#[derive(Debug, Clone, Copy)]
pub struct SpaceJoin<'a> {
    /// The content keys its invite gave it (from the space's log).
    pub keys: &'a [SpaceKey],
    /// The space's membership log, verified.
    pub log: Option<VerifiedLog<'a>>,
    /// The seq the fetched snapshot and log cover (none when a join cut off earlier is
    /// being finished without fetching again).
    pub cursor: Option<u64>,
}

/// Where a space stands with the relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPosition {
    /// Entries up to this seq have been merged.
    pub cursor: u64,
    /// Document heads the relay has acknowledged.
    pub acked_heads: Vec<automerge::ChangeHash>,
}

fn secret(home: &Home, key: &str) -> Result<Vec<u8>> {
    let value = queries::home_value(&home.lock_reader(), key)?
        .ok_or_else(|| Error::Internal(format!("the home has no {key}")))?;
    STANDARD
        .decode(value)
        .map_err(|_| Error::Internal(format!("the home's {key} is damaged")))
}

impl Home {
    /// The device's Ed25519 identity (TLS certificate and signing key).
    pub fn device_identity(&self) -> Result<rapport_wire::identity::Identity> {
        rapport_wire::identity::Identity::from_parts(
            secret(self, "device_key")?,
            secret(self, "device_cert")?,
        )
        .map_err(|e| Error::Internal(format!("the device key is damaged: {e}")))
    }

    /// The device's X25519 key for receiving epoch keys.
    pub fn box_key(&self) -> Result<BoxKey> {
        let bytes: [u8; 32] = secret(self, "box_key")?
            .try_into()
            .map_err(|_| Error::Internal("the home's box key is damaged".into()))?;
        Ok(BoxKey::from_bytes(bytes))
    }

    /// The id of a space of this home.
    pub fn space_id(&self, kind: SpaceKind) -> Result<String> {
        let writer = self.lock_writer();
        chunks::spaces(&writer.conn)?
            .into_iter()
            .find(|s| s.kind == kind)
            .map(|s| s.id)
            .ok_or(Error::NoPractice)
    }

    /// The relay this home syncs through, if connected.
    pub fn relay(&self) -> Result<Option<RelayInfo>> {
        let conn = self.lock_reader();
        let row: Option<(String, Vec<u8>)> = conn
            .query_row(
                "SELECT addr, fingerprint FROM relay WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(addr, fp)| {
            fp.try_into()
                .ok()
                .map(|fingerprint| RelayInfo { addr, fingerprint })
        }))
    }

    /// Records the relay.
    pub fn set_relay(&self, relay: &RelayInfo) -> Result<()> {
        write_relay(&self.lock_writer().conn, relay)
    }

    /// Keeps, in one transaction, what a device that joined the practice needs to sync it.
    pub fn record_join(&self, via: &JoinedVia<'_>) -> Result<()> {
        let practice = self.space_id(SpaceKind::Practice)?;
        let personal = self.space_id(SpaceKind::Personal)?;
        let now_ms = self.clock.now_ms();
        let writer = self.lock_writer();
        let tx = rusqlite::Transaction::new_unchecked(
            &writer.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        write_join(&tx, (&practice, &personal), via, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// A space's key for one epoch.
    pub fn space_key(&self, kind: SpaceKind, epoch: u32) -> Result<Option<SpaceKey>> {
        let space = self.space_id(kind)?;
        let conn = self.lock_reader();
        let bytes: Option<Vec<u8>> = conn
            .query_row(
                "SELECT key FROM space_keys WHERE space_id = ?1 AND epoch = ?2",
                params![space, epoch],
                |r| r.get(0),
            )
            .optional()?;
        Ok(bytes
            .and_then(|b| b.try_into().ok())
            .map(|k| SpaceKey::from_bytes(epoch, k)))
    }

    /// A space's newest key.
    pub fn current_space_key(&self, kind: SpaceKind) -> Result<Option<SpaceKey>> {
        let space = self.space_id(kind)?;
        let epoch: Option<u32> = self
            .lock_reader()
            .query_row(
                "SELECT max(epoch) FROM space_keys WHERE space_id = ?1",
                [space],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match epoch {
            Some(epoch) => self.space_key(kind, epoch),
            None => Ok(None),
        }
    }

    /// Where a space stands with the relay.
    pub fn sync_position(&self, kind: SpaceKind) -> Result<SyncPosition> {
        let space = self.space_id(kind)?;
        let conn = self.lock_reader();
        let row: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT relay_cursor, acked_heads FROM sync_state WHERE space_id = ?1",
                [space],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row
            .map(|(cursor, heads)| SyncPosition {
                cursor: u64::try_from(cursor).unwrap_or(0),
                acked_heads: chunks::decode_heads(&heads),
            })
            .unwrap_or_default())
    }

    /// Records the relay cursor after merging entries up to it.
    pub fn set_sync_cursor(&self, kind: SpaceKind, cursor: u64) -> Result<()> {
        let space = self.space_id(kind)?;
        let now = self.clock.now_ms();
        write_cursor(&self.lock_writer().conn, &space, cursor, now)
    }

    /// The `home` table's key for a setting `name` of one space.
    pub(super) fn space_setting(&self, name: &str, kind: SpaceKind) -> Result<String> {
        Ok(format!("{name}:{}", self.space_id(kind)?))
    }

    /// A setting of one space, if set.
    pub(super) fn space_value(&self, name: &str, kind: SpaceKind) -> Result<Option<String>> {
        queries::home_value(&self.lock_reader(), &self.space_setting(name, kind)?)
    }

    /// Sets a setting of one space.
    pub(super) fn set_space_value(&self, name: &str, kind: SpaceKind, value: &str) -> Result<()> {
        // The key first: finding the space takes a lock the write below holds.
        let key = self.space_setting(name, kind)?;
        self.lock_writer().conn.execute(
            "INSERT OR REPLACE INTO home (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    /// The seq the newest snapshot this device knows of covers.
    pub fn last_snapshot(&self, kind: SpaceKind) -> Result<u64> {
        Ok(self
            .space_value("verified_snapshot", kind)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Records that a snapshot covers the log up to `seq`.
    pub fn set_last_snapshot(&self, kind: SpaceKind, seq: u64) -> Result<()> {
        self.set_space_value("verified_snapshot", kind, &seq.to_string())
    }

    /// Whether a space of this home is registered on the relay (its log's genesis was
    /// accepted, or this device joined it).
    pub fn is_registered(&self, kind: SpaceKind) -> Result<bool> {
        Ok(self.space_value("registered", kind)?.is_some())
    }

    /// Records that a space is registered on the relay.
    pub fn set_registered(&self, kind: SpaceKind) -> Result<()> {
        self.set_space_value("registered", kind, "1")
    }

    /// Records heads the relay acknowledged.
    pub fn set_acked_heads(&self, kind: SpaceKind, heads: &[automerge::ChangeHash]) -> Result<()> {
        let space = self.space_id(kind)?;
        write_acked_heads(&self.lock_writer().conn, &space, heads)
    }
}

fn write_relay(conn: &rusqlite::Connection, relay: &RelayInfo) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO relay (id, addr, fingerprint) VALUES (1, ?1, ?2)",
        params![relay.addr, &relay.fingerprint[..]],
    )?;
    Ok(())
}

pub(super) fn write_space_key(
    conn: &rusqlite::Connection,
    space_id: &str,
    key: &SpaceKey,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO space_keys (space_id, epoch, key) VALUES (?1, ?2, ?3)",
        params![space_id, key.epoch, &key.bytes()[..]],
    )?;
    Ok(())
}

/// Writes [`JoinedVia`] for the spaces `(practice, personal)`, in the caller's
/// transaction.
pub(super) fn write_join(
    conn: &rusqlite::Connection,
    (practice, personal): (&str, &str),
    via: &JoinedVia<'_>,
    now_ms: i64,
) -> Result<()> {
    write_relay(conn, via.relay)?;
    for (space, join) in [
        (practice, Some(&via.practice)),
        (personal, via.personal.as_ref()),
    ] {
        let Some(join) = join else { continue };
        conn.execute(
            "INSERT OR REPLACE INTO home (key, value) VALUES (?1, '1')",
            params![format!("registered:{space}")],
        )?;
        for key in join.keys {
            write_space_key(conn, space, key)?;
        }
        if let Some(log) = &join.log {
            write_log(conn, space, log)?;
        }
        if let Some(cursor) = join.cursor {
            write_cursor(conn, space, cursor, now_ms)?;
        }
    }
    Ok(())
}

/// Records the heads the relay holds for a space.
pub(super) fn write_acked_heads(
    conn: &rusqlite::Connection,
    space_id: &str,
    heads: &[automerge::ChangeHash],
) -> Result<()> {
    conn.execute(
        "INSERT INTO sync_state (space_id, acked_heads) VALUES (?1, ?2)
         ON CONFLICT (space_id) DO UPDATE SET acked_heads = excluded.acked_heads",
        params![space_id, chunks::encode_heads(heads)],
    )?;
    Ok(())
}

/// Moves a space's relay cursor forward (never back) and stamps the sync time.
pub(super) fn write_cursor(
    conn: &rusqlite::Connection,
    space_id: &str,
    cursor: u64,
    now_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO sync_state (space_id, relay_cursor, last_sync_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (space_id) DO UPDATE SET relay_cursor = max(relay_cursor, excluded.relay_cursor), last_sync_at = excluded.last_sync_at",
        params![space_id, cursor as i64, now_ms],
    )?;
    Ok(())
}
