//! The relay's QUIC server: accept loop, connections, streams, requests.
//!
//! Structured concurrency: the accept loop owns a `JoinSet` of connection tasks, each of
//! which owns a `JoinSet` of stream tasks; handshakes run inside connection tasks so one
//! slow client cannot stall the loop; a panic in a task is logged, never propagated.
//! Shutdown stops accepting, lets in-flight requests finish (bounded), closes every
//! connection and waits for the endpoint to go idle.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rapport_wire::frames::{
    CLOSE_BUSY, CLOSE_REMOVED, CLOSE_SHUTDOWN, Entry, ErrorCode, FrameError, MAX_FIRST_FRAME,
    MAX_FRAME, Request, Response, Role, read_frame, write_frame,
};
use rapport_wire::identity::Identity;
use rapport_wire::tls::{ServerLimits, peer_device, server_config};
use rapport_wire::{DeviceId, SUPPORTED_VERSIONS, SpaceId};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::limits::RateLimiter;
use crate::rules;
use crate::store::{Outcome, Refusal, Store};

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Connections held at once; more are refused.
    pub max_connections: usize,
    /// Requests per second per device, on average.
    pub rate_per_sec: f64,
    /// Requests a device may make in a burst.
    pub burst: f64,
    /// Per-connection limits (streams, idle timeout).
    pub limits: ServerLimits,
    /// A handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request frame must arrive within this.
    pub request_timeout: Duration,
    /// In-flight requests get this long to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Longest invite lifetime.
    pub max_invite_ttl: Duration,
    /// Shortest invite lifetime.
    pub min_invite_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            max_connections: 4_096,
            rate_per_sec: 200.0,
            burst: 400.0,
            limits: ServerLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_invite_ttl: Duration::from_secs(30 * 24 * 3600),
            min_invite_ttl: Duration::from_secs(60),
        }
    }
}

struct State {
    store: Arc<Store>,
    config: Config,
    /// New entries: `(space, seq, the entry itself when small enough to carry inline)`.
    notices: broadcast::Sender<(SpaceId, u64, Option<Arc<Entry>>)>,
    connections: Mutex<HashMap<DeviceId, Vec<(u64, quinn::Connection)>>>,
    next_connection: AtomicU64,
    rate: RateLimiter,
    shutdown: CancellationToken,
}

/// A bound relay, ready to run.
pub struct Relay {
    state: Arc<State>,
    endpoint: quinn::Endpoint,
}

/// Failures starting the relay.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] rapport_wire::tls::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Relay {
    /// Binds the relay's endpoint.
    pub fn bind(
        store: Arc<Store>,
        identity: &Identity,
        config: Config,
    ) -> Result<Relay, ServeError> {
        let mut server = server_config(identity, config.limits)?;
        server.max_incoming(config.max_connections.max(1) * 2);
        let endpoint = quinn::Endpoint::server(server, config.listen)
            .map_err(|e| ServeError::Bind(config.listen, e))?;
        let (notices, _) = broadcast::channel(4_096);
        let state = Arc::new(State {
            store,
            rate: RateLimiter::new(config.rate_per_sec, config.burst),
            config,
            notices,
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        Ok(Relay { state, endpoint })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.state
            .connections
            .lock()
            .map(|c| c.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Relay { state, endpoint } = self;
        let limit = Arc::new(Semaphore::new(state.config.max_connections));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(addr = ?endpoint.local_addr().ok(), "relay serving");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    match limit.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let state = state.clone();
                            tasks.spawn(async move {
                                connection(state, incoming).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!("connection limit reached; refusing a connection");
                            incoming.refuse();
                        }
                    }
                }
                Some(done) = tasks.join_next() => log_join(done),
            }
        }
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        endpoint.set_server_config(None);
        state.shutdown.cancel();
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                log_join(done)
            }
        };
        if tokio::time::timeout(state.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the grace period; closing anyway");
        }
        endpoint.close(CLOSE_SHUTDOWN.into(), b"relay shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
        tasks.abort_all();
        state.store.close();
        tracing::info!("relay stopped");
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("a relay task panicked: {e}");
    }
}

async fn connection(state: Arc<State>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "refused before the handshake");
            return;
        }
    };
    let conn = match tokio::time::timeout(state.config.handshake_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "handshake timed out");
            return;
        }
    };
    let Some(device) = peer_device(&conn) else {
        conn.close(
            ErrorCode::BadRequest.quic_code().into(),
            b"a client certificate is required",
        );
        return;
    };
    let id = state.next_connection.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut connections) = state.connections.lock() {
        connections
            .entry(device)
            .or_default()
            .push((id, conn.clone()));
    }
    tracing::debug!(%remote, %device, "device connected");
    let hello = Arc::new(AtomicBool::new(false));
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    streams.spawn(stream_task(state.clone(), device, hello.clone(), send, recv));
                }
                Err(_) => break,
            },
            Some(done) = streams.join_next() => log_join(done),
        }
    }
    while let Some(done) = streams.join_next().await {
        log_join(done);
    }
    if let Ok(mut connections) = state.connections.lock()
        && let Some(list) = connections.get_mut(&device)
    {
        list.retain(|(other, _)| *other != id);
        if list.is_empty() {
            connections.remove(&device);
        }
    }
    if state.shutdown.is_cancelled() {
        conn.close(CLOSE_SHUTDOWN.into(), b"relay shutting down");
    }
}

async fn stream_task(
    state: Arc<State>,
    device: DeviceId,
    hello: Arc<AtomicBool>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // Reading a request is not yet a request in flight: shutdown does not wait for it.
    let read = tokio::time::timeout(
        state.config.request_timeout,
        // Until its Hello is answered, a connection may send only a small frame: a
        // stranger cannot make the relay hold megabytes for it.
        read_frame::<_, Request>(
            &mut recv,
            if hello.load(Ordering::Acquire) {
                MAX_FRAME
            } else {
                MAX_FIRST_FRAME
            },
        ),
    );
    let read = tokio::select! {
        read = read => read,
        _ = state.shutdown.cancelled() => return,
    };
    let request = match read {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) => return,
        Ok(Err(FrameError::TooLarge(len, max))) => {
            tracing::debug!(%device, len, max, "frame over the limit");
            reject(&mut send, &mut recv, ErrorCode::TooLarge);
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%device, error = %e, "malformed frame");
            reject(&mut send, &mut recv, ErrorCode::BadRequest);
            return;
        }
        Err(_) => {
            reject(&mut send, &mut recv, ErrorCode::BadRequest);
            return;
        }
    };
    if let Request::Subscribe { spaces } = request {
        if !hello.load(Ordering::Acquire) {
            let _ = respond(
                &mut send,
                &refused(ErrorCode::BadRequest, "say Hello first"),
            )
            .await;
            return;
        }
        subscribe(&state, device, spaces, send).await;
        return;
    }
    let response = match request {
        Request::Hello { versions } => {
            match SUPPORTED_VERSIONS.iter().find(|v| versions.contains(v)) {
                Some(version) => {
                    hello.store(true, Ordering::Release);
                    Response::Hello { version: *version }
                }
                None => refused(
                    ErrorCode::UnsupportedVersion,
                    rapport_wire::version_mismatch(&versions, SUPPORTED_VERSIONS),
                ),
            }
        }
        _ if !hello.load(Ordering::Acquire) => refused(ErrorCode::BadRequest, "say Hello first"),
        _ if !state.rate.allow(device) => refused(
            ErrorCode::RateLimited,
            "too many requests; slow down and retry",
        ),
        request => match handle(&state, device, request).await {
            Ok(response) => response,
            Err(refusal) => Response::Error {
                code: refusal.code,
                message: refusal.message,
            },
        },
    };
    let _ = respond(&mut send, &response).await;
}

fn reject(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: ErrorCode) {
    let _ = recv.stop(code.quic_code().into());
    let _ = send.reset(code.quic_code().into());
}

async fn respond(send: &mut quinn::SendStream, response: &Response) -> Result<(), FrameError> {
    write_frame(send, response).await?;
    send.finish()
        .map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
    Ok(())
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

/// Runs [`rules::member`] off the runtime.
async fn member(state: &State, space: SpaceId, device: DeviceId) -> Outcome<Role> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || rules::member(&store, space, device))
        .await
        .unwrap_or_else(|_| Err(failed()))
}

fn failed() -> Refusal {
    Refusal::new(ErrorCode::Internal, "the relay failed; retry later")
}

/// Answers a request ([`rules::answer`], off the runtime), then announces its new entry
/// and closes the connections of the devices it removed.
async fn handle(state: &State, device: DeviceId, request: Request) -> Outcome<Response> {
    let store = state.store.clone();
    let answer = tokio::task::spawn_blocking(move || rules::answer(&store, device, request))
        .await
        .unwrap_or_else(|_| Err(failed()))?;
    if let Some((space, seq, entry)) = answer.notice {
        let _ = state.notices.send((space, seq, entry.map(Arc::new)));
    }
    for removed in answer.removed {
        close_device(state, removed);
        tracing::info!(%removed, by = %device, "device removed");
    }
    Ok(answer.response)
}

/// Closes every open connection of a removed device at once.
fn close_device(state: &State, device: DeviceId) {
    let connections = state
        .connections
        .lock()
        .ok()
        .and_then(|mut c| c.remove(&device))
        .unwrap_or_default();
    for (_, conn) in connections {
        conn.close(
            CLOSE_REMOVED.into(),
            b"this device was removed from a space",
        );
    }
}

async fn subscribe(
    state: &State,
    device: DeviceId,
    spaces: Vec<SpaceId>,
    mut send: quinn::SendStream,
) {
    if spaces.is_empty() {
        let _ = respond(
            &mut send,
            &refused(
                ErrorCode::BadRequest,
                "a subscription names at least one space",
            ),
        )
        .await;
        return;
    }
    if spaces.len() > 64 {
        let _ = respond(
            &mut send,
            &refused(ErrorCode::TooLarge, "at most 64 spaces per subscription"),
        )
        .await;
        return;
    }
    for space in &spaces {
        if let Err(refusal) = member(state, *space, device).await {
            let _ = respond(
                &mut send,
                &Response::Error {
                    code: refusal.code,
                    message: refusal.message,
                },
            )
            .await;
            return;
        }
    }
    let mut notices = state.notices.subscribe();
    if write_frame(&mut send, &Response::Subscribed).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = send.stopped() => break,
            notice = notices.recv() => match notice {
                Ok((space, seq, inline)) if spaces.contains(&space) => {
                    let frame = match inline {
                        Some(entry) => Response::Delivered { space, entry: Entry::clone(&entry) },
                        None => Response::Notice { space, seq },
                    };
                    if write_frame(&mut send, &frame).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                // Missed notices are harmless: the device pulls from its cursor anyway.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    let _ = send.finish();
}

/// Refuses connections beyond the limit at the QUIC level (code used by clients).
pub const BUSY_CODE: u32 = CLOSE_BUSY;
