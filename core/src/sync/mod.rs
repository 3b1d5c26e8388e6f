//! Sync: end-to-end encrypted exchange of a space's Automerge changes through the blind
//! relay. `crypto` seals, signs and wraps keys; `client` drives the relay protocol
//! (behind the default `transport` feature).

#[cfg(feature = "transport")]
pub mod client;
pub mod crypto;
pub mod engine;
pub mod fragment;
#[cfg(feature = "transport")]
pub mod service;
pub mod snapshot;
