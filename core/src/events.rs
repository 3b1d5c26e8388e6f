//! Change subscriptions: listeners hear which entities changed and whether the change was
//! made here or merged from another device. Dropping the subscription stops delivery.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;

use crate::doc::{EntityRef, SpaceKind};
use crate::model::EntityKind;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum Origin {
    /// Written on this device.
    Local,
    /// Merged from another device.
    Remote,
    /// Rebuilt from the document: the read model this device installed from a snapshot
    /// said something the document does not (a faulty or hostile snapshot), and the
    /// entities named were corrected.
    Repaired,
}

/// One entity that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ChangedEntity {
    /// Which collection.
    pub kind: EntityKind,
    /// Its id (empty for the practice record).
    pub id: String,
}

/// Text merged from a colleague that this device's privacy guard would have refused
/// (see `privacy`): it is kept, since refusing a merged change would split the devices,
/// and flagged so that someone can edit it out. The flag names where, never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PrivacyFlag {
    /// Which collection.
    pub kind: EntityKind,
    /// The entity's id.
    pub id: String,
    /// The field holding it.
    pub field: String,
    /// What it looks like ("a phone number", "a full date (such as a date of birth)").
    pub what: String,
}

/// What a listener hears after each committed write or merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ChangeEvent {
    /// The space that changed.
    pub space: SpaceKind,
    /// Local or remote.
    pub origin: Origin,
    /// The entities that changed, sorted.
    pub entities: Vec<ChangedEntity>,
    /// Merged text that looks like a client identifier (remote changes only).
    pub flagged: Vec<PrivacyFlag>,
}

impl ChangeEvent {
    pub(crate) fn new(space: SpaceKind, origin: Origin, refs: &[EntityRef]) -> Self {
        let mut entities: Vec<ChangedEntity> = refs
            .iter()
            .map(|(kind, id)| ChangedEntity {
                kind: *kind,
                id: id.clone(),
            })
            .collect();
        entities.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        entities.dedup();
        ChangeEvent {
            space,
            origin,
            entities,
            flagged: Vec::new(),
        }
    }
}

/// Receives change events; called on the thread that made or merged the change, after
/// the change is durable.
pub trait ChangeListener: Send + Sync {
    /// One committed change.
    fn on_change(&self, event: &ChangeEvent);
}

impl<F: Fn(&ChangeEvent) + Send + Sync> ChangeListener for F {
    fn on_change(&self, event: &ChangeEvent) {
        self(event)
    }
}

type Registry = Mutex<BTreeMap<u64, Arc<dyn ChangeListener>>>;

/// The listeners of one home.
#[derive(Default)]
pub struct Listeners {
    registry: Arc<Registry>,
    next: AtomicU64,
}

impl Listeners {
    /// Registers a listener; it hears events until the returned subscription is dropped.
    pub fn subscribe(&self, listener: Arc<dyn ChangeListener>) -> Subscription {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.registry.lock() {
            map.insert(id, listener);
        }
        Subscription {
            id,
            registry: Arc::downgrade(&self.registry),
        }
    }

    /// Delivers an event to every listener; a listener that panics does not stop the others.
    pub fn dispatch(&self, event: &ChangeEvent) {
        if event.entities.is_empty() {
            return;
        }
        let listeners: Vec<Arc<dyn ChangeListener>> = match self.registry.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => return,
        };
        for listener in listeners {
            if catch_unwind(AssertUnwindSafe(|| listener.on_change(event))).is_err() {
                tracing::warn!("a change listener panicked; the others were still called");
            }
        }
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.registry.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nobody listens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A live subscription; dropping it (or calling [`Subscription::cancel`]) stops delivery.
#[must_use = "the listener stops hearing events when the subscription is dropped"]
pub struct Subscription {
    id: u64,
    registry: Weak<Registry>,
}

impl Subscription {
    /// Stops delivery now.
    pub fn cancel(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade()
            && let Ok(mut map) = registry.lock()
        {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_subscription_stops_delivery() {
        let listeners = Listeners::default();
        let seen = Arc::new(Mutex::new(0));
        let counter = seen.clone();
        let sub = listeners.subscribe(Arc::new(move |_: &ChangeEvent| {
            *counter.lock().unwrap() += 1
        }));
        let event = ChangeEvent::new(
            SpaceKind::Practice,
            Origin::Local,
            &[(EntityKind::Partner, "p".into())],
        );
        listeners.dispatch(&event);
        drop(sub);
        listeners.dispatch(&event);
        assert_eq!(*seen.lock().unwrap(), 1);
        assert!(listeners.is_empty());
    }

    #[test]
    fn a_panicking_listener_does_not_stop_others() {
        let listeners = Listeners::default();
        let seen = Arc::new(Mutex::new(0));
        let counter = seen.clone();
        let _bad = listeners.subscribe(Arc::new(|_: &ChangeEvent| panic!("boom")));
        let _good = listeners.subscribe(Arc::new(move |_: &ChangeEvent| {
            *counter.lock().unwrap() += 1
        }));
        let event = ChangeEvent::new(
            SpaceKind::Practice,
            Origin::Remote,
            &[(EntityKind::Member, "m".into())],
        );
        listeners.dispatch(&event);
        assert_eq!(*seen.lock().unwrap(), 1);
    }
}
