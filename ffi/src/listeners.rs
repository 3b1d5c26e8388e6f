//! Foreign listeners for data changes and sync status, and the handles that keep them
//! registered: closing or dropping a handle stops delivery.

use std::sync::{Arc, Mutex};

use rapport_core::ChangeEvent;
use rapport_core::Subscription;
use rapport_core::sync::engine::SyncStatus;
use rapport_core::sync::service::SyncService;

/// Hears every committed change to the home's data, local or merged from another device.
/// Called on the thread that made the change; hand heavy work to your own executor.
#[uniffi::export(with_foreign)]
pub trait ChangeListener: Send + Sync {
    /// One committed change.
    fn on_change(&self, event: ChangeEvent);
}

/// Hears background sync's status: offline, connecting, syncing, up to date, error.
/// Called on a Rapport worker thread.
#[uniffi::export(with_foreign)]
pub trait SyncStatusListener: Send + Sync {
    /// The new status.
    fn on_status(&self, status: SyncStatus);
}

/// Keeps a change listener registered; `cancel()`, closing or dropping it stops delivery.
#[derive(uniffi::Object)]
pub struct ListenerHandle {
    subscription: Mutex<Option<Subscription>>,
}

impl ListenerHandle {
    pub(crate) fn new(subscription: Subscription) -> Arc<Self> {
        Arc::new(ListenerHandle {
            subscription: Mutex::new(Some(subscription)),
        })
    }
}

#[uniffi::export]
impl ListenerHandle {
    /// Stops delivery now (also happens when the handle is closed or collected).
    pub fn cancel(&self) {
        if let Ok(mut slot) = self.subscription.lock() {
            slot.take();
        }
    }

    /// Whether the listener still hears changes.
    pub fn is_active(&self) -> bool {
        self.subscription
            .lock()
            .map(|s| s.is_some())
            .unwrap_or(false)
    }
}

/// Background sync while it runs; `stop()`, closing or dropping it stops syncing.
#[derive(uniffi::Object)]
pub struct SyncHandle {
    service: Mutex<Option<SyncService>>,
}

impl SyncHandle {
    pub(crate) fn new(service: SyncService) -> Arc<Self> {
        Arc::new(SyncHandle {
            service: Mutex::new(Some(service)),
        })
    }

    /// Stops without waiting: dropping the service cancels it.
    pub(crate) fn stop_now(&self) {
        if let Ok(mut slot) = self.service.lock() {
            slot.take();
        }
    }
}

#[uniffi::export]
impl SyncHandle {
    /// Stops background sync and waits until the current step has ended.
    pub async fn stop(&self) {
        let service = self.service.lock().ok().and_then(|mut s| s.take());
        if let Some(service) = service
            && let Ok(runtime) = crate::runtime::runtime()
        {
            let _ = runtime.spawn(service.stop()).await;
        }
    }

    /// Whether background sync is running.
    pub fn is_running(&self) -> bool {
        self.service.lock().map(|s| s.is_some()).unwrap_or(false)
    }
}
