//! What one relay entry carries inside its seal: the Automerge changes (or a part of a
//! large change, see [`super::fragment`]) and, on the last entry of a push, signed
//! statements of document heads.
//!
//! A *heads statement* is a device's signed word that its copy of a space had these heads
//! at this time. Each push carries the pusher's own statement and the newest statement it
//! holds of each other device that changed since its last push. A device that holds a
//! colleague's statement whose heads it still lacks once the relay says it is caught up
//! knows the relay withheld that colleague's changes from it, and says so; a relay cannot
//! forge a statement (it is signed with the device key the membership log binds) or read
//! one (it is sealed).
//!
//! Layout: `RAPENT01` ‖ statements length (u32, big-endian) ‖ postcard list of statements
//! ‖ payload. Plaintext without the magic is a bare payload, as entries were before.

use rapport_wire::{DeviceId, SpaceId};
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"RAPENT01";
const DOMAIN: &[u8] = b"rapport heads v1\0";
/// The most statements one entry carries.
pub const MAX_STATEMENTS: usize = 64;
/// The most heads one statement names.
pub const MAX_HEADS: usize = 16;
/// The most bytes of statements one entry carries.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;
/// Most plaintext of changes per relay entry: with its statements and padded to its
/// bucket it still fits one entry.
pub const PIECE: usize = 512 * 1024 - 4 - MAX_STATEMENT_BYTES - 12;

/// A device's signed word about its copy of a space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadsStatement {
    /// The device.
    pub device: DeviceId,
    /// When (milliseconds since the Unix epoch, the device's clock).
    pub at_ms: i64,
    /// Its document's heads then.
    pub heads: Vec<[u8; 32]>,
    /// Its Ed25519 signature.
    pub signature: Vec<u8>,
}

fn message(space: SpaceId, device: DeviceId, at_ms: i64, heads: &[[u8; 32]]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(&space.0);
    m.extend_from_slice(&device.0);
    m.extend_from_slice(&at_ms.to_be_bytes());
    for head in heads {
        m.extend_from_slice(head);
    }
    m
}

impl HeadsStatement {
    /// Signs a statement with the device key `pkcs8`; `None` if the key cannot sign.
    pub fn sign(
        space: SpaceId,
        device: DeviceId,
        pkcs8: &[u8],
        heads: &[[u8; 32]],
        at_ms: i64,
    ) -> Option<HeadsStatement> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).ok()?;
        let heads: Vec<[u8; 32]> = heads.iter().take(MAX_HEADS).copied().collect();
        let signature = key
            .sign(&message(space, device, at_ms, &heads))
            .as_ref()
            .to_vec();
        Some(HeadsStatement {
            device,
            at_ms,
            heads,
            signature,
        })
    }

    /// Whether the signature is the device's (`signing`: the Ed25519 key the membership
    /// log binds to it).
    pub fn verify(&self, space: SpaceId, signing: &[u8; 32]) -> bool {
        DeviceId::from_public_key(signing) == self.device
            && self.heads.len() <= MAX_HEADS
            && UnparsedPublicKey::new(&ED25519, signing)
                .verify(
                    &message(space, self.device, self.at_ms, &self.heads),
                    &self.signature,
                )
                .is_ok()
    }
}

/// How many of `statements`, from the first, fit one entry.
pub fn fitting(statements: &[HeadsStatement]) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for statement in statements.iter().take(MAX_STATEMENTS) {
        let size = 16 + 8 + statement.heads.len() * 32 + statement.signature.len() + 4;
        if bytes + size > MAX_STATEMENT_BYTES - 16 {
            break;
        }
        bytes += size;
        count += 1;
    }
    count
}

/// An entry's plaintext: `statements` (cut to what [`fitting`] allows) and `payload`.
pub fn encode(statements: &[HeadsStatement], payload: &[u8]) -> Vec<u8> {
    let kept = &statements[..fitting(statements)];
    if kept.is_empty() {
        return payload.to_vec();
    }
    let list = postcard::to_allocvec(kept).unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + list.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(list.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&list);
    out.extend_from_slice(payload);
    out
}

/// Splits an entry's plaintext into its statements and payload (untrusted bytes: never
/// panics).
pub fn decode(plain: &[u8]) -> Result<(Vec<HeadsStatement>, &[u8]), String> {
    let Some(rest) = plain.strip_prefix(MAGIC.as_slice()) else {
        return Ok((Vec::new(), plain));
    };
    let len = rest
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("an entry's statements are cut short")?;
    if len > MAX_STATEMENT_BYTES {
        return Err(format!(
            "an entry carries {len} bytes of statements; at most {MAX_STATEMENT_BYTES}"
        ));
    }
    let list = rest
        .get(4..4 + len)
        .ok_or("an entry's statements are cut short")?;
    let statements: Vec<HeadsStatement> = postcard::from_bytes(list)
        .map_err(|e| format!("an entry's statements do not decode: {e}"))?;
    if statements.len() > MAX_STATEMENTS {
        return Err("an entry carries too many statements".into());
    }
    Ok((statements, &rest[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_wire::identity::Identity;

    #[test]
    fn statements_round_trip_verify_and_refuse_forgery() {
        let space = SpaceId::random();
        let ana = Identity::generate("ana").unwrap();
        let signing: [u8; 32] = ana.public_key().try_into().unwrap();
        let statement = HeadsStatement::sign(
            space,
            ana.device_id(),
            ana.key_pkcs8(),
            &[[1; 32], [2; 32]],
            42,
        )
        .unwrap();
        assert!(statement.verify(space, &signing));
        let plain = encode(std::slice::from_ref(&statement), b"automerge bytes");
        let (statements, payload) = decode(&plain).unwrap();
        assert_eq!(
            (statements, payload),
            (vec![statement.clone()], &b"automerge bytes"[..])
        );
        // Moved heads, another space, another device's key: refused.
        let mut moved = statement.clone();
        moved.heads[0] = [9; 32];
        assert!(!moved.verify(space, &signing));
        assert!(!statement.verify(SpaceId::random(), &signing));
        let other = Identity::generate("other").unwrap();
        assert!(!statement.verify(space, &other.public_key().try_into().unwrap()));
        // A bare payload is read as it is; cut or oversized headers are errors.
        assert_eq!(decode(b"plain").unwrap(), (vec![], &b"plain"[..]));
        assert!(decode(&plain[..12]).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
        const { assert!(PIECE + MAX_STATEMENT_BYTES + 12 + 4 <= 512 * 1024) };
    }
}
