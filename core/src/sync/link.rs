//! The one thing the sync flows need from a transport: send a request to the relay, get
//! its answer. The QUIC client implements it; so can a test's adversarial relay, which
//! rewrites what the real one answers, or a simulation's in-memory relay.

use std::future::Future;

use rapport_wire::client::{ClientError, RelayClient};
use rapport_wire::frames::{ErrorCode, Request, Response};

use crate::error::{Error, SyncFailure};

/// A way to the relay.
pub trait Link: Sync {
    /// Sends one request; a refusal is [`ClientError::Refused`].
    fn request(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Response, ClientError>> + Send;
}

impl Link for RelayClient {
    fn request(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Response, ClientError>> + Send {
        RelayClient::request(self, request)
    }
}

/// A relay refusal or failure, typed and in this device's own words: what the relay says
/// in a refusal or a close is never shown as it is (a hostile relay must not put words in
/// the app's mouth); its code decides.
pub fn sync_error(e: ClientError) -> Error {
    use SyncFailure as F;
    let code = e.code();
    match e {
        ClientError::Connect { .. } | ClientError::TimedOut(_) => {
            Error::sync_failed(F::Network, e.to_string())
        }
        ClientError::Closed(_) | ClientError::Frame(_) => Error::sync_failed(
            F::Network,
            "the connection to the relay broke; sync will try again",
        ),
        ClientError::Tls(_) => Error::sync_failed(
            F::Network,
            "the relay's identity could not be checked (its certificate is not the one the \
             practice's code names, or TLS failed); sync will try again",
        ),
        ClientError::Version(message) => Error::sync_failed(F::VersionMismatch, message),
        ClientError::Unexpected(_) => Error::Sync("the relay answered unexpectedly".into()),
        ClientError::Refused { message, .. } => match code {
            Some(ErrorCode::NotMember) if message.contains("join again") => Error::sync_failed(
                F::NotMember,
                "this practice now verifies its members: join again with a new invite (nothing \
                 stored here is lost)",
            ),
            Some(ErrorCode::NotMember) => Error::sync_failed(
                F::NotMember,
                "this device is not (or no longer) a member of the practice on this relay",
            ),
            Some(ErrorCode::Expired) => {
                Error::sync_failed(F::Refused, "the code has expired; ask for a new one")
            }
            Some(ErrorCode::AlreadyUsed) => {
                Error::sync_failed(F::Refused, "this code was already used; ask for a new one")
            }
            Some(ErrorCode::InvalidToken) => Error::sync_failed(
                F::Refused,
                "the relay does not know this code; check that it was copied in full",
            ),
            Some(ErrorCode::Forbidden) => Error::sync_failed(
                F::Refused,
                "the relay refused: the practice's membership rules do not allow this for this \
                 device's role",
            ),
            Some(ErrorCode::TooLarge) => {
                Error::sync_failed(F::Refused, "the relay refused a request as too large")
            }
            Some(ErrorCode::RateLimited) => Error::sync_failed(
                F::Refused,
                "the relay is busy or limiting this device's requests; sync will try again",
            ),
            Some(ErrorCode::Quota) => Error::sync_failed(
                F::Quota,
                "this space is full on the relay: nothing new is stored until an owner's or \
                 admin's device syncs (which snapshots and prunes) or the relay's quota is \
                 raised; sync will try again",
            ),
            Some(ErrorCode::StorageFull) => Error::sync_failed(
                F::Quota,
                "the relay's disk is full: nothing new is stored until its host frees space \
                 (what it holds is kept); sync will try again",
            ),
            Some(ErrorCode::UnsupportedVersion) => Error::sync_failed(
                F::VersionMismatch,
                "the relay and this app speak no common protocol version: update the app, or \
                 ask whoever runs the relay to update it",
            ),
            Some(other) => Error::sync_failed(
                F::Refused,
                format!("the relay refused the request ({other:?})"),
            ),
            None => Error::sync_failed(F::Refused, "the relay refused the request"),
        },
    }
}

/// Sends `request`, mapping a refusal to a clear error.
pub async fn ask<L: Link>(link: &L, request: &Request) -> crate::Result<Response> {
    link.request(request).await.map_err(sync_error)
}

/// The answer a request should not have had.
pub fn odd(what: &str) -> Error {
    Error::Sync(format!("the relay answered {what} oddly"))
}
