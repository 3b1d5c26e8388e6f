//! `rapport-relay`: the blind, self-hosted store-and-forward relay of a practice's devices.
//!
//! It keeps, per space, an append-only log of sealed blobs it cannot read, plus
//! snapshots, and its membership log, which it enforces but cannot forge; it never links the domain model.

pub mod config;
pub mod data;
pub mod limits;
pub mod membership;
pub mod rules;
pub mod server;
pub mod store;
