//! Background sync: keeps a home in step with its relay while the app runs. The engine's
//! [`Machine`] decides (connect, which round on what trigger, back off, status); this
//! driver performs its actions over QUIC on tokio and feeds the outcomes back: connects,
//! runs a round, subscribes to the relay's notices and runs another round on every notice,
//! local change or half minute, reconnects with exponential backoff and jitter, reports
//! the status to a listener. Everything it needs to resume is in the home's SQLite file.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use rapport_wire::client::{Notice, Notices, RelayClient};

use super::connect::connect_known;
use super::engine::{Action, Backoff, Event, Machine, SyncStatus};
use super::round::{SyncReport, apply_delivered, round_for};
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

/// Performs the machine's actions over QUIC and feeds their outcomes back to it.
async fn run(home: Arc<Home>, on_status: StatusListener, stop: CancellationToken) {
    let local = Arc::new(Notify::new());
    let wake = local.clone();
    let _subscription = home.subscribe(Arc::new(move |event: &ChangeEvent| {
        if event.origin == Origin::Local {
            wake.notify_one();
        }
    }));
    let mut machine = Machine::new(Backoff::default(), Box::new(rand::random));
    let mut link: Option<Link> = None;
    let mut event = Event::Started;
    loop {
        let mut next = None;
        for action in machine.handle(event) {
            next = match action {
                Action::Report(status) => {
                    on_status(&status);
                    continue;
                }
                Action::Disconnect => {
                    if let Some(link) = link.take() {
                        link.client.close().await;
                    }
                    continue;
                }
                Action::Finish => return,
                Action::Connect => Some(tokio::select! {
                    _ = stop.cancelled() => Event::StopRequested,
                    connected = Link::open(&home) => match connected {
                        Ok(opened) => {
                            let subscribed = opened.notices.is_some();
                            link = Some(opened);
                            Event::Connected { subscribed }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "relay unreachable");
                            failed(e, |reason| Event::ConnectFailed { reason })
                        }
                    },
                }),
                Action::Round(trigger) => Some(match &link {
                    // A round runs to its end (stopping waits for it), then stop is seen.
                    Some(link) => {
                        let progress =
                            |done, total| on_status(&SyncStatus::Syncing { done, total });
                        match round_for(&home, &link.client, trigger, &progress).await {
                            Ok(report) => Event::RoundDone {
                                at_ms: home.clock().now_ms(),
                                refused: refused(&report),
                                withheld: super::witness::last_found(&home).unwrap_or_default(),
                            },
                            Err(e) => failed(e, |reason| Event::RoundFailed { reason }),
                        }
                    }
                    None => Event::RoundFailed {
                        reason: "not connected".into(),
                    },
                }),
                Action::Listen { period } => Some(match link.as_mut() {
                    Some(link) => link.listen(&home, &local, &stop, period).await,
                    None => Event::ConnectionLost,
                }),
                Action::Sleep(wait) => Some(tokio::select! {
                    _ = stop.cancelled() => Event::StopRequested,
                    _ = tokio::time::sleep(wait) => Event::WaitOver,
                }),
            };
            // Only the last action of a list blocks; nothing follows it.
            break;
        }
        event = match next {
            Some(event) if !stop.is_cancelled() => event,
            _ => Event::StopRequested,
        };
    }
}

fn refused(report: &SyncReport) -> u32 {
    u32::try_from(report.rejected.len()).unwrap_or(u32::MAX)
}

/// A connection to the relay and its notices (none when the subscription was refused).
struct Link {
    client: RelayClient,
    notices: Option<Notices>,
}

impl Link {
    async fn open(home: &Home) -> crate::Result<Link> {
        let client = connect_known(home).await?;
        let spaces: Vec<rapport_wire::SpaceId> = [SpaceKind::Practice, SpaceKind::Personal]
            .into_iter()
            .filter(|k| home.current_space_key(*k).ok().flatten().is_some())
            .filter_map(|k| {
                home.space_id(k)
                    .ok()
                    .and_then(|id| rapport_wire::SpaceId::parse(&id))
            })
            .collect();
        let notices = match client.subscribe(spaces).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "subscription refused; syncing on a timer");
                None
            }
        };
        Ok(Link { client, notices })
    }

    /// Waits for a notice, a local change or the period; an entry carried inside a
    /// notice is merged here, in place, as the quickest way to show it.
    async fn listen(
        &mut self,
        home: &Home,
        local: &Notify,
        stop: &CancellationToken,
        period: Duration,
    ) -> Event {
        let notice = async {
            match self.notices.as_mut() {
                Some(n) => n.next().await.ok().flatten(),
                None => std::future::pending().await,
            }
        };
        let notice = tokio::select! {
            _ = stop.cancelled() => return Event::StopRequested,
            _ = local.notified() => return Event::LocalChange,
            _ = tokio::time::sleep(period) => return Event::PeriodElapsed,
            notice = notice => notice,
        };
        match notice {
            Some(Notice::Entry { space, entry }) => {
                let mut report = SyncReport::default();
                let merged = apply_delivered(home, &self.client, space, &entry, &mut report)
                    .await
                    .unwrap_or(false);
                Event::Delivered {
                    merged,
                    at_ms: home.clock().now_ms(),
                    refused: refused(&report),
                }
            }
            Some(Notice::Newest { .. }) => Event::Announced,
            None => Event::ConnectionLost,
        }
    }
}

/// The event for a failed connect or round: `retry` when trying again can succeed,
/// [`Event::Blocked`] when it cannot (removed, not a member, no common version).
fn failed(e: crate::Error, retry: impl FnOnce(String) -> Event) -> Event {
    match e.sync_failure() {
        Some(failure) if !failure.retries() => Event::Blocked {
            failure,
            reason: e.to_string(),
        },
        _ => retry(e.to_string()),
    }
}
