//! Rapport's sync wire, shared by the relay and the devices so both speak from one
//! definition: the frames and their length-prefixed encoding ([`frames`]), the setup and
//! invite codes people paste ([`codes`]), device and relay identities ([`identity`]), the
//! TLS 1.3 configuration with certificate pinning ([`tls`]) and a small client
//! ([`client`]).
//!
//! The relay only ever sees what this crate defines: ids, sizes and opaque blobs.

pub mod client;
pub mod codes;
pub mod frames;
pub mod identity;
pub mod ids;
pub mod membership;
pub mod tls;

pub use ids::{DeviceId, SpaceId};

/// The ALPN protocol id of Rapport sync.
pub const ALPN: &[u8] = b"rapport-sync/1";
/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Protocol versions this build can speak, newest first.
pub const SUPPORTED_VERSIONS: &[u16] = &[1];
