//! The Automerge document of a space: its shape (schema v1), genesis and change tracking.
//!
//! Shape (DESIGN.md, "Data"): the root holds `schema` and one map per collection, all made
//! in the genesis change by the space's creator; joiners load that history before writing,
//! so no two devices ever create the same container concurrently. Entities are maps under
//! their UUIDv7 id; sets are maps of `value: true`; free text is `Text`; nothing is deleted.

pub mod bounds;
pub mod fields;
pub mod guard;
pub mod project;

use std::collections::BTreeSet;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, PatchAction, Prop, ROOT, ReadDoc};

use crate::error::{Error, Result};
use crate::model::EntityKind;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Which kind of space a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum SpaceKind {
    /// The practice's shared referral network.
    Practice,
    /// A clinician's private notes, synced only among that clinician's devices.
    Personal,
}

impl SpaceKind {
    /// Stable code stored in SQLite.
    pub fn code(self) -> &'static str {
        match self {
            SpaceKind::Practice => "practice",
            SpaceKind::Personal => "personal",
        }
    }

    /// Parses the code stored in SQLite.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "practice" => Some(SpaceKind::Practice),
            "personal" => Some(SpaceKind::Personal),
            _ => None,
        }
    }

    /// The top-level collections the genesis change creates.
    pub fn collections(self) -> &'static [Collection] {
        match self {
            SpaceKind::Practice => &[
                Collection::Members,
                Collection::Streams,
                Collection::Partners,
                Collection::Touchpoints,
                Collection::Referrals,
                Collection::Followups,
                Collection::Settings,
            ],
            SpaceKind::Personal => &[Collection::Notes],
        }
    }
}

/// A top-level map of a space document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `members`
    Members,
    /// `streams`
    Streams,
    /// `partners`
    Partners,
    /// `touchpoints`
    Touchpoints,
    /// `referrals`
    Referrals,
    /// `followups`
    Followups,
    /// `settings` (practice-wide preferences, e.g. cadences)
    Settings,
    /// `notes` (personal space)
    Notes,
}

impl Collection {
    /// The key under the root.
    pub fn key(self) -> &'static str {
        match self {
            Collection::Members => "members",
            Collection::Streams => "streams",
            Collection::Partners => "partners",
            Collection::Touchpoints => "touchpoints",
            Collection::Referrals => "referrals",
            Collection::Followups => "followups",
            Collection::Settings => "settings",
            Collection::Notes => "notes",
        }
    }

    /// The entity kind stored in this collection.
    pub fn entity(self) -> EntityKind {
        match self {
            Collection::Members => EntityKind::Member,
            Collection::Streams => EntityKind::Stream,
            Collection::Partners => EntityKind::Partner,
            Collection::Touchpoints => EntityKind::Touchpoint,
            Collection::Referrals => EntityKind::Referral,
            Collection::Followups => EntityKind::Followup,
            Collection::Settings => EntityKind::Practice,
            Collection::Notes => EntityKind::Note,
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        [
            Collection::Members,
            Collection::Streams,
            Collection::Partners,
            Collection::Touchpoints,
            Collection::Referrals,
            Collection::Followups,
            Collection::Settings,
            Collection::Notes,
        ]
        .into_iter()
        .find(|c| c.key() == key)
    }
}

/// One changed entity: its kind and id (the practice record has an empty id).
pub type EntityRef = (EntityKind, String);

/// Creates a new time-ordered entity id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// The Automerge actor of a device in a space: the device id's bytes, so the history says
/// which device wrote each change.
pub fn actor_for(device_id: &str) -> ActorId {
    if let Some(id) = rapport_wire::DeviceId::parse(device_id) {
        return ActorId::from(id.0.as_slice());
    }
    match uuid::Uuid::parse_str(device_id) {
        Ok(u) => ActorId::from(u.as_bytes().as_slice()),
        Err(_) => ActorId::from(device_id.as_bytes()),
    }
}

/// Commit metadata: every change says which member made it and when.
pub fn commit_options(member_id: &str, now_ms: i64) -> CommitOptions {
    CommitOptions::default()
        .with_message(format!("member:{member_id}"))
        .with_time(now_ms / 1000)
}

/// Makes the genesis change of a space: the schema version, every collection, and `init`
/// (which writes the space's own fields: the practice record, or the personal space owner).
pub fn genesis(
    kind: SpaceKind,
    actor: ActorId,
    member_id: &str,
    now_ms: i64,
    init: impl FnOnce(&mut Transaction<'_>) -> Result<()>,
) -> Result<Automerge> {
    let mut doc = Automerge::new().with_actor(actor);
    doc.transact_with(
        |_| commit_options(member_id, now_ms),
        |tx| -> Result<()> {
            tx.put(ROOT, "schema", automerge::ScalarValue::Uint(SCHEMA_VERSION))?;
            tx.put(ROOT, "space_kind", kind.code())?;
            for collection in kind.collections() {
                tx.put_object(ROOT, collection.key(), ObjType::Map)?;
            }
            init(tx)
        },
    )
    .map_err(|failure| failure.error)?;
    Ok(doc)
}

/// The schema version a document declares (0 if none).
pub fn schema_of<R: ReadDoc>(doc: &R) -> u64 {
    fields::get_i64(doc, &ROOT, "schema").map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// Checks that a document is a space of `kind` whose genesis is present.
pub fn check_shape<R: ReadDoc>(doc: &R, kind: SpaceKind) -> Result<()> {
    let not = |reason: String| Error::NotASpace {
        expected: kind.code(),
        reason,
    };
    if schema_of(doc) == 0 {
        return Err(not("it has no schema version".into()));
    }
    match fields::get_str(doc, &ROOT, "space_kind") {
        Some(k) if k == kind.code() => {}
        Some(k) => return Err(not(format!("it is a {k} space"))),
        None => return Err(not("it does not say which kind of space it is".into())),
    }
    for collection in kind.collections() {
        if fields::get_map(doc, &ROOT, collection.key()).is_none() {
            return Err(not(format!(
                "the {} collection is missing",
                collection.key()
            )));
        }
    }
    Ok(())
}

/// The object id of a top-level collection.
pub fn collection<R: ReadDoc>(doc: &R, collection: Collection) -> Result<ObjId> {
    fields::get_map(doc, &ROOT, collection.key()).ok_or_else(|| Error::NotASpace {
        expected: "Rapport",
        reason: format!("the {} collection is missing", collection.key()),
    })
}

/// The map of one entity, if it exists.
pub fn entity<R: ReadDoc>(doc: &R, coll: Collection, id: &str) -> Result<Option<ObjId>> {
    let parent = collection(doc, coll)?;
    Ok(fields::get_map(doc, &parent, id))
}

/// The map of one entity that must exist: [`Error::NotFound`] naming it (`entity`, as a
/// user says it) otherwise.
pub fn existing<R: ReadDoc>(
    doc: &R,
    coll: Collection,
    entity: &'static str,
    id: &str,
) -> Result<ObjId> {
    self::entity(doc, coll, id)?.ok_or_else(|| Error::NotFound {
        entity,
        id: id.to_string(),
    })
}

/// The entities whose state differs between two sets of heads, found from Automerge's
/// patches: used after merging remote changes to update only what moved in the read model.
pub fn changed_entities(
    doc: &Automerge,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> BTreeSet<EntityRef> {
    let mut out = BTreeSet::new();
    for patch in doc.diff(before, after) {
        let mut props = patch.path.iter().map(|(_, prop)| prop);
        let top = props.next();
        let second = props.next();
        let action_key = match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.clone()),
            PatchAction::Conflict {
                prop: Prop::Map(key),
            } => Some(key.clone()),
            _ => None,
        };
        let (coll_key, id) = match (top, second) {
            (Some(Prop::Map(coll)), Some(Prop::Map(id))) => (Some(coll.clone()), Some(id.clone())),
            (Some(Prop::Map(coll)), None) => (Some(coll.clone()), action_key),
            // A change at the root itself (schema, space kind, a new collection).
            (None, _) => (None, None),
            _ => continue,
        };
        match coll_key.as_deref().and_then(Collection::from_key) {
            Some(Collection::Settings) => {
                out.insert((EntityKind::Practice, String::new()));
            }
            Some(coll) => {
                if let Some(id) = id {
                    out.insert((coll.entity(), id));
                }
            }
            None => {
                out.insert((EntityKind::Practice, String::new()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn practice() -> Automerge {
        genesis(SpaceKind::Practice, ActorId::random(), "m1", 1_000, |tx| {
            tx.put_object(ROOT, "practice", ObjType::Map)?;
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn genesis_creates_every_collection() {
        let doc = practice();
        check_shape(&doc, SpaceKind::Practice).unwrap();
        assert_eq!(schema_of(&doc), SCHEMA_VERSION);
        let err = check_shape(&doc, SpaceKind::Personal)
            .unwrap_err()
            .to_string();
        assert!(err.contains("practice space"), "{err}");
        let change = doc.get_changes(&[]).pop().unwrap();
        assert_eq!(
            change.message().map(|m| m.to_string()).as_deref(),
            Some("member:m1")
        );
    }

    #[test]
    fn changed_entities_names_the_entity_touched() {
        let mut doc = practice();
        let before = doc.get_heads();
        doc.transact(|tx| -> Result<()> {
            let partners = collection(tx, Collection::Partners)?;
            let p = tx.put_object(&partners, "p1", ObjType::Map)?;
            tx.put(&p, "name", "A")?;
            Ok(())
        })
        .unwrap();
        let mid = doc.get_heads();
        doc.transact(|tx| -> Result<()> {
            let p = entity(tx, Collection::Partners, "p1")?.unwrap();
            fields::put_text(tx, &p, "ideal_client", "adults with anxiety")?;
            let settings = collection(tx, Collection::Settings)?;
            tx.put(&settings, "cadence", "14,21,30")?;
            Ok(())
        })
        .unwrap();
        let after = doc.get_heads();
        let first = changed_entities(&doc, &before, &mid);
        assert_eq!(
            first,
            BTreeSet::from([(EntityKind::Partner, "p1".to_string())])
        );
        let second = changed_entities(&doc, &mid, &after);
        assert!(second.contains(&(EntityKind::Partner, "p1".to_string())));
        assert!(second.contains(&(EntityKind::Practice, String::new())));
    }
}
