//! Background sync: keeps a home in step with its relay while the app runs. Connects,
//! runs a round, subscribes to the relay's notices and runs another round on every notice,
//! local change or half minute; reconnects with exponential backoff and jitter; reports
//! its status to a listener. Everything it needs to resume is in the home's SQLite file.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use rapport_wire::client::Notice;

use super::client::{SyncReport, apply_delivered, connect_known, round_for};
use super::engine::Trigger;
use super::engine::{Backoff, SyncStatus};
use crate::doc::SpaceKind;
use crate::events::{ChangeEvent, Origin};
use crate::home::Home;

/// Receives sync status changes.
pub type StatusListener = Arc<dyn Fn(&SyncStatus) + Send + Sync>;

/// A running background sync; stops when dropped or stopped.
pub struct SyncService {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SyncService {
    /// Starts syncing `home` in the background on the current tokio runtime.
    pub fn start(home: Arc<Home>, on_status: StatusListener) -> SyncService {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(home, on_status, stop.clone()));
        SyncService {
            stop,
            task: Some(task),
        }
    }

    /// Stops and waits for the current step to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SyncService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn up_to_date(home: &Home, report: &SyncReport) -> SyncStatus {
    SyncStatus::UpToDate {
        at_ms: home.clock().now_ms(),
        refused: u32::try_from(report.rejected.len()).unwrap_or(u32::MAX),
    }
}

/// How often a connected device syncs even without notices.
const PERIOD: Duration = Duration::from_secs(30);

async fn run(home: Arc<Home>, on_status: StatusListener, stop: CancellationToken) {
    let local = Arc::new(Notify::new());
    let wake = local.clone();
    let _subscription = home.subscribe(Arc::new(move |event: &ChangeEvent| {
        if event.origin == Origin::Local {
            wake.notify_one();
        }
    }));
    let mut backoff = Backoff::default();
    let status = |s: SyncStatus| on_status(&s);
    while !stop.is_cancelled() {
        status(SyncStatus::Connecting);
        let client = tokio::select! {
            _ = stop.cancelled() => break,
            client = connect_known(&home) => client,
        };
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                let wait = backoff.next(rand::random());
                tracing::info!(error = %e, ?wait, "relay unreachable; retrying");
                status(SyncStatus::Offline {
                    retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        backoff.reset();
        let spaces: Vec<rapport_wire::SpaceId> = [SpaceKind::Practice, SpaceKind::Personal]
            .into_iter()
            .filter(|k| home.current_space_key(*k).ok().flatten().is_some())
            .filter_map(|k| {
                home.space_id(k)
                    .ok()
                    .and_then(|id| rapport_wire::SpaceId::parse(&id))
            })
            .collect();
        let mut notices = match client.subscribe(spaces).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "subscription refused; syncing on a timer");
                None
            }
        };
        // `None`: nothing to run (an entry delivered inside a notice was merged already).
        let mut trigger = Some(Trigger::Full);
        loop {
            if let Some(trigger) = trigger {
                let progress = |done, total| on_status(&SyncStatus::Syncing { done, total });
                match round_for(&home, &client, trigger, &progress).await {
                    Ok(report) => status(up_to_date(&home, &report)),
                    Err(e) => {
                        status(SyncStatus::Error {
                            reason: e.to_string(),
                        });
                        break;
                    }
                }
            }
            let notice = async {
                match notices.as_mut() {
                    Some(n) => n.next().await.ok().flatten(),
                    None => std::future::pending().await,
                }
            };
            trigger = tokio::select! {
                _ = stop.cancelled() => break,
                notice = notice => match notice {
                    Some(Notice::Entry { space, entry }) => {
                        let mut report = SyncReport::default();
                        match apply_delivered(&home, &client, space, &entry, &mut report).await {
                            Ok(true) => {
                                status(up_to_date(&home, &report));
                                None
                            }
                            // A gap before it, or it could not be applied: pull.
                            Ok(false) | Err(_) => Some(Trigger::Notice),
                        }
                    }
                    Some(Notice::Newest { .. }) => Some(Trigger::Notice),
                    None => {
                        status(SyncStatus::Error { reason: "the relay connection dropped".into() });
                        break;
                    }
                },
                _ = local.notified() => Some(Trigger::Local),
                _ = tokio::time::sleep(PERIOD) => Some(Trigger::Full),
            };
        }
        client.close().await;
        if !stop.is_cancelled() {
            let wait = backoff.next(rand::random());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {},
            }
        }
    }
    on_status(&SyncStatus::Offline { retry_in_ms: 0 });
}
