//! Sync calls on [`RapportHome`]: connect to the practice's relay, invite, join, manage
//! devices, sync now, and background sync with a status listener. Async calls run on the
//! runtime this crate owns.

use std::sync::{Arc, Mutex, Weak};

use rapport_core::model::Identity;
use rapport_core::sync::engine::SyncStatus;
use rapport_core::sync::service::SyncService;
use rapport_core::sync::{self as client, Devices, SyncReport};
use rapport_wire::frames::Role;

use crate::error::{RapportError, Result};
use crate::home::RapportHome;
use crate::listeners::{SyncHandle, SyncStatusListener};
use crate::runtime::{run, runtime};

/// The role an invited colleague gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum InviteRole {
    /// Reads and writes the practice's data.
    Member,
    /// Also invites and removes devices.
    Admin,
}

/// Background sync of one home: the running service's handle and the last status.
#[derive(Default)]
pub(crate) struct SyncState {
    running: Mutex<Weak<SyncHandle>>,
    last: Arc<Mutex<Option<SyncStatus>>>,
}

impl SyncState {
    /// Stops background sync without waiting (closing the home, dropping it).
    pub(crate) fn stop_now(&self) {
        let running = self.running.lock().ok().and_then(|r| r.upgrade());
        if let Some(handle) = running {
            handle.stop_now();
        }
    }
}

#[uniffi::export]
impl RapportHome {
    /// Connects this practice to its relay with the relay's one-time setup code and
    /// uploads everything (end-to-end encrypted).
    pub async fn connect_relay(&self, setup_code: String) -> Result<SyncReport> {
        let home = self.home()?;
        run(async move { client::connect_practice(&home, &setup_code).await }).await
    }

    /// Creates an invite code for a colleague, valid for `ttl_secs` seconds.
    pub async fn create_invite(&self, role: InviteRole, ttl_secs: u64) -> Result<String> {
        let home = self.home()?;
        let role = match role {
            InviteRole::Member => Role::Member,
            InviteRole::Admin => Role::Admin,
        };
        run(async move { client::create_invite(&home, role, ttl_secs).await }).await
    }

    /// Creates an invite code for another device of this same clinician (their phone and
    /// laptop share the clinician's personal notes).
    pub async fn create_device_invite(&self, ttl_secs: u64) -> Result<String> {
        let home = self.home()?;
        run(async move { client::create_device_invite(&home, ttl_secs).await }).await
    }

    /// Joins a practice with an invite code (this home must be empty) and downloads it.
    /// Returns once the practice is readable; the first sync round (`sync_now` or
    /// `start_sync`) writes and announces this clinician's member entry.
    pub async fn join(&self, invite_code: String, member_name: String) -> Result<Identity> {
        let home = self.home()?;
        run(async move { client::join(&home, &invite_code, &member_name).await }).await
    }

    /// The practice's devices and pending invites, as its membership log says (fetched
    /// from the relay and verified on this device).
    pub async fn devices(&self) -> Result<Devices> {
        let home = self.home()?;
        run(async move { client::devices(&home).await }).await
    }

    /// Removes a device (owner or admin): it is refused on every space of the practice
    /// at once and the practice moves to a new key epoch, returned.
    pub async fn remove_device(&self, device_id: String) -> Result<u32> {
        let home = self.home()?;
        run(async move { client::remove_device(&home, &device_id).await }).await
    }

    /// Revokes a pending invite by its id (or an unambiguous start of it); returns the id.
    pub async fn revoke_invite(&self, invite_id: String) -> Result<String> {
        let home = self.home()?;
        run(async move { client::revoke_invite(&home, &invite_id).await }).await
    }

    /// Runs one sync round now.
    pub async fn sync_now(&self) -> Result<SyncReport> {
        let home = self.home()?;
        run(async move { client::sync_now(&home).await }).await
    }

    /// Starts background sync (live updates, reconnects with backoff); it runs until the
    /// returned handle is stopped, closed or dropped, or the home is closed.
    pub fn start_sync(&self, listener: Arc<dyn SyncStatusListener>) -> Result<Arc<SyncHandle>> {
        let mut running =
            self.sync.running.lock().map_err(|_| {
                RapportError::Internal("background sync state is unavailable".into())
            })?;
        if running.upgrade().is_some_and(|h| h.is_running()) {
            return Err(RapportError::Conflict(
                "background sync is already running for this home; stop its handle first".into(),
            ));
        }
        let home = self.home()?;
        if home.relay()?.is_none() {
            return Err(RapportError::Sync(
                "this practice is not connected to a relay yet: connect with a setup code or join with an invite".into(),
            ));
        }
        let last = self.sync.last.clone();
        let on_status = Arc::new(move |status: &SyncStatus| {
            if let Ok(mut slot) = last.lock() {
                *slot = Some(status.clone());
            }
            listener.on_status(status.clone());
        });
        let _entered = runtime()?.enter();
        let handle = SyncHandle::new(SyncService::start(home, on_status));
        *running = Arc::downgrade(&handle);
        Ok(handle)
    }

    /// The last status background sync reported (`None` before it first ran).
    pub fn sync_status(&self) -> Option<SyncStatus> {
        self.sync.last.lock().ok().and_then(|s| s.clone())
    }

    /// The relay this practice syncs through (`host:port`), if connected.
    pub fn relay_address(&self) -> Result<Option<String>> {
        Ok(self.home()?.relay()?.map(|r| r.addr))
    }
}
