//! The one thing the sync flows need from a transport: send a request to the relay, get
//! its answer. The QUIC client implements it; so can a test's adversarial relay, which
//! rewrites what the real one answers, or a simulation's in-memory relay.

use std::future::Future;

use rapport_wire::client::{ClientError, RelayClient};
use rapport_wire::frames::{ErrorCode, Request, Response};

use crate::error::Error;

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

/// A relay refusal or failure in words a person can act on.
pub fn sync_error(e: ClientError) -> Error {
    Error::Sync(match e.code() {
        Some(ErrorCode::NotMember) => match &e {
            ClientError::Refused { message, .. } if message.contains("join again") => {
                message.clone()
            }
            _ => "this device is not (or no longer) a member of the practice on this relay".into(),
        },
        Some(ErrorCode::Expired) => "the invite has expired; ask for a new one".into(),
        Some(ErrorCode::AlreadyUsed) => "this code was already used; ask for a new one".into(),
        Some(ErrorCode::InvalidToken) => {
            "the relay does not know this code; check that it was copied in full".into()
        }
        Some(ErrorCode::Forbidden) => match &e {
            ClientError::Refused { message, .. } => message.clone(),
            _ => e.to_string(),
        },
        _ => e.to_string(),
    })
}

/// Sends `request`, mapping a refusal to a clear error.
pub async fn ask<L: Link>(link: &L, request: &Request) -> crate::Result<Response> {
    link.request(request).await.map_err(sync_error)
}

/// The answer a request should not have had.
pub fn odd(what: &str) -> Error {
    Error::Sync(format!("the relay answered {what} oddly"))
}
