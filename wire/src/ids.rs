//! Space and device ids as they travel on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A space (an Automerge document and its members): a UUID's 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpaceId(pub [u8; 16]);

impl SpaceId {
    /// Parses the hyphenated UUID form the core uses.
    pub fn parse(text: &str) -> Option<SpaceId> {
        let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
        decode_hex::<16>(&hex).map(SpaceId)
    }

    /// A random id (for tests and new spaces).
    pub fn random() -> SpaceId {
        SpaceId(rand::random())
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex(&self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Debug for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpaceId({self})")
    }
}

/// A device: the first 16 bytes of the SHA-256 of its Ed25519 public key, so that the id
/// is bound to the key the device proves in the TLS handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(pub [u8; 16]);

impl DeviceId {
    /// The id of the device holding this Ed25519 public key.
    pub fn from_public_key(key: &[u8]) -> DeviceId {
        let digest = Sha256::digest(key);
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        DeviceId(id)
    }

    /// Parses the hex form.
    pub fn parse(text: &str) -> Option<DeviceId> {
        decode_hex::<16>(text.trim()).map(DeviceId)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses exactly `N` bytes of hex.
pub fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let space = SpaceId::parse("0190f3a2-7c4e-7b3d-9a1e-0123456789ab").unwrap();
        assert_eq!(space.to_string(), "0190f3a2-7c4e-7b3d-9a1e-0123456789ab");
        let device = DeviceId::from_public_key(&[7; 32]);
        assert_eq!(DeviceId::parse(&device.to_string()), Some(device));
        assert_ne!(device, DeviceId::from_public_key(&[8; 32]));
        assert!(SpaceId::parse("not-a-uuid").is_none());
        assert!(DeviceId::parse("zz").is_none());
    }
}
