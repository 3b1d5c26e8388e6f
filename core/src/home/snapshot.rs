//! Snapshots with the read model: exporting one for the relay, and joining a practice
//! from one without loading its document.
//!
//! A joining device installs the snapshot's document bytes as its chunk log and its
//! records as its read model, in one transaction: the practice is readable at once, and
//! the document is loaded lazily, as on any reopened device. The new member's own entry
//! cannot be written without the document, so it is kept as a *pending join* (its row is
//! already in the read model) and written into the document, in the same transaction
//! that removes it, the first time the document loads.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::batch::add_member;
use super::sync_state::{JoinedVia, write_acked_heads, write_join};
use super::write::{
    add_device_to_member, device_id, ensure_no_practice, new_personal_space, personal_space_of,
};
use super::{Home, Ids, Space, Writer, load_space, persist_with};
use automerge::Automerge;

use crate::doc::{self, SCHEMA_VERSION, SpaceKind};
use crate::error::{Error, Result};
use crate::model::{EntityKind, Identity, Member};
use crate::sealed::snapshot::{SnapshotTables, SpaceSnapshot, compress_records};
use crate::store::{chunks, queries, read_model, tables_image};
use crate::validate;
use crate::vocab::Role;

const PENDING_JOIN: &str = "pending_join";
/// Set when the practice's read model is installed from a snapshot's records, to the
/// practice's space id; cleared once the document has been loaded and the rows checked.
const UNVERIFIED_MODEL: &str = "read_model_unverified";

/// The member entry a joined device still has to write into the practice document.
#[derive(Debug, Serialize, Deserialize)]
struct PendingJoin {
    member_id: String,
    display_name: String,
    device_id: String,
    at_ms: i64,
    /// A clinician's further device: only add it to their member's devices.
    #[serde(default)]
    device_only: bool,
}

impl Home {
    /// A snapshot of a space for the relay: the compacted document and, when the read
    /// model is exactly at the document's heads, its records (compressed), so that a
    /// device joining from it needs neither to load nor to project the document.
    pub fn space_snapshot(&self, kind: SpaceKind) -> Result<SpaceSnapshot> {
        let mut writer = self.lock_writer();
        let Writer { conn, spaces, .. } = &mut *writer;
        let space = load_space(conn, spaces, kind)?;
        let doc = space.doc.as_ref().ok_or(Error::NoPractice)?;
        let heads = doc.get_heads();
        let document = doc.save();
        let schema = space.schema;
        let space_id = space.id.clone();
        // Same connection, same lock: the rows read below are the ones at `heads`.
        let row = chunks::spaces(conn)?
            .into_iter()
            .find(|r| r.kind == kind)
            .ok_or(Error::NoPractice)?;
        let in_step = chunks::encode_heads(&row.model_heads) == chunks::encode_heads(&heads)
            && row.model_version == read_model::MODEL_VERSION;
        // A practice's large collections travel as their tables' pages, the rest as JSON.
        let as_tables = kind == SpaceKind::Practice;
        let (records, tables) = if in_step {
            let records =
                compress_records(&read_model::export(conn, &space_id, kind, !as_tables)?)?;
            let tables = if as_tables {
                Some(SnapshotTables::compress(&tables_image::export_tables(
                    conn,
                )?)?)
            } else {
                None
            };
            (Some(records), tables)
        } else {
            (None, None)
        };
        Ok(SpaceSnapshot {
            document,
            heads,
            schema,
            records,
            tables,
            covers: None,
        })
    }

    /// Joins a practice from a relay snapshot as a new member, keeping `via` with it. With
    /// the snapshot's records, the read model is installed as it is and the document is
    /// not loaded (the member's entry is written at its first load); without them, this
    /// is [`Home::join_practice`] then [`Home::record_join`].
    pub fn join_practice_from_snapshot(
        &self,
        practice_id: &str,
        snapshot: &SpaceSnapshot,
        member_name: &str,
        via: &JoinedVia<'_>,
    ) -> Result<Identity> {
        self.join_practice_from_snapshot_as(practice_id, snapshot, &doc::new_id(), member_name, via)
    }

    /// [`Home::join_practice_from_snapshot`] as the member `member_id` (the id this
    /// device's admission to the practice's membership log named).
    pub fn join_practice_from_snapshot_as(
        &self,
        practice_id: &str,
        snapshot: &SpaceSnapshot,
        member_id: &str,
        member_name: &str,
        via: &JoinedVia<'_>,
    ) -> Result<Identity> {
        let Some(records) = snapshot.records()? else {
            let identity =
                self.join_practice_as(practice_id, &snapshot.document, member_id, member_name)?;
            self.record_join(via)?;
            return Ok(identity);
        };
        let member_name = validate::name("member name", member_name)?;
        let practice_id = validate::id("practice id", practice_id)?;
        let member_id = validate::id("member id", member_id)?;
        let now_ms = self.clock.now_ms();
        self.install_from_snapshot(snapshot, &records, via, |device_id| {
            let ids = Ids {
                member_id: member_id.clone(),
                practice_id,
                personal_id: doc::new_id(),
                device_id: device_id.to_string(),
            };
            let personal = new_personal_space(&ids, now_ms)?;
            let pending = PendingJoin {
                member_id: ids.member_id.clone(),
                display_name: member_name,
                device_id: ids.device_id.clone(),
                at_ms: now_ms,
                device_only: false,
            };
            Ok((ids, pending, personal))
        })
    }

    /// [`Home::add_device`] from a relay snapshot of the practice, keeping `via` with it:
    /// this device joins an existing clinician (their personal space comes whole, it is
    /// small) without loading the practice document; adding it to the member's devices
    /// waits for the first load.
    pub fn add_device_from_snapshot(
        &self,
        practice_id: &str,
        snapshot: &SpaceSnapshot,
        member_id: &str,
        personal: (&str, &[u8]),
        via: &JoinedVia<'_>,
    ) -> Result<Identity> {
        let (personal_id, personal_document) = personal;
        let Some(records) = snapshot.records()? else {
            let identity = self.add_device(
                practice_id,
                &snapshot.document,
                member_id,
                personal_id,
                personal_document,
            )?;
            self.record_join(via)?;
            return Ok(identity);
        };
        let practice_id = validate::id("practice id", practice_id)?;
        let personal_id = validate::id("personal space id", personal_id)?;
        let member_id = validate::id("member id", member_id)?;
        if !records.members.iter().any(|m| m.id == member_id) {
            return Err(Error::NotFound {
                entity: "member",
                id: member_id,
            });
        }
        let personal = personal_space_of(personal_document, &member_id)?;
        let now_ms = self.clock.now_ms();
        self.install_from_snapshot(snapshot, &records, via, |device_id| {
            let ids = Ids {
                member_id: member_id.clone(),
                practice_id,
                personal_id,
                device_id: device_id.to_string(),
            };
            let pending = PendingJoin {
                member_id: member_id.clone(),
                display_name: String::new(),
                device_id: ids.device_id.clone(),
                at_ms: now_ms,
                device_only: true,
            };
            let personal = personal.with_actor(doc::actor_for(device_id));
            Ok((ids, pending, personal))
        })
    }

    /// Installs a practice from a snapshot with its records, plus a personal space, a
    /// pending join and `via`, in one transaction; the practice document stays unloaded.
    fn install_from_snapshot(
        &self,
        snapshot: &SpaceSnapshot,
        records: &read_model::Records,
        via: &JoinedVia<'_>,
        make: impl FnOnce(&str) -> Result<(Ids, PendingJoin, Automerge)>,
    ) -> Result<Identity> {
        if snapshot.schema > SCHEMA_VERSION {
            return Err(Error::ReadOnly {
                space: "practice",
                found: snapshot.schema,
                supported: SCHEMA_VERSION,
            });
        }
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock_writer();
        let writer = &mut *guard;
        ensure_no_practice(writer)?;
        let (ids, pending, personal) = make(&device_id(&writer.conn)?)?;
        let personal_heads = personal.get_heads();
        tables_image::with_tables(&mut writer.conn, records.tables.as_deref(), |conn| {
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            for (key, value) in [
                ("member_id", ids.member_id.clone()),
                ("practice_id", ids.practice_id.clone()),
                ("personal_id", ids.personal_id.clone()),
                (PENDING_JOIN, encode(&pending)?),
                (UNVERIFIED_MODEL, ids.practice_id.clone()),
            ] {
                tx.execute(
                    "INSERT OR REPLACE INTO home (key, value) VALUES (?1, ?2)",
                    params![key, value],
                )?;
            }
            chunks::create_space(
                &tx,
                &ids.practice_id,
                SpaceKind::Practice,
                &snapshot.document,
                &snapshot.heads,
                snapshot.schema,
            )?;
            read_model::install(&tx, &ids.practice_id, SpaceKind::Practice, records)?;
            if !pending.device_only {
                read_model::put_member(&tx, &pending.member())?;
            }
            chunks::set_model_heads(
                &tx,
                &ids.practice_id,
                &snapshot.heads,
                read_model::MODEL_VERSION,
            )?;
            chunks::create_space(
                &tx,
                &ids.personal_id,
                SpaceKind::Personal,
                &personal.save(),
                &personal_heads,
                doc::schema_of(&personal),
            )?;
            read_model::rebuild(&tx, &personal, &ids.personal_id, SpaceKind::Personal)?;
            chunks::set_model_heads(
                &tx,
                &ids.personal_id,
                &personal_heads,
                read_model::MODEL_VERSION,
            )?;
            // What the snapshot holds is on the relay already, and so is a clinician's
            // personal space that a further device of theirs fetched whole.
            write_acked_heads(&tx, &ids.practice_id, &snapshot.heads)?;
            if pending.device_only {
                write_acked_heads(&tx, &ids.personal_id, &personal_heads)?;
            }
            write_join(&tx, (&ids.practice_id, &ids.personal_id), via, now_ms)?;
            // The planner's statistics for the tables that just filled (their pages are
            // still in the cache; one commit for all of it).
            tx.execute_batch("ANALYZE")?;
            tx.commit()?;
            Ok(())
        })?;
        writer.ids = Some(ids.clone());
        writer.spaces.insert(
            SpaceKind::Personal,
            Space {
                id: ids.personal_id.clone(),
                schema: doc::schema_of(&personal),
                saved_heads: personal_heads,
                doc: Some(personal),
                repaired: Vec::new(),
            },
        );
        drop(guard);
        self.identity()?.ok_or(Error::NoPractice)
    }

    /// Loads a space's document now (it is otherwise loaded by the first write or merge);
    /// for a device that joined from a snapshot, this writes its member entry.
    pub fn load_document(&self, kind: SpaceKind) -> Result<()> {
        {
            let mut writer = self.lock_writer();
            let Writer { conn, spaces, .. } = &mut *writer;
            load_space(conn, spaces, kind)?;
        }
        self.dispatch_repairs();
        Ok(())
    }

    /// Whether this device joined from a snapshot and has not yet written its member
    /// entry into the practice document (the next sync round loads it and pushes that).
    pub fn has_pending_join(&self) -> Result<bool> {
        Ok(self
            .lock_reader()
            .query_row("SELECT 1 FROM home WHERE key = ?1", [PENDING_JOIN], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }
}

impl PendingJoin {
    fn member(&self) -> Member {
        Member {
            id: self.member_id.clone(),
            display_name: self.display_name.clone(),
            role: Role::Member,
            ideal_client: String::new(),
            accepting: true,
            archived: false,
        }
    }
}

fn encode(pending: &PendingJoin) -> Result<String> {
    serde_json::to_string(pending)
        .map_err(|e| Error::Internal(format!("encoding a pending join: {e}")))
}

/// Whether `space_id`'s document and read model were installed from a snapshot and not
/// checked yet.
pub(super) fn installed_unverified(conn: &rusqlite::Connection, space_id: &str) -> Result<bool> {
    Ok(queries::home_value(conn, UNVERIFIED_MODEL)?.as_deref() == Some(space_id))
}

/// Checks a read model installed from a snapshot's records against the document just
/// loaded, once: the rows are rebuilt from the document and the entities whose rows were
/// wrong kept in `space.repaired` for the listeners. The mark set at the install goes in
/// the same transaction, so a crash leaves it to be done at the next load.
pub(super) fn verify_installed_model(conn: &rusqlite::Connection, space: &mut Space) -> Result<()> {
    if !installed_unverified(conn, &space.id)? {
        return Ok(());
    }
    let doc = space.doc.as_ref().ok_or(Error::NoPractice)?;
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let repaired = crate::store::repair::repair(&tx, doc, &space.id, SpaceKind::Practice)?;
    tx.execute("DELETE FROM home WHERE key = ?1", [UNVERIFIED_MODEL])?;
    tx.commit()?;
    if repaired.is_empty() {
        tracing::info!("the read model installed from the snapshot matches its document");
    } else {
        tracing::warn!(
            entities = repaired.len(),
            "the read model installed from the snapshot differed from its document; rebuilt"
        );
    }
    space.repaired = repaired;
    Ok(())
}

/// Writes a pending join into the practice document just loaded, with the chunk, the
/// member's row and the removal of the pending record in one transaction.
pub(super) fn apply_pending_join(conn: &rusqlite::Connection, space: &mut Space) -> Result<()> {
    let Some(pending) = queries::home_value(conn, PENDING_JOIN)? else {
        return Ok(());
    };
    let pending: PendingJoin = serde_json::from_str(&pending)
        .map_err(|e| Error::Internal(format!("the pending join record is damaged: {e}")))?;
    let doc = space.doc.as_mut().ok_or(Error::NoPractice)?;
    doc.transact_with(
        |_| doc::commit_options(&pending.member_id, pending.at_ms),
        |tx| {
            if pending.device_only {
                add_device_to_member(tx, &pending.member_id, &pending.device_id)
            } else {
                add_member(
                    tx,
                    &pending.member_id,
                    &pending.display_name,
                    Role::Member,
                    Some(&pending.device_id),
                    pending.at_ms,
                )
            }
        },
    )
    .map_err(|f| f.error)?;
    persist_with(
        conn,
        space,
        &[(EntityKind::Member, pending.member_id.clone())],
        |tx| {
            tx.execute("DELETE FROM home WHERE key = ?1", [PENDING_JOIN])?;
            Ok(())
        },
    )?;
    tracing::info!("wrote this device's member entry into the practice document");
    Ok(())
}
