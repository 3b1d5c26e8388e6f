//! `rapport-relay`: the blind, self-hosted store-and-forward relay of a practice's devices.
//!
//! It keeps, per space, an append-only log of sealed blobs it cannot read, plus
//! snapshots, memberships and key envelopes; it never links the domain model.

pub mod config;
pub mod data;
pub mod limits;
pub mod server;
pub mod store;
