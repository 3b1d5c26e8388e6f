//! The relay's state in SQLite: spaces, devices and their memberships, setup codes,
//! invites, each space's append-only log of sealed blobs, snapshots and key envelopes.
//!
//! One writer thread owns the write connection and commits in groups: it takes every
//! write waiting in its queue, runs each under its own savepoint inside one transaction
//! and answers them all after the commit is on disk. A push is acknowledged only then,
//! so a `kill -9` right after an ack loses nothing, and many devices pushing at once share
//! one fsync. Reads use their own connections (WAL), so they never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rapport_wire::frames::{Entry, ErrorCode, MAX_LOG_PAGE, MAX_PULL_BYTES, Role, Snapshot};
use rapport_wire::membership::{LogState, Op, SignedOp, SpaceKind};
use rapport_wire::{DeviceId, SpaceId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use crate::membership;

/// The database file inside the data directory.
pub const DB_FILE: &str = "relay.db";

/// Most writes committed in one transaction.
const GROUP_MAX: usize = 256;
/// Writes waiting for the writer thread, at most.
const WRITE_QUEUE: usize = 1_024;

/// Personal spaces one device may create.
pub const MAX_SPACES_PER_DEVICE: i64 = 8;

/// The schema's version (`user_version`): 2 since membership logs, 3 since each space
/// counts what it stores (for its quota), 4 since setup codes expire.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS setup_codes (
    token_hash BLOB PRIMARY KEY, created_at INTEGER NOT NULL, used_at INTEGER, used_by BLOB,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS spaces (
    id BLOB PRIMARY KEY, created_at INTEGER NOT NULL, created_by BLOB NOT NULL,
    head INTEGER NOT NULL DEFAULT 0, pruned_through INTEGER NOT NULL DEFAULT 0, practice BLOB,
    entries INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS spaces_by_practice ON spaces(practice);
CREATE TABLE IF NOT EXISTS membership_log (
    space BLOB NOT NULL, seq INTEGER NOT NULL, op BLOB NOT NULL, PRIMARY KEY (space, seq)
);
CREATE TABLE IF NOT EXISTS log_states (space BLOB PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS memberships (
    space BLOB NOT NULL, device BLOB NOT NULL, role TEXT NOT NULL, joined_at INTEGER NOT NULL,
    PRIMARY KEY (space, device)
);
CREATE INDEX IF NOT EXISTS memberships_of_device ON memberships(device);
CREATE TABLE IF NOT EXISTS log (
    space BLOB NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL, sender BLOB NOT NULL,
    client_msg_id BLOB NOT NULL, received_at INTEGER NOT NULL, blob BLOB NOT NULL,
    PRIMARY KEY (space, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS log_by_message ON log(space, sender, client_msg_id);
CREATE TABLE IF NOT EXISTS snapshots (
    space BLOB PRIMARY KEY, covers INTEGER NOT NULL, epoch INTEGER NOT NULL, sender BLOB NOT NULL,
    created_at INTEGER NOT NULL, blob BLOB NOT NULL
);
"#;

/// What a protocol-1 relay's `relay.db` held (`user_version` 0 or 1): where [`FROM_V1`]
/// starts. Kept so that tests can write such a file and upgrade it.
pub const PROTOCOL_1_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS setup_codes (
    token_hash BLOB PRIMARY KEY, created_at INTEGER NOT NULL, used_at INTEGER, used_by BLOB
);
CREATE TABLE IF NOT EXISTS spaces (
    id BLOB PRIMARY KEY, created_at INTEGER NOT NULL, created_by BLOB NOT NULL,
    head INTEGER NOT NULL DEFAULT 0, pruned_through INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS memberships (
    space BLOB NOT NULL, device BLOB NOT NULL, role TEXT NOT NULL, x25519 BLOB NOT NULL,
    joined_at INTEGER NOT NULL, removed_at INTEGER, PRIMARY KEY (space, device)
);
CREATE INDEX IF NOT EXISTS memberships_by_device ON memberships(device);
CREATE TABLE IF NOT EXISTS invites (
    token_hash BLOB PRIMARY KEY, space BLOB NOT NULL, role TEXT NOT NULL, created_by BLOB NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER, used_by BLOB
);
CREATE TABLE IF NOT EXISTS log (
    space BLOB NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL, sender BLOB NOT NULL,
    client_msg_id BLOB NOT NULL, received_at INTEGER NOT NULL, blob BLOB NOT NULL,
    PRIMARY KEY (space, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS log_by_message ON log(space, sender, client_msg_id);
CREATE TABLE IF NOT EXISTS snapshots (
    space BLOB PRIMARY KEY, covers INTEGER NOT NULL, epoch INTEGER NOT NULL, sender BLOB NOT NULL,
    created_at INTEGER NOT NULL, blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS key_envelopes (
    space BLOB NOT NULL, epoch INTEGER NOT NULL, device BLOB NOT NULL, sealed BLOB NOT NULL,
    created_by BLOB NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (space, epoch, device)
);
"#;

/// A database from protocol 1: memberships and key envelopes the relay handed out
/// become a record of who registered each space (`legacy_memberships`), so that the
/// device that connected a practice can give it a membership log (`Adopt`); invites and
/// key envelopes, which carried the relay's word, are dropped.
const FROM_V1: &str = r#"
ALTER TABLE memberships RENAME TO legacy_memberships;
DROP INDEX IF EXISTS memberships_by_device;
DROP TABLE IF EXISTS invites;
DROP TABLE IF EXISTS key_envelopes;
ALTER TABLE spaces ADD COLUMN practice BLOB;
"#;

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "relay.db was written by a newer rapport-relay (schema {version}, this one knows {SCHEMA_VERSION}); update rapport-relay"
        )));
    }
    if version == SCHEMA_VERSION {
        // Nothing to write: a relay whose disk is full still opens and serves reads.
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let v1: bool = version < 2
        && tx.query_row(
            "SELECT count(*) FROM pragma_table_info('memberships') WHERE name = 'x25519'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
    if v1 {
        tracing::info!(
            "upgrading relay.db from protocol 1: spaces keep their logs and snapshots; their devices move to membership logs"
        );
        tx.execute_batch(FROM_V1)?;
    }
    tx.execute_batch(SCHEMA)?;
    let counted: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('spaces') WHERE name = 'entries'",
        [],
        |r| r.get::<_, i64>(0),
    )? > 0;
    if !counted {
        tracing::info!("upgrading relay.db: each space counts what it stores, for its quota");
        tx.execute_batch(COUNT_STORED)?;
    }
    let expiring: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('setup_codes') WHERE name = 'expires_at'",
        [],
        |r| r.get::<_, i64>(0),
    )? > 0;
    if !expiring {
        tracing::info!("upgrading relay.db: unused setup codes expire a week after they were made");
        tx.execute_batch(
            "ALTER TABLE setup_codes ADD COLUMN expires_at INTEGER;
             UPDATE setup_codes SET expires_at = created_at + 604800;",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// From schema 2: the per-space counts, filled from what is stored.
const COUNT_STORED: &str = r#"
ALTER TABLE spaces ADD COLUMN entries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spaces ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE spaces SET
    entries = (SELECT count(*) FROM log WHERE log.space = spaces.id),
    bytes = (SELECT COALESCE(sum(length(blob)), 0) FROM log WHERE log.space = spaces.id)
        + (SELECT COALESCE(sum(length(blob)), 0) FROM snapshots WHERE snapshots.space = spaces.id);
"#;

/// What one space may store on this relay: its log's entries and the bytes of their
/// blobs and its snapshot. A push past either is refused with [`ErrorCode::Quota`]; a
/// snapshot is always taken (it is what lets an owner or admin prune and make room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceQuota {
    /// Entries in the log at once.
    pub max_entries: u64,
    /// Bytes of blobs (entries and snapshot) at once.
    pub max_bytes: u64,
}

impl Default for SpaceQuota {
    /// Far above the large practice of DOMAIN.md after years of work (a few hundred MB
    /// before snapshots and pruning), low enough that one space cannot fill a small disk.
    fn default() -> Self {
        SpaceQuota {
            max_entries: 2_000_000,
            max_bytes: 4 << 30,
        }
    }
}

/// The quota the writer thread applies, set by the server from its configuration.
#[derive(Debug)]
struct QuotaCell {
    max_entries: AtomicU64,
    max_bytes: AtomicU64,
}

impl QuotaCell {
    fn get(&self) -> SpaceQuota {
        SpaceQuota {
            max_entries: self.max_entries.load(Ordering::Relaxed),
            max_bytes: self.max_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A refusal: a code the device can act on and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// In words.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            tracing::error!("the relay's disk is full: writes are refused until space is freed");
            return Refusal::new(
                ErrorCode::StorageFull,
                "the relay's disk is full: nothing new is stored until its host frees space; \
                 what it holds is kept and still served",
            );
        }
        tracing::error!(error = %e, "relay storage error");
        Refusal::new(
            ErrorCode::Internal,
            "the relay's storage failed; retry later",
        )
    }
}

/// The result of an operation on the store.
pub type Outcome<T> = Result<T, Refusal>;

/// SHA-256 of a token: tokens are stored hashed, so a copy of the database cannot be
/// used to register or join.
pub fn token_hash(token: &[u8]) -> Vec<u8> {
    Sha256::digest(token).to_vec()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A write the writer thread runs.
pub enum Write {
    /// Stores a new setup token.
    AddSetupCode {
        /// SHA-256 of the token.
        token_hash: Vec<u8>,
        /// Unix seconds after which it registers nothing.
        expires_at: i64,
    },
    /// Forgets every setup code not used yet: none of them registers anything any more.
    RevokeSetupCodes,
    /// Registers a practice with a setup token and its log's genesis.
    Register {
        /// SHA-256 of the token.
        token_hash: Vec<u8>,
        /// The device.
        device: DeviceId,
        /// The genesis operation.
        genesis: SignedOp,
    },
    /// Registers a personal space of a practice member.
    CreateSpace {
        /// The device.
        device: DeviceId,
        /// The genesis operation.
        genesis: SignedOp,
    },
    /// Gives a space from protocol 1 its log.
    Adopt {
        /// The device.
        device: DeviceId,
        /// The genesis operation.
        genesis: SignedOp,
    },
    /// Appends a membership operation on the log's head.
    AppendOp {
        /// The space.
        space: SpaceId,
        /// The uploading device (its signer).
        device: DeviceId,
        /// The operation.
        op: SignedOp,
    },
    /// Appends to the log (idempotent by sender and client message id).
    Push {
        /// The space.
        space: SpaceId,
        /// Sender.
        sender: DeviceId,
        /// Key epoch.
        epoch: u32,
        /// Idempotency key.
        client_msg_id: [u8; 16],
        /// Sealed blob.
        blob: Vec<u8>,
    },
    /// Stores a snapshot.
    PutSnapshot {
        /// The space.
        space: SpaceId,
        /// Sender.
        sender: DeviceId,
        /// Key epoch.
        epoch: u32,
        /// Last seq covered.
        covers: u64,
        /// Sealed snapshot.
        blob: Vec<u8>,
    },
    /// Drops covered entries (owner or admin).
    Prune {
        /// The space.
        space: SpaceId,
        /// Who asks.
        device: DeviceId,
        /// Last seq to drop.
        through: u64,
    },
}

/// What a write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Done.
    Done,
    /// Admitted with a role.
    Admitted(Role),
    /// A push's seq, and whether it was a duplicate.
    Pushed(u64, bool),
    /// Pruned through this seq.
    Pruned(u64),
    /// The membership log's new length.
    Appended(u64),
    /// How many were affected.
    Count(u64),
}

struct Job {
    write: Write,
    reply: mpsc::Sender<Outcome<Written>>,
}

/// The relay's database.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Option<mpsc::SyncSender<Job>>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    quota: Arc<QuotaCell>,
}

fn open(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    if flags.contains(OpenFlags::SQLITE_OPEN_CREATE) {
        // Owner only, before SQLite creates it (and its -wal and -shm with its mode).
        rapport_wire::private::database(path).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("{}: {e}", path.display())),
            )
        })?;
    }
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database in `dir` and starts the writer thread.
    pub fn open(dir: &Path) -> rusqlite::Result<Arc<Store>> {
        let path = dir.join(DB_FILE);
        let writer = open(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: an acknowledged push survives a power cut, not only a crash.
        writer.pragma_update(None, "synchronous", "FULL")?;
        let mut writer = writer;
        migrate(&mut writer)?;
        let readers = (0..4)
            .map(|_| open(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Bounded: when writes arrive faster than the disk commits them, the requests
        // behind them wait (each on its blocking thread, with its bytes counted in the
        // server's in-flight budget) instead of piling up in memory.
        let (tx, rx) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let default = SpaceQuota::default();
        let quota = Arc::new(QuotaCell {
            max_entries: AtomicU64::new(default.max_entries),
            max_bytes: AtomicU64::new(default.max_bytes),
        });
        let writer_quota = quota.clone();
        let thread = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || writer_loop(writer, rx, &writer_quota))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Arc::new(Store {
            path,
            writer: Mutex::new(Some(tx)),
            readers,
            next_reader: AtomicUsize::new(0),
            thread: Mutex::new(Some(thread)),
            quota,
        }))
    }

    /// Sets what each space may store (writes from now on are held to it).
    pub fn set_quota(&self, quota: SpaceQuota) {
        self.quota
            .max_entries
            .store(quota.max_entries, Ordering::Relaxed);
        self.quota
            .max_bytes
            .store(quota.max_bytes, Ordering::Relaxed);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a write; blocks until it is durable (call it off the async runtime). When the
    /// writer's queue is full it waits for room.
    pub fn write_blocking(&self, write: Write) -> Outcome<Written> {
        let (reply, answer) = mpsc::channel();
        self.submit(Job { write, reply })?;
        answer.recv().unwrap_or_else(|_| {
            Err(Refusal::new(
                ErrorCode::Internal,
                "the relay's writer stopped",
            ))
        })
    }

    fn submit(&self, job: Job) -> Outcome<()> {
        let sender = self.writer.lock().ok().and_then(|w| w.clone());
        let Some(sender) = sender else {
            return Err(Refusal::new(
                ErrorCode::Internal,
                "the relay is shutting down",
            ));
        };
        sender
            .send(job)
            .map_err(|_| Refusal::new(ErrorCode::Internal, "the relay is shutting down"))
    }

    /// Runs a read on one of the read connections.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Outcome<T>) -> Outcome<T> {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[index]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Stops the writer after it has committed what is queued.
    pub fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }

    /// Whether the device is a current member of any space on this relay.
    pub fn member_anywhere(&self, device: DeviceId) -> Outcome<bool> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT EXISTS (SELECT 1 FROM memberships WHERE device = ?1)")?
                    .query_row([&device.0[..]], |r| r.get(0))?,
            )
        })
    }

    /// The role of a device in a space, if it is a current member.
    pub fn role(&self, space: SpaceId, device: DeviceId) -> Outcome<Option<Role>> {
        self.read(|c| role(c, space, device))
    }

    /// Entries after `after`, at most `limit`; whether more follow; the head.
    pub fn pull(&self, space: SpaceId, after: u64, limit: u32) -> Outcome<(Vec<Entry>, bool, u64)> {
        self.read(|c| {
            let (head, pruned): (i64, i64) = c
                .prepare_cached("SELECT head, pruned_through FROM spaces WHERE id = ?1")?
                .query_row([&space.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| Refusal::new(ErrorCode::UnknownSpace, "no such space"))?;
            if after < u64::try_from(pruned).unwrap_or(0) {
                return Err(Refusal::new(
                    ErrorCode::Pruned,
                    format!("entries up to {pruned} were folded into a snapshot; start from the snapshot"),
                ));
            }
            let mut stmt = c.prepare_cached(
                "SELECT seq, epoch, sender, blob FROM log WHERE space = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let take = i64::from(limit) + 1;
            let rows = stmt.query_map(params![&space.0[..], after as i64, take], |r| {
                Ok(Entry {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    epoch: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    sender: DeviceId(blob16(&r.get::<_, Vec<u8>>(2)?)),
                    blob: r.get(3)?,
                })
            })?;
            // Stop at the count or at the byte budget, whichever comes first.
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            let mut more = false;
            for row in rows {
                let entry = row?;
                if entries.len() == limit as usize || (!entries.is_empty() && bytes + entry.blob.len() > MAX_PULL_BYTES) {
                    more = true;
                    break;
                }
                bytes += entry.blob.len();
                entries.push(entry);
            }
            Ok((entries, more, u64::try_from(head).unwrap_or(0)))
        })
    }

    /// The newest snapshot of a space.
    pub fn snapshot(&self, space: SpaceId) -> Outcome<Option<Snapshot>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT covers, epoch, sender, blob FROM snapshots WHERE space = ?1",
            )?
            .query_row([&space.0[..]], |r| {
                Ok(Snapshot {
                    covers: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    epoch: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    sender: DeviceId(blob16(&r.get::<_, Vec<u8>>(2)?)),
                    blob: r.get(3)?,
                })
            })
            .optional()?)
        })
    }

    /// Operations `from..` of a space's membership log (one page) and its length.
    pub fn log(&self, space: SpaceId, from: u64) -> Outcome<(Vec<SignedOp>, u64)> {
        self.read(|c| membership::ops(c, space, from, MAX_LOG_PAGE))
    }

    /// A space's membership as its log says.
    pub fn log_state(&self, space: SpaceId) -> Outcome<LogState> {
        self.read(|c| membership::existing_state(c, space))
    }

    /// A setting kept in the database.
    pub fn meta(&self, key: &str) -> Outcome<Option<String>> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    /// Counts for `rapport-relay stats`: spaces, devices, entries, blob bytes.
    pub fn stats(&self) -> Outcome<(i64, i64, i64, i64)> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM spaces),
                        (SELECT count(DISTINCT device) FROM memberships),
                        (SELECT count(*) FROM log),
                        (SELECT COALESCE(sum(length(blob)), 0) FROM log) + (SELECT COALESCE(sum(length(blob)), 0) FROM snapshots)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?)
        })
    }
}

/// Writes a setting (used by the CLI before the relay serves).
pub fn set_meta(dir: &Path, key: &str, value: &str) -> rusqlite::Result<()> {
    let conn = open(
        &dir.join(DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    let mut conn = conn;
    migrate(&mut conn)?;
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        [key, value],
    )?;
    Ok(())
}

fn blob16(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0; 16];
    if bytes.len() == 16 {
        out.copy_from_slice(bytes);
    }
    out
}

fn role(c: &Connection, space: SpaceId, device: DeviceId) -> Outcome<Option<Role>> {
    let role: Option<String> = c
        .prepare_cached("SELECT role FROM memberships WHERE space = ?1 AND device = ?2")?
        .query_row([&space.0[..], &device.0[..]], |r| r.get(0))
        .optional()?;
    Ok(role.and_then(|r| Role::parse(&r)))
}

fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>, quota: &QuotaCell) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let results = commit_group(&mut conn, &group, quota.get());
        for (job, result) in group.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

fn commit_group(conn: &mut Connection, group: &[Job], quota: SpaceQuota) -> Vec<Outcome<Written>> {
    let failed = |e: rusqlite::Error| -> Vec<Outcome<Written>> {
        let refusal = Refusal::from(e);
        group.iter().map(|_| Err(refusal.clone())).collect()
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return failed(e),
    };
    let now = now();
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        // Each write in its own savepoint: a refused one leaves the others untouched.
        // A savepoint dropped without commit rolls back.
        let result = (|| -> Outcome<Written> {
            let sp = tx.savepoint()?;
            let result = apply(&sp, &job.write, now, quota);
            if result.is_ok() {
                sp.commit()?;
            }
            result
        })();
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => failed(e),
    }
}

fn new_space(
    c: &Connection,
    genesis: &SignedOp,
    device: DeviceId,
    practice: Option<SpaceId>,
    now: i64,
) -> Outcome<LogState> {
    let body = genesis.open().map_err(membership::refusal)?;
    if genesis.signer_id() != device {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "a space is registered by the device that created it",
        ));
    }
    let exists: bool = c.query_row(
        "SELECT count(*) FROM spaces WHERE id = ?1",
        [&body.space.0[..]],
        |r| r.get::<_, i64>(0),
    )? > 0;
    if exists {
        return Err(Refusal::new(
            ErrorCode::SpaceExists,
            "that space is already registered",
        ));
    }
    c.execute(
        "INSERT INTO spaces (id, created_at, created_by, practice) VALUES (?1, ?2, ?3, ?4)",
        params![
            &body.space.0[..],
            now,
            &device.0[..],
            practice.map(|p| p.0.to_vec())
        ],
    )?;
    membership::start(c, genesis, now)
}

/// Whether `genesis` is exactly the genesis already stored for its space: a repeated
/// registration (its first answer was lost) is then already done.
fn already_registered(c: &Connection, genesis: &SignedOp) -> Outcome<bool> {
    let Ok(body) = genesis.open() else {
        return Ok(false);
    };
    Ok(membership::genesis(c, body.space)?.as_ref() == Some(genesis))
}

fn genesis_kind(genesis: &SignedOp) -> Outcome<SpaceKind> {
    match genesis.open().map_err(membership::refusal)?.op {
        Op::Create { kind, .. } => Ok(kind),
        _ => Err(Refusal::new(
            ErrorCode::BadRequest,
            "a space starts with its creation",
        )),
    }
}

fn apply(c: &Connection, write: &Write, now: i64, quota: SpaceQuota) -> Outcome<Written> {
    match write {
        Write::AddSetupCode {
            token_hash,
            expires_at,
        } => {
            c.execute(
                "INSERT INTO setup_codes (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
                params![token_hash, now, expires_at],
            )?;
            Ok(Written::Done)
        }
        Write::RevokeSetupCodes => {
            let n = c.execute("DELETE FROM setup_codes WHERE used_at IS NULL", [])?;
            Ok(Written::Count(n as u64))
        }
        Write::Register {
            token_hash,
            device,
            genesis,
        } => {
            if genesis_kind(genesis)? != SpaceKind::Practice {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "a setup code registers a practice",
                ));
            }
            let used: Option<(Option<i64>, Option<i64>)> = c
                .query_row(
                    "SELECT used_at, expires_at FROM setup_codes WHERE token_hash = ?1",
                    [token_hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let used = match used {
                Some((None, Some(expires_at))) if expires_at < now => {
                    return Err(Refusal::new(
                        ErrorCode::Expired,
                        "this setup code has expired; ask the relay's host for a new one",
                    ));
                }
                other => other.map(|(used_at, _)| used_at),
            };
            match used {
                None => {
                    return Err(Refusal::new(
                        ErrorCode::InvalidToken,
                        "this setup code is not known to this relay (or was revoked)",
                    ));
                }
                Some(Some(_)) => {
                    if already_registered(c, genesis)? {
                        return Ok(Written::Admitted(Role::Owner));
                    }
                    return Err(Refusal::new(
                        ErrorCode::AlreadyUsed,
                        "this setup code was already used; ask the relay's admin for a new one",
                    ));
                }
                Some(None) => {}
            }
            new_space(c, genesis, *device, None, now)?;
            c.execute(
                "UPDATE setup_codes SET used_at = ?2, used_by = ?3 WHERE token_hash = ?1",
                params![token_hash, now, &device.0[..]],
            )?;
            Ok(Written::Admitted(Role::Owner))
        }
        Write::CreateSpace { device, genesis } => {
            if already_registered(c, genesis)? {
                return Ok(Written::Admitted(Role::Owner));
            }
            let SpaceKind::Personal { practice } = genesis_kind(genesis)? else {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "a practice is registered with a setup code",
                ));
            };
            if role(c, practice, *device)?.is_none() {
                return Err(Refusal::new(
                    ErrorCode::NotMember,
                    "only a member of the practice can create its personal spaces",
                ));
            }
            let created: i64 = c.query_row(
                "SELECT count(*) FROM spaces WHERE created_by = ?1",
                [&device.0[..]],
                |r| r.get(0),
            )?;
            if created >= MAX_SPACES_PER_DEVICE {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "this device has created as many spaces as a relay allows",
                ));
            }
            new_space(c, genesis, *device, Some(practice), now)?;
            Ok(Written::Admitted(Role::Owner))
        }
        Write::Adopt { device, genesis } => {
            if already_registered(c, genesis)? {
                return Ok(Written::Admitted(Role::Owner));
            }
            let kind = genesis_kind(genesis)?;
            let space = genesis.open().map_err(membership::refusal)?.space;
            if membership::state(c, space)?.is_some() {
                return Err(Refusal::new(
                    ErrorCode::SpaceExists,
                    "that space already has a membership log",
                ));
            }
            // Only the device that registered the space under protocol 1, and still in it.
            let registered: i64 = c.query_row(
                "SELECT count(*) FROM spaces s JOIN legacy_memberships m ON m.space = s.id
                 WHERE s.id = ?1 AND s.created_by = ?2 AND m.device = ?2 AND m.removed_at IS NULL",
                [&space.0[..], &device.0[..]],
                |r| r.get(0),
            )?;
            if registered == 0 || genesis.signer_id() != *device {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "only the device that connected this space can give it a membership log",
                ));
            }
            if let SpaceKind::Personal { practice } = kind {
                c.execute(
                    "UPDATE spaces SET practice = ?2 WHERE id = ?1",
                    params![&space.0[..], &practice.0[..]],
                )?;
            }
            membership::start(c, genesis, now)?;
            Ok(Written::Admitted(Role::Owner))
        }
        Write::AppendOp { space, device, op } => {
            membership::append(c, *space, *device, op, now).map(Written::Appended)
        }
        Write::Push {
            space,
            sender,
            epoch,
            client_msg_id,
            blob,
        } => {
            let existing: Option<i64> = c
                .prepare_cached(
                    "SELECT seq FROM log WHERE space = ?1 AND sender = ?2 AND client_msg_id = ?3",
                )?
                .query_row(
                    params![&space.0[..], &sender.0[..], &client_msg_id[..]],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(seq) = existing {
                return Ok(Written::Pushed(u64::try_from(seq).unwrap_or(0), true));
            }
            current_epoch(c, *space, *sender, *epoch, "an entry")?;
            let (entries, bytes): (i64, i64) = c
                .prepare_cached("SELECT entries, bytes FROM spaces WHERE id = ?1")?
                .query_row([&space.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| Refusal::new(ErrorCode::UnknownSpace, "no such space"))?;
            let (entries, bytes) = (entries.max(0) as u64, bytes.max(0) as u64);
            if entries >= quota.max_entries
                || bytes.saturating_add(blob.len() as u64) > quota.max_bytes
            {
                return Err(Refusal::new(
                    ErrorCode::Quota,
                    format!(
                        "this space is full on this relay ({entries} entries, {} MiB; its \
                         quota is {} entries and {} MiB): an owner or admin frees room by \
                         syncing, which snapshots and prunes",
                        bytes >> 20,
                        quota.max_entries,
                        quota.max_bytes >> 20
                    ),
                ));
            }
            let seq: i64 = c
                .prepare_cached(
                    "UPDATE spaces SET head = head + 1, entries = entries + 1, bytes = bytes + ?2 WHERE id = ?1 RETURNING head",
                )?
                .query_row(params![&space.0[..], blob.len() as i64], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Refusal::new(ErrorCode::UnknownSpace, "no such space"))?;
            c.prepare_cached(
                "INSERT INTO log (space, seq, epoch, sender, client_msg_id, received_at, blob) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![&space.0[..], seq, epoch, &sender.0[..], &client_msg_id[..], now, blob])?;
            Ok(Written::Pushed(u64::try_from(seq).unwrap_or(0), false))
        }
        Write::PutSnapshot {
            space,
            sender,
            epoch,
            covers,
            blob,
        } => {
            let head: i64 = c
                .query_row(
                    "SELECT head FROM spaces WHERE id = ?1",
                    [&space.0[..]],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Refusal::new(ErrorCode::UnknownSpace, "no such space"))?;
            current_epoch(c, *space, *sender, *epoch, "a snapshot")?;
            // The log's first epoch: a snapshot under an older one was made before the
            // space had a log (protocol 1) and carries no covers a reader can check.
            let first_epoch = membership::existing_state(c, *space)?
                .checks
                .keys()
                .next()
                .copied()
                .unwrap_or(0);
            if *covers > u64::try_from(head).unwrap_or(0) {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("a snapshot cannot cover seq {covers}: the log ends at {head}"),
                ));
            }
            let current: Option<(i64, u32)> = c
                .query_row(
                    "SELECT covers, epoch FROM snapshots WHERE space = ?1",
                    [&space.0[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            // Replaced only by one covering more: an older snapshot (a replay) never
            // takes the place of a newer one. One from before the log gives way to the
            // first made under it, covering as much: joiners cannot check the old one.
            if current
                .is_some_and(|(cur, old_epoch)| cur >= *covers as i64 && old_epoch >= first_epoch)
            {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "a snapshot covering as much or more is already stored",
                ));
            }
            c.execute(
                "UPDATE spaces SET bytes = bytes + ?2
                     - COALESCE((SELECT length(blob) FROM snapshots WHERE space = ?1), 0)
                 WHERE id = ?1",
                params![&space.0[..], blob.len() as i64],
            )?;
            c.execute(
                "INSERT OR REPLACE INTO snapshots (space, covers, epoch, sender, created_at, blob) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![&space.0[..], *covers as i64, epoch, &sender.0[..], now, blob],
            )?;
            Ok(Written::Done)
        }
        Write::Prune {
            space,
            device,
            through,
        } => {
            if !role(c, *space, *device)?.is_some_and(Role::can_manage) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "only an owner or admin can prune the log",
                ));
            }
            let covers: Option<i64> = c
                .query_row(
                    "SELECT covers FROM snapshots WHERE space = ?1",
                    [&space.0[..]],
                    |r| r.get(0),
                )
                .optional()?;
            let covers = covers.ok_or_else(|| {
                Refusal::new(
                    ErrorCode::BadRequest,
                    "nothing can be pruned before a snapshot is stored",
                )
            })?;
            let through = (*through as i64).min(covers);
            c.execute(
                "UPDATE spaces SET
                     entries = entries - (SELECT count(*) FROM log WHERE space = ?1 AND seq <= ?2),
                     bytes = bytes - (SELECT COALESCE(sum(length(blob)), 0) FROM log WHERE space = ?1 AND seq <= ?2)
                 WHERE id = ?1",
                params![&space.0[..], through],
            )?;
            c.execute(
                "DELETE FROM log WHERE space = ?1 AND seq <= ?2",
                params![&space.0[..], through],
            )?;
            c.execute(
                "UPDATE spaces SET pruned_through = max(pruned_through, ?2) WHERE id = ?1",
                params![&space.0[..], through],
            )?;
            Ok(Written::Pruned(u64::try_from(through).unwrap_or(0)))
        }
    }
}

/// Refuses a write by a device that is not a member any more, or sealed under an epoch
/// other than the space's current one (checked inside the write's transaction, so a
/// removal or rotation committed just before is always seen).
fn current_epoch(
    c: &Connection,
    space: SpaceId,
    device: DeviceId,
    epoch: u32,
    what: &str,
) -> Outcome<()> {
    if role(c, space, device)?.is_none() {
        return Err(Refusal::new(
            ErrorCode::NotMember,
            "this device is not a member of that space",
        ));
    }
    let current = membership::existing_state(c, space)?.epoch;
    if epoch != current {
        return Err(Refusal::new(
            ErrorCode::StaleEpoch,
            format!(
                "{what} sealed under key epoch {epoch}, but the space is at epoch {current}; fetch the membership log and seal again"
            ),
        ));
    }
    Ok(())
}
