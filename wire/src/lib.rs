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
pub mod private;
pub mod tls;

pub use ids::{DeviceId, SpaceId};

/// The ALPN protocol id of Rapport sync.
pub const ALPN: &[u8] = b"rapport-sync/1";
/// The newest protocol version this build speaks (2: membership logs).
pub const PROTOCOL_VERSION: u16 = 2;
/// Protocol versions this build can speak, newest first. Version 1 (keys handed out by
/// the relay) is no longer spoken: its trust model is the one version 2 replaces.
pub const SUPPORTED_VERSIONS: &[u16] = &[2];

/// What a relay answers a device whose protocol versions it does not speak, and what a
/// device tells its user when a relay answers that: which side to upgrade.
pub fn version_mismatch(device_versions: &[u16], relay_versions: &[u16]) -> String {
    let newest = |v: &[u16]| v.iter().copied().max().unwrap_or(0);
    if newest(device_versions) < newest(relay_versions) {
        format!(
            "this device speaks sync protocol {device_versions:?} and the relay {relay_versions:?}: update Rapport on this device"
        )
    } else {
        format!(
            "this device speaks sync protocol {device_versions:?} and the relay {relay_versions:?}: ask whoever runs the relay to update rapport-relay"
        )
    }
}

/// The protocol versions a relay's refusal names (as in "speaks protocol versions [1]"),
/// for a device explaining the refusal; empty when it names none.
pub fn versions_named(message: &str) -> Vec<u16> {
    let Some(start) = message.rfind('[') else {
        return Vec::new();
    };
    let Some(len) = message[start..].find(']') else {
        return Vec::new();
    };
    message[start + 1..start + len]
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}
