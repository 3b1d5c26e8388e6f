//! The relay's QUIC server: accept loop, connections, streams, requests.
//!
//! Structured concurrency: the accept loop owns a `JoinSet` of connection tasks, each of
//! which owns a `JoinSet` of stream tasks; handshakes run inside connection tasks so one
//! slow client cannot stall the loop; a panic in a task is logged, never propagated.
//! Shutdown stops accepting, lets in-flight requests finish (bounded), closes every
//! connection and waits for the endpoint to go idle.
//!
//! Under hostile load: an Initial from an address that has not proven it receives is
//! answered with a stateless QUIC Retry and nothing is kept; a validated address gets a
//! handshake slot (bounded, and bounded per address); a connection takes one of the
//! connection slots only once its handshake is done, one device at most a few of them;
//! a device that is a member of no space is closed after a short grace. A frame's length
//! and kind are read before its body: each kind has its cap, strangers may send only small
//! frames, and every body counts against one byte budget for all requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rapport_wire::frames::{
    CLOSE_BUSY, CLOSE_REMOVED, CLOSE_SHUTDOWN, Entry, ErrorCode, FrameError, MAX_FIRST_FRAME,
    MAX_FRAME, MAX_STRANGER_FRAME, Request, Response, Role, read_body, read_head, request_cap,
    write_frame,
};
use rapport_wire::identity::Identity;
use rapport_wire::tls::{ServerLimits, peer_device, server_config};
use rapport_wire::{DeviceId, SUPPORTED_VERSIONS, SpaceId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::limits::{AddressSlot, PerAddress, RateLimiter};
use crate::rules;
use crate::store::{Outcome, Refusal, SpaceQuota, Store};

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Connections held at once (counted once their handshake is done); more are closed
    /// as busy.
    pub max_connections: usize,
    /// Handshakes in progress at once, each from an address that answered a Retry.
    pub max_handshakes: usize,
    /// Handshakes and connections from one IP address at once.
    pub max_per_address: usize,
    /// Connections of one device at once.
    pub max_per_device: usize,
    /// A connection whose device is a member of no space by then (it neither registered a
    /// practice nor joined one) is closed.
    pub stranger_grace: Duration,
    /// Request bytes held in memory at once, for all connections together; a request that
    /// would go over waits, then is refused as busy.
    pub in_flight_bytes: usize,
    /// Live subscriptions per connection.
    pub max_subscriptions: usize,
    /// What each space may store.
    pub quota: SpaceQuota,
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
            max_handshakes: 256,
            max_per_address: 256,
            max_per_device: 16,
            stranger_grace: Duration::from_secs(30),
            in_flight_bytes: 128 * 1024 * 1024,
            max_subscriptions: 4,
            quota: SpaceQuota::default(),
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
    addresses: Arc<PerAddress>,
    slots: Arc<Semaphore>,
    budget: Arc<Semaphore>,
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
        store.set_quota(config.quota);
        let mut server = server_config(identity, config.limits)?;
        server.max_incoming(config.max_handshakes.max(1) * 4);
        let endpoint = quinn::Endpoint::server(server, config.listen)
            .map_err(|e| ServeError::Bind(config.listen, e))?;
        let (notices, _) = broadcast::channel(4_096);
        let state = Arc::new(State {
            store,
            rate: RateLimiter::new(config.rate_per_sec, config.burst),
            addresses: PerAddress::new(config.max_per_address),
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
            budget: Arc::new(Semaphore::new(config.in_flight_bytes.max(MAX_FIRST_FRAME))),
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
        let handshakes = Arc::new(Semaphore::new(state.config.max_handshakes.max(1)));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(addr = ?endpoint.local_addr().ok(), "relay serving");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    if !incoming.remote_address_validated() {
                        // Stateless: the address must echo the Retry's token before the
                        // relay keeps anything for it. A spoofed source never can.
                        let _ = incoming.retry();
                        continue;
                    }
                    let Some(address) = state.addresses.admit(incoming.remote_address().ip())
                    else {
                        tracing::debug!(remote = %incoming.remote_address(), "too many connections from one address");
                        incoming.refuse();
                        continue;
                    };
                    match handshakes.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let state = state.clone();
                            tasks.spawn(connection(state, incoming, permit, address));
                        }
                        Err(_) => {
                            tracing::warn!("handshake limit reached; refusing a connection");
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

async fn connection(
    state: Arc<State>,
    incoming: quinn::Incoming,
    handshake: OwnedSemaphorePermit,
    _address: AddressSlot,
) {
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
    drop(handshake);
    let Some(device) = peer_device(&conn) else {
        conn.close(
            ErrorCode::BadRequest.quic_code().into(),
            b"a client certificate is required",
        );
        return;
    };
    // A connection slot is taken only now, by a peer that finished its handshake.
    let Ok(_slot) = state.slots.clone().try_acquire_owned() else {
        tracing::warn!(%remote, "connection limit reached; closing a new connection");
        conn.close(
            CLOSE_BUSY.into(),
            b"the relay is at its connection limit; retry later",
        );
        return;
    };
    let id = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let admitted = state.connections.lock().is_ok_and(|mut connections| {
        let list = connections.entry(device).or_default();
        if list.len() >= state.config.max_per_device {
            return false;
        }
        list.push((id, conn.clone()));
        true
    });
    if !admitted {
        tracing::debug!(%remote, %device, "too many connections from one device");
        conn.close(
            CLOSE_BUSY.into(),
            b"this device has too many connections open",
        );
        return;
    }
    tracing::debug!(%remote, %device, "device connected");
    let peer = Arc::new(Peer {
        device,
        hello: AtomicBool::new(false),
        member: AtomicBool::new(false),
        subscriptions: AtomicUsize::new(0),
    });
    let mut streams = JoinSet::new();
    let grace = tokio::time::sleep(state.config.stranger_grace);
    tokio::pin!(grace);
    let mut graced = false;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = &mut grace, if !graced => {
                graced = true;
                if !is_member(&state, &peer).await {
                    tracing::debug!(%remote, %device, "closing a device that is a member of no space");
                    conn.close(
                        ErrorCode::NotMember.quic_code().into(),
                        b"this device is a member of no space on this relay",
                    );
                    break;
                }
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    streams.spawn(stream_task(state.clone(), peer.clone(), send, recv));
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

/// One connection's peer, as its streams see it.
struct Peer {
    device: DeviceId,
    /// Its Hello was answered.
    hello: AtomicBool,
    /// It is known to be a member of some space (once true, it stays: a removal closes
    /// the connection).
    member: AtomicBool,
    /// Live subscriptions on this connection.
    subscriptions: AtomicUsize,
}

/// Whether the peer's device is a member of any space (asked of the store once, then
/// remembered for the connection).
async fn is_member(state: &State, peer: &Peer) -> bool {
    if peer.member.load(Ordering::Acquire) {
        return true;
    }
    let store = state.store.clone();
    let device = peer.device;
    let member = tokio::task::spawn_blocking(move || store.member_anywhere(device))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
    if member {
        peer.member.store(true, Ordering::Release);
    }
    member
}

/// Why a request was not read.
enum Unread {
    /// The frame was over a cap, malformed, cut off or late.
    Frame(FrameError),
    /// The in-flight budget stayed spent for the whole request timeout.
    Busy,
}

/// Reads one request: its length and kind first, checked against the caps (the first
/// frame's before Hello, the kind's, a stranger's), then its body once the in-flight budget
/// has room for it. The permit holds the body's bytes in the budget until it is dropped.
async fn read_request(
    state: &State,
    peer: &Peer,
    recv: &mut quinn::RecvStream,
) -> Result<Option<(Request, OwnedSemaphorePermit)>, Unread> {
    let hello = peer.hello.load(Ordering::Acquire);
    let most = if hello { MAX_FRAME } else { MAX_FIRST_FRAME };
    let Some((len, first)) = read_head(recv, most).await.map_err(Unread::Frame)? else {
        return Ok(None);
    };
    let cap = if hello { request_cap(first) } else { most };
    if cap == 0 {
        return Err(Unread::Frame(FrameError::Malformed(format!(
            "no request kind {first}"
        ))));
    }
    if len > cap {
        return Err(Unread::Frame(FrameError::TooLarge(len, cap)));
    }
    if len > MAX_STRANGER_FRAME && !is_member(state, peer).await {
        return Err(Unread::Frame(FrameError::TooLarge(len, MAX_STRANGER_FRAME)));
    }
    let bytes = u32::try_from(len).map_err(|_| Unread::Frame(FrameError::TooLarge(len, cap)))?;
    let wait = state.config.request_timeout / 2;
    let permit = tokio::time::timeout(wait, state.budget.clone().acquire_many_owned(bytes))
        .await
        .map_err(|_| Unread::Busy)?
        .map_err(|_| Unread::Busy)?;
    let request = read_body(recv, (len, first)).await.map_err(Unread::Frame)?;
    Ok(Some((request, permit)))
}

async fn stream_task(
    state: Arc<State>,
    peer: Arc<Peer>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let device = peer.device;
    // Reading a request is not yet a request in flight: shutdown does not wait for it.
    let read = tokio::time::timeout(
        state.config.request_timeout,
        read_request(&state, &peer, &mut recv),
    );
    let read = tokio::select! {
        read = read => read,
        _ = state.shutdown.cancelled() => return,
    };
    let (request, _budget) = match read {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) => return,
        Ok(Err(Unread::Frame(FrameError::TooLarge(len, max)))) => {
            tracing::debug!(%device, len, max, "frame over the limit");
            reject(&mut send, &mut recv, ErrorCode::TooLarge);
            return;
        }
        Ok(Err(Unread::Frame(e))) => {
            tracing::debug!(%device, error = %e, "malformed frame");
            reject(&mut send, &mut recv, ErrorCode::BadRequest);
            return;
        }
        Ok(Err(Unread::Busy)) => {
            tracing::debug!(%device, "in-flight budget spent; refusing a request as busy");
            reject(&mut send, &mut recv, ErrorCode::RateLimited);
            return;
        }
        Err(_) => {
            reject(&mut send, &mut recv, ErrorCode::BadRequest);
            return;
        }
    };
    if let Request::Subscribe { spaces } = request {
        drop(_budget);
        let refusal = if !peer.hello.load(Ordering::Acquire) {
            Some(refused(ErrorCode::BadRequest, "say Hello first"))
        } else if !state.rate.allow(device) {
            Some(refused(
                ErrorCode::RateLimited,
                "too many requests; slow down and retry",
            ))
        } else if peer.subscriptions.fetch_add(1, Ordering::AcqRel)
            >= state.config.max_subscriptions
        {
            peer.subscriptions.fetch_sub(1, Ordering::AcqRel);
            Some(refused(
                ErrorCode::RateLimited,
                format!(
                    "at most {} subscriptions per connection",
                    state.config.max_subscriptions
                ),
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let _ = respond(&mut send, &refusal).await;
            return;
        }
        subscribe(&state, device, spaces, send).await;
        peer.subscriptions.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let response = match request {
        Request::Hello { versions } => {
            match SUPPORTED_VERSIONS.iter().find(|v| versions.contains(v)) {
                Some(version) => {
                    peer.hello.store(true, Ordering::Release);
                    Response::Hello { version: *version }
                }
                None => refused(
                    ErrorCode::UnsupportedVersion,
                    rapport_wire::version_mismatch(&versions, SUPPORTED_VERSIONS),
                ),
            }
        }
        _ if !peer.hello.load(Ordering::Acquire) => {
            refused(ErrorCode::BadRequest, "say Hello first")
        }
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
