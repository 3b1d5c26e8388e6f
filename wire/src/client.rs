//! A minimal relay client: connect with a device identity to a pinned relay, say hello,
//! then one request per stream, plus subscriptions. The core's sync engine drives it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::SUPPORTED_VERSIONS;
use crate::frames::{
    Entry, ErrorCode, FrameError, MAX_FRAME, Request, Response, read_frame, write_frame,
};
use crate::identity::Identity;
use crate::ids::SpaceId;
use crate::tls::{TlsError, client_config};

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The relay could not be reached.
    #[error("cannot reach the relay at {addr}: {reason}")]
    Connect {
        /// Where we dialled.
        addr: String,
        /// Why it failed.
        reason: String,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The relay refused the request.
    #[error("the relay refused: {message} ({code:?})")]
    Refused {
        /// Why, as a code.
        code: ErrorCode,
        /// Why, in words.
        message: String,
    },
    /// The relay and this device speak no common protocol version.
    #[error("{0}")]
    Version(String),
    /// The relay answered something this request does not expect.
    #[error("unexpected answer from the relay: {0}")]
    Unexpected(String),
    /// The connection or stream closed.
    #[error("connection to the relay lost: {0}")]
    Closed(String),
    /// The relay did not answer in time.
    #[error("the relay did not answer within {} s; check the network and retry", .0.as_secs())]
    TimedOut(Duration),
}

/// How long a request may take, sending included (a 32 MiB snapshot on a slow uplink
/// fits); a relay that stops answering must not hold a device's sync forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl ClientError {
    /// The relay's refusal code, if this is a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A connection to a relay.
pub struct RelayClient {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    version: u16,
}

/// A live subscription: notices of new entries.
pub struct Notices {
    recv: quinn::RecvStream,
    _send: quinn::SendStream,
}

/// What a subscription hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A space has entries up to `seq`: pull them.
    Newest {
        /// The space.
        space: SpaceId,
        /// Its newest seq.
        seq: u64,
    },
    /// A small new entry, whole.
    Entry {
        /// The space.
        space: SpaceId,
        /// The entry.
        entry: Entry,
    },
}

impl Notices {
    /// The next notice, or `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<Notice>, ClientError> {
        match read_frame::<_, Response>(&mut self.recv, MAX_FRAME).await? {
            Some(Response::Notice { space, seq }) => Ok(Some(Notice::Newest { space, seq })),
            Some(Response::Delivered { space, entry }) => Ok(Some(Notice::Entry { space, entry })),
            Some(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
            None => Ok(None),
        }
    }
}

/// Resolves `host:port`.
pub async fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ClientError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ClientError::Connect {
            addr: addr.to_string(),
            reason: "no address found".into(),
        })
}

impl RelayClient {
    /// Connects to the relay at `addr` whose certificate has `fingerprint`, as `identity`,
    /// and agrees on a protocol version.
    pub async fn connect(
        addr: SocketAddr,
        identity: &Identity,
        fingerprint: [u8; 32],
    ) -> Result<RelayClient, ClientError> {
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|_| ClientError::Connect {
            addr: addr.to_string(),
            reason: "bad bind address".into(),
        })?;
        let connect_err = |e: &dyn std::fmt::Display| ClientError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(&e))?;
        endpoint.set_default_client_config(client_config(identity, fingerprint)?);
        let connecting = endpoint
            .connect(addr, "rapport-relay")
            .map_err(|e| connect_err(&e))?;
        let connection = tokio::time::timeout(Duration::from_secs(15), connecting)
            .await
            .map_err(|_| connect_err(&"timed out"))?
            .map_err(|e| connect_err(&e))?;
        let mut client = RelayClient {
            endpoint,
            connection,
            version: 0,
        };
        match client
            .call(&Request::Hello {
                versions: SUPPORTED_VERSIONS.to_vec(),
            })
            .await?
        {
            Response::Hello { version } if SUPPORTED_VERSIONS.contains(&version) => {
                client.version = version
            }
            Response::Error {
                code: ErrorCode::UnsupportedVersion,
                message,
            } => {
                // A relay of any version names the versions it speaks, last, in brackets.
                let relay = crate::versions_named(&message);
                return Err(ClientError::Version(crate::version_mismatch(
                    SUPPORTED_VERSIONS,
                    &relay,
                )));
            }
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        Ok(client)
    }

    /// The protocol version agreed on.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The underlying connection (for its stats and close reason).
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| ClientError::TimedOut(REQUEST_TIMEOUT))?
    }

    async fn exchange(&self, request: &Request) -> Result<Response, ClientError> {
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        write_frame(&mut send, request).await?;
        send.finish()
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        match read_frame::<_, Response>(&mut recv, MAX_FRAME).await {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(ClientError::Closed(
                "the relay closed the stream without answering".into(),
            )),
            Err(FrameError::Io(e)) => Err(ClientError::Closed(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends one request; a refusal is [`ClientError::Refused`].
    pub async fn request(&self, request: &Request) -> Result<Response, ClientError> {
        match self.call(request).await? {
            Response::Error { code, message } => Err(ClientError::Refused { code, message }),
            other => Ok(other),
        }
    }

    /// Subscribes to new-entry notices for `spaces`.
    pub async fn subscribe(&self, spaces: Vec<SpaceId>) -> Result<Notices, ClientError> {
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        write_frame(&mut send, &Request::Subscribe { spaces }).await?;
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            read_frame::<_, Response>(&mut recv, MAX_FRAME),
        )
        .await
        .map_err(|_| ClientError::TimedOut(REQUEST_TIMEOUT))?;
        match answer? {
            Some(Response::Subscribed) => Ok(Notices { recv, _send: send }),
            Some(Response::Error { code, message }) => Err(ClientError::Refused { code, message }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Closes the connection and waits until the relay has been told.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"bye");
        self.endpoint.wait_idle().await;
    }
}
