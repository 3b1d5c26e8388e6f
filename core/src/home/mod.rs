//! A device home: one SQLite file holding the practice space and the clinician's personal
//! space, the read model derived from them, and the API the apps and the CLI call.
//!
//! Reads go to the read model through their own connection and never load a document.
//! Writes take the single writer: the space's Automerge document is loaded on first use,
//! the change is made, and its bytes, the read-model rows and the new heads are committed
//! in one SQLite transaction before the call returns.

mod batch;
mod insights;
mod membership;
mod merged_text;
mod partner_edit;
mod read;
mod snapshot;
mod statements;
mod sync_state;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use automerge::transaction::Transaction;
use automerge::{Automerge, ChangeHash};
use rusqlite::{Connection, TransactionBehavior};

use crate::clock::{Clock, SystemClock};
use crate::doc::{self, EntityRef, SCHEMA_VERSION, SpaceKind};
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, ChangeListener, Listeners, Origin, Subscription};
use crate::store::{self, chunks, queries, read_model};
use crate::validate::Day;

pub use batch::Batch;
pub use membership::VerifiedLog;
pub use statements::{KeptStatement, StatementMark};
pub use sync_state::{JoinedVia, RelayInfo, SpaceJoin, SyncPosition};
pub use write::MergeOutcome;

/// How to open a home.
#[derive(Clone)]
pub struct HomeOptions {
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
}

impl Default for HomeOptions {
    fn default() -> Self {
        HomeOptions {
            clock: Arc::new(SystemClock),
        }
    }
}

/// Ids that say who this device is, kept in the `home` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ids {
    pub device_id: String,
    pub member_id: String,
    pub practice_id: String,
    pub personal_id: String,
}

/// One space as the writer holds it: the document is loaded on first use.
struct Space {
    id: String,
    doc: Option<Automerge>,
    /// Heads of what the chunk log holds; the next chunk is `save_after(saved_heads)`.
    saved_heads: Vec<ChangeHash>,
    schema: u64,
    /// Entities whose rows were repaired when the document was first loaded, for the
    /// listeners to hear of once the writer lock is released.
    repaired: Vec<EntityRef>,
}

impl Space {
    /// The event for a repair found at load, once.
    fn take_repaired(&mut self, kind: SpaceKind) -> Option<ChangeEvent> {
        if self.repaired.is_empty() {
            return None;
        }
        let refs = std::mem::take(&mut self.repaired);
        Some(ChangeEvent::new(kind, Origin::Repaired, &refs))
    }
}

struct Writer {
    conn: Connection,
    spaces: HashMap<SpaceKind, Space>,
    ids: Option<Ids>,
}

/// A device home. Thread-safe: share it behind an `Arc`.
pub struct Home {
    path: PathBuf,
    _checkpointer: store::Checkpointer,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
}

/// What the writer passes to a write: who writes and when.
pub(crate) struct Ctx {
    pub member_id: String,
    pub now_ms: i64,
    pub today: Day,
}

impl Home {
    /// Opens the home in `dir` (created if needed) with the system clock.
    pub fn open(dir: impl AsRef<Path>) -> Result<Home> {
        Home::open_with(dir, HomeOptions::default())
    }

    /// Opens the home in `dir` (created if needed).
    pub fn open_with(dir: impl AsRef<Path>, options: HomeOptions) -> Result<Home> {
        let dir = dir.as_ref();
        // rapport.db holds this device's keys and every space key: owner only.
        rapport_wire::private::dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(store::DB_FILE);
        rapport_wire::private::database(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let conn = store::open_writer(&path)?;
        let reader = store::open_reader(&path)?;
        let mut writer = Writer {
            conn,
            spaces: HashMap::new(),
            ids: None,
        };
        writer.load_identity(&path)?;
        let home = Home {
            _checkpointer: store::Checkpointer::start(&path, std::time::Duration::from_millis(500)),
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            listeners: Listeners::default(),
            clock: options.clock,
        };
        home.check_read_model()?;
        Ok(home)
    }

    /// The SQLite file of this home.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clock this home uses.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Registers a change listener; delivery stops when the subscription is dropped.
    pub fn subscribe(&self, listener: Arc<dyn ChangeListener>) -> Subscription {
        self.listeners.subscribe(listener)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions
        // roll back on drop) and in-memory documents are reloaded; carry on.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_reader(&self) -> MutexGuard<'_, Connection> {
        self.reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rebuilds the read model of any space whose recorded heads or projection version
    /// differ from its document's (a newer build, or a file repaired by hand).
    fn check_read_model(&self) -> Result<()> {
        let rows = {
            let writer = self.lock_writer();
            chunks::spaces(&writer.conn).map_err(|e| match e {
                Error::Storage(err) => store::classify(&self.path, err),
                other => other,
            })?
        };
        for row in rows {
            if row.doc_heads != row.model_heads || row.model_version != read_model::MODEL_VERSION {
                tracing::info!(space = %row.id, "read model is behind its document; rebuilding");
                self.rebuild_read_model(row.kind)?;
            }
        }
        Ok(())
    }

    /// Re-derives the read model of a space from its document.
    pub fn rebuild_read_model(&self, kind: SpaceKind) -> Result<()> {
        let mut writer = self.lock_writer();
        let Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        let Some(doc) = space.doc.as_ref() else {
            return Ok(());
        };
        let heads = doc.get_heads();
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        read_model::rebuild(&tx, doc, &space.id, kind)?;
        chunks::set_model_heads(&tx, &space.id, &heads, read_model::MODEL_VERSION)?;
        tx.commit()?;
        // The tables changed wholesale: refresh the planner's statistics.
        conn.execute_batch("ANALYZE")?;
        Ok(())
    }

    /// Folds a space's chunk log into one base chunk (see `store::chunks`).
    pub fn compact(&self, kind: SpaceKind) -> Result<()> {
        let mut writer = self.lock_writer();
        let Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        if let Some(doc) = space.doc.as_ref() {
            let snapshot = doc.save();
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            chunks::compact(&tx, &space.id, &snapshot)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Whether the writer has loaded a space's document (tests check that reads never do).
    pub fn is_document_loaded(&self, kind: SpaceKind) -> bool {
        self.lock_writer()
            .spaces
            .get(&kind)
            .is_some_and(|s| s.doc.is_some())
    }

    /// The whole document of a space as Automerge bytes (a compact `save()`).
    pub fn export_document(&self, kind: SpaceKind) -> Result<Vec<u8>> {
        let mut writer = self.lock_writer();
        let Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        space
            .doc
            .as_ref()
            .map(Automerge::save)
            .ok_or(Error::NoPractice)
    }

    /// The changes of a space that are not ancestors of `heads`, as Automerge bytes
    /// (what a sync push sends: `save_after(acked_heads)`).
    pub fn changes_since(&self, kind: SpaceKind, heads: &[ChangeHash]) -> Result<Vec<u8>> {
        let mut writer = self.lock_writer();
        let Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        space
            .doc
            .as_ref()
            .map(|d| d.save_after(heads))
            .ok_or(Error::NoPractice)
    }

    /// This device's own changes among those [`Home::changes_since`] returns, grouped
    /// into pieces of at most `max_bytes` each at change boundaries (a single larger change
    /// is its own piece), in causal order: what a push sends as several relay entries.
    /// Colleagues' changes merged here are left out: the relay has them from their writer,
    /// and receivers refuse a change passed on by anyone else.
    pub fn changes_since_in_pieces(
        &self,
        kind: SpaceKind,
        heads: &[ChangeHash],
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut writer = self.lock_writer();
        let Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        let doc = space.doc.as_ref().ok_or(Error::NoPractice)?;
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let me = doc.get_actor().clone();
        for change in doc.get_changes(heads) {
            if change.actor_id() != &me {
                continue;
            }
            let bytes = change.raw_bytes();
            match pieces.last_mut() {
                Some(piece) if piece.len() + bytes.len() <= max_bytes => {
                    piece.extend_from_slice(bytes)
                }
                _ => pieces.push(bytes.to_vec()),
            }
        }
        Ok(pieces)
    }

    /// The heads of a space's document, as stored (does not load the document).
    pub fn heads(&self, kind: SpaceKind) -> Result<Vec<ChangeHash>> {
        let writer = self.lock_writer();
        let rows = chunks::spaces(&writer.conn)?;
        Ok(rows
            .into_iter()
            .find(|r| r.kind == kind)
            .map(|r| r.doc_heads)
            .unwrap_or_default())
    }

    /// Tells the listeners of read models repaired when their documents were loaded.
    fn dispatch_repairs(&self) {
        let events: Vec<ChangeEvent> = {
            let mut writer = self.lock_writer();
            writer
                .spaces
                .iter_mut()
                .filter_map(|(kind, space)| space.take_repaired(*kind))
                .collect()
        };
        for event in &events {
            self.listeners.dispatch(event);
        }
    }

    /// Runs one write on a space: an Automerge transaction, then the chunk, the read-model
    /// rows and the heads in one SQLite transaction; listeners hear of it afterwards.
    pub(crate) fn write<T>(
        &self,
        kind: SpaceKind,
        f: impl FnOnce(&mut Transaction<'_>, &Ctx) -> Result<(T, Vec<EntityRef>)>,
    ) -> Result<T> {
        let (value, event) = {
            let mut writer = self.lock_writer();
            let ids = writer.ids.clone().ok_or(Error::NoPractice)?;
            let Writer { conn, spaces, .. } = &mut *writer;
            let space = load_space(conn, spaces, kind)?;
            if space.schema > SCHEMA_VERSION {
                return Err(Error::ReadOnly {
                    space: kind.code(),
                    found: space.schema,
                    supported: SCHEMA_VERSION,
                });
            }
            let now_ms = self.clock.now_ms();
            let ctx = Ctx {
                member_id: ids.member_id.clone(),
                now_ms,
                today: self.clock.today(),
            };
            let doc = space.doc.as_mut().ok_or(Error::NoPractice)?;
            let (value, mut refs) = doc
                .transact_with(
                    |_| doc::commit_options(&ids.member_id, now_ms),
                    |tx| f(tx, &ctx),
                )
                .map(|success| success.result)
                .map_err(|failure| failure.error)?;
            refs.sort();
            refs.dedup();
            persist(conn, space, &refs)?;
            maybe_compact(conn, space);
            (value, ChangeEvent::new(kind, Origin::Local, &refs))
        };
        self.dispatch_repairs();
        self.listeners.dispatch(&event);
        Ok(value)
    }
}

/// Loads a space's document from the chunk log if the writer does not hold it yet.
fn load_space<'a>(
    conn: &Connection,
    spaces: &'a mut HashMap<SpaceKind, Space>,
    kind: SpaceKind,
) -> Result<&'a mut Space> {
    let loaded = spaces.get(&kind).is_some_and(|s| s.doc.is_some());
    if !loaded {
        let row = chunks::spaces(conn)?
            .into_iter()
            .find(|r| r.kind == kind)
            .ok_or(Error::NoPractice)?;
        let bytes = chunks::load(conn, &row.id)?;
        // A document installed from a snapshot and never loaded came from elsewhere: its
        // bounds are checked and Automerge runs behind the guard. Later loads read what
        // this device has loaded and saved itself.
        let doc = if snapshot::installed_unverified(conn, &row.id)? {
            doc::guard::load(&bytes)?
        } else {
            Automerge::load(&bytes).map_err(|e| Error::CorruptDocument(e.to_string()))?
        };
        let heads = doc.get_heads();
        let schema = doc::schema_of(&doc);
        let actor = conn
            .query_row("SELECT value FROM home WHERE key = 'device_id'", [], |r| {
                r.get::<_, String>(0)
            })
            .map(|d| doc::actor_for(&d))?;
        spaces.insert(
            kind,
            Space {
                id: row.id,
                doc: Some(doc.with_actor(actor)),
                saved_heads: heads,
                schema,
                repaired: Vec::new(),
            },
        );
        if kind == SpaceKind::Practice
            && let Some(space) = spaces.get_mut(&kind)
            && let Err(e) = snapshot::apply_pending_join(conn, space)
                .and_then(|()| snapshot::verify_installed_model(conn, space))
        {
            spaces.remove(&kind);
            return Err(e);
        }
    }
    spaces.get_mut(&kind).ok_or(Error::NoPractice)
}

/// Commits what a space's document gained since its last save: chunk, read-model rows
/// for `refs` and heads, in one SQLite transaction. On failure the in-memory document is
/// dropped so that it is reloaded from what is durable.
fn persist(conn: &Connection, space: &mut Space, refs: &[EntityRef]) -> Result<()> {
    persist_with(conn, space, refs, |_| Ok(()))
}

/// [`persist`], with `also` written in the same transaction (sync state that must move
/// with the merge), so one fsync covers both.
fn persist_with(
    conn: &Connection,
    space: &mut Space,
    refs: &[EntityRef],
    also: impl FnOnce(&Connection) -> Result<()>,
) -> Result<()> {
    let result = (|| -> Result<Vec<ChangeHash>> {
        let doc = space.doc.as_ref().ok_or(Error::NoPractice)?;
        let heads = doc.get_heads();
        let bytes = doc.save_after(&space.saved_heads);
        let schema = doc::schema_of(doc);
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        chunks::append(&tx, &space.id, &bytes, &heads, schema)?;
        read_model::apply(&tx, doc, &space.id, refs)?;
        chunks::set_model_heads(&tx, &space.id, &heads, read_model::MODEL_VERSION)?;
        also(&tx)?;
        tx.commit()?;
        space.schema = schema;
        Ok(heads)
    })();
    match result {
        Ok(heads) => {
            space.saved_heads = heads;
            Ok(())
        }
        Err(e) => {
            space.doc = None;
            Err(e)
        }
    }
}

/// Folds the chunk log into a snapshot when its tail has grown; a failure only logs, the
/// log stays valid as it is.
fn maybe_compact(conn: &Connection, space: &Space) {
    let Some(doc) = space.doc.as_ref() else {
        return;
    };
    let result = (|| -> Result<()> {
        let stats = chunks::stats(conn, &space.id)?;
        if chunks::should_compact(stats) {
            let snapshot = doc.save();
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            chunks::compact(&tx, &space.id, &snapshot)?;
            tx.commit()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "compaction failed; the chunk log is left as it was");
    }
}

impl Writer {
    fn load_identity(&mut self, path: &Path) -> Result<()> {
        let get = |key: &str| {
            queries::home_value(&self.conn, key).map_err(|e| match e {
                Error::Storage(err) => store::classify(path, err),
                other => other,
            })
        };
        if get("device_key")?.is_none() {
            // The device's identity: an Ed25519 key (TLS client certificate and blob
            // signatures) and an X25519 key (epoch keys are wrapped to it). Its id is
            // the one the key gives, so the relay and every peer agree on it.
            let identity = rapport_wire::identity::Identity::generate("rapport-device")
                .map_err(|e| Error::Internal(format!("cannot create the device key: {e}")))?;
            let box_key = crate::sealed::crypto::BoxKey::generate();
            let b64 = |bytes: &[u8]| {
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
            };
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            for (key, value) in [
                ("device_key", b64(identity.key_pkcs8())),
                ("device_cert", b64(identity.cert_der())),
                ("box_key", b64(box_key.secret_bytes().as_slice())),
            ] {
                tx.execute(
                    "INSERT OR REPLACE INTO home (key, value) VALUES (?1, ?2)",
                    [key, value.as_str()],
                )?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO home (key, value) VALUES ('device_id', ?1)",
                [identity.device_id().to_string()],
            )?;
            tx.commit()?;
        }
        let device_id = get("device_id")?.unwrap_or_default();
        self.ids = match (get("member_id")?, get("practice_id")?, get("personal_id")?) {
            (Some(member_id), Some(practice_id), Some(personal_id)) => Some(Ids {
                device_id,
                member_id,
                practice_id,
                personal_id,
            }),
            _ => None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
