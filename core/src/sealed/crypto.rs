//! End-to-end encryption of everything a device sends through the relay.
//!
//! - A random 32-byte key per space and epoch ([`SpaceKey`]), zeroized on drop, never
//!   logged.
//! - A blob is the Automerge bytes padded to a size bucket (so the relay sees only coarse
//!   sizes), sealed with XChaCha20-Poly1305 under associated data `space ‖ epoch ‖ sender`,
//!   then signed with the sender's Ed25519 key. The sender's public key travels in the blob
//!   and must hash to the device id the relay attests; signature and tag are both checked
//!   before anything is merged.
//! - A new epoch key is wrapped to each remaining device's X25519 key: ephemeral X25519,
//!   HKDF-SHA256 bound to space, epoch and recipient, ChaCha20-Poly1305.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use rapport_wire::{DeviceId, SpaceId};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Why a blob or envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The blob is too short or has an unknown version.
    #[error("the blob is malformed")]
    Malformed,
    /// The signature does not verify, or the signer is not the sender the relay reports.
    #[error("the blob's signature is not valid for its sender")]
    BadSignature,
    /// Decryption failed: wrong key, wrong space or epoch, or tampered bytes.
    #[error(
        "the blob cannot be opened with this space's key (tampered, or sealed under another key)"
    )]
    CannotOpen,
    /// A key is not available.
    #[error("no key for epoch {0} of this space")]
    NoKey(u32),
    /// The local identity could not sign.
    #[error("the device key is damaged")]
    BadDeviceKey,
}

/// A space's content key for one epoch.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SpaceKey {
    /// The epoch it belongs to.
    #[zeroize(skip)]
    pub epoch: u32,
    key: [u8; 32],
}

impl std::fmt::Debug for SpaceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpaceKey(epoch {}, <secret>)", self.epoch)
    }
}

impl SpaceKey {
    /// A fresh random key.
    pub fn generate(epoch: u32) -> SpaceKey {
        SpaceKey {
            epoch,
            key: rand::random(),
        }
    }

    /// A key from its bytes (an invite, or storage).
    pub fn from_bytes(epoch: u32, key: [u8; 32]) -> SpaceKey {
        SpaceKey { epoch, key }
    }

    /// The secret bytes (for an invite code or storage only).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

const BLOB_VERSION: u8 = 1;
const NONCE: usize = 24;
const SIGNATURE: usize = 64;
const PUBLIC_KEY: usize = 32;

/// The padded length for `len` bytes of payload (plus the 4-byte length prefix). Buckets
/// start at 256 bytes and grow by a quarter (rounded up to 64): the relay learns only a
/// coarse size, and padding costs at most about 25 %.
pub fn bucket(len: usize) -> usize {
    let needed = len + 4;
    let mut size = 256;
    while size < needed {
        size = (size + size / 4).div_ceil(64) * 64;
    }
    size
}

fn pad(plain: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(bucket(plain.len())));
    out.extend_from_slice(&u32::try_from(plain.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(plain);
    out.resize(bucket(plain.len()), 0);
    out
}

/// The plaintext inside `padded`, in the same buffer (a snapshot is tens of megabytes:
/// no second copy); the padding is wiped before it is cut off.
fn unpad(mut padded: Zeroizing<Vec<u8>>) -> Result<Vec<u8>, CryptoError> {
    let len = padded.get(..4).ok_or(CryptoError::Malformed)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > padded.len() - 4 {
        return Err(CryptoError::Malformed);
    }
    padded.copy_within(4..4 + len, 0);
    padded[len..].zeroize();
    padded.truncate(len);
    Ok(std::mem::take(&mut *padded))
}

/// Blobs at least this large are verified and decrypted on two threads at once.
const PARALLEL_OPEN: usize = 1 << 20;

fn associated_data(space: SpaceId, epoch: u32, sender: DeviceId) -> Vec<u8> {
    let mut ad = Vec::with_capacity(36);
    ad.extend_from_slice(&space.0);
    ad.extend_from_slice(&epoch.to_be_bytes());
    ad.extend_from_slice(&sender.0);
    ad
}

/// Seals `plain` for `space` under `key`, signed by the device holding `signing_pkcs8`.
/// Layout: version ‖ signer public key ‖ nonce ‖ ciphertext ‖ signature.
pub fn seal(
    key: &SpaceKey,
    space: SpaceId,
    signing_pkcs8: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let signer = Ed25519KeyPair::from_pkcs8_maybe_unchecked(signing_pkcs8)
        .map_err(|_| CryptoError::BadDeviceKey)?;
    let public = signer.public_key().as_ref().to_vec();
    let sender = DeviceId::from_public_key(&public);
    let nonce: [u8; NONCE] = rand::random();
    let cipher = XChaCha20Poly1305::new((&key.key).into());
    let padded = pad(plain);
    let ad = associated_data(space, key.epoch, sender);
    let ciphertext = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: &padded,
                aad: &ad,
            },
        )
        .map_err(|_| CryptoError::CannotOpen)?;
    let mut blob = Vec::with_capacity(1 + PUBLIC_KEY + NONCE + ciphertext.len() + SIGNATURE);
    blob.push(BLOB_VERSION);
    blob.extend_from_slice(&public);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    let mut signed = ad;
    signed.extend_from_slice(&blob);
    blob.extend_from_slice(signer.sign(&signed).as_ref());
    Ok(blob)
}

/// Verifies and opens a blob the relay reports as sent by `sender` in `space`.
pub fn open(
    key: &SpaceKey,
    space: SpaceId,
    sender: DeviceId,
    blob: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < 1 + PUBLIC_KEY + NONCE + 16 + SIGNATURE || blob[0] != BLOB_VERSION {
        return Err(CryptoError::Malformed);
    }
    let (body, signature) = blob.split_at(blob.len() - SIGNATURE);
    let public = &body[1..1 + PUBLIC_KEY];
    if DeviceId::from_public_key(public) != sender {
        return Err(CryptoError::BadSignature);
    }
    let ad = associated_data(space, key.epoch, sender);
    let verify = || {
        let mut signed = ad.clone();
        signed.extend_from_slice(body);
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&signed, signature)
            .map_err(|_| CryptoError::BadSignature)
    };
    let decrypt = || {
        let nonce = &body[1 + PUBLIC_KEY..1 + PUBLIC_KEY + NONCE];
        let ciphertext = &body[1 + PUBLIC_KEY + NONCE..];
        let cipher = XChaCha20Poly1305::new((&key.key).into());
        cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &ad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::CannotOpen)
    };
    // Nothing is returned unless both the signature and the tag check out; on a large
    // blob (a snapshot) the two run side by side.
    let (verified, padded) = if blob.len() >= PARALLEL_OPEN {
        std::thread::scope(|scope| {
            let verifying = scope.spawn(verify);
            let padded = decrypt();
            let verified = verifying.join().unwrap_or(Err(CryptoError::BadSignature));
            (verified, padded)
        })
    } else {
        verify()?;
        (Ok(()), decrypt())
    };
    verified?;
    unpad(padded?)
}

/// A device's X25519 key pair for receiving epoch keys.
#[derive(Clone)]
pub struct BoxKey(StaticSecret);

impl BoxKey {
    /// A fresh key.
    pub fn generate() -> BoxKey {
        BoxKey(StaticSecret::from(rand::random::<[u8; 32]>()))
    }

    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> BoxKey {
        BoxKey(StaticSecret::from(bytes))
    }

    /// The secret bytes, for storage.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key others wrap to.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }
}

fn wrap_key(
    shared: &[u8; 32],
    space: SpaceId,
    epoch: u32,
    recipient: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"rapport key wrap v1"), shared);
    let mut info = Vec::with_capacity(52);
    info.extend_from_slice(&space.0);
    info.extend_from_slice(&epoch.to_be_bytes());
    info.extend_from_slice(recipient);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(&info, out.as_mut());
    out
}

/// Wraps an epoch key to a device's X25519 public key.
pub fn wrap(key: &SpaceKey, space: SpaceId, recipient: [u8; 32]) -> Vec<u8> {
    let ephemeral = StaticSecret::from(rand::random::<[u8; 32]>());
    let shared = ephemeral.diffie_hellman(&PublicKey::from(recipient));
    let kek = wrap_key(shared.as_bytes(), space, key.epoch, &recipient);
    let nonce = [0u8; 12]; // each key-encryption key is used once
    let sealed = ChaCha20Poly1305::new(kek.as_ref().into())
        .encrypt((&nonce).into(), key.key.as_slice())
        .unwrap_or_default();
    let mut out = PublicKey::from(&ephemeral).to_bytes().to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Unwraps an epoch key sealed to this device.
pub fn unwrap(
    envelope: &[u8],
    space: SpaceId,
    epoch: u32,
    mine: &BoxKey,
) -> Result<SpaceKey, CryptoError> {
    if envelope.len() != 32 + 32 + 16 {
        return Err(CryptoError::Malformed);
    }
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(&envelope[..32]);
    let shared = mine.0.diffie_hellman(&PublicKey::from(ephemeral));
    let kek = wrap_key(shared.as_bytes(), space, epoch, &mine.public());
    let plain = Zeroizing::new(
        ChaCha20Poly1305::new(kek.as_ref().into())
            .decrypt((&[0u8; 12]).into(), &envelope[32..])
            .map_err(|_| CryptoError::CannotOpen)?,
    );
    let mut key = [0u8; 32];
    key.copy_from_slice(&plain);
    Ok(SpaceKey { epoch, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_wire::identity::Identity;

    fn device() -> Identity {
        Identity::generate("device").unwrap()
    }

    #[test]
    fn seal_and_open_round_trip_with_padding() {
        let key = SpaceKey::generate(1);
        let space = SpaceId::random();
        let me = device();
        for len in [0, 1, 500, 509, 4_000, 70_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let blob = seal(&key, space, me.key_pkcs8(), &plain).unwrap();
            assert_eq!(
                blob.len(),
                1 + 32 + 24 + bucket(len) + 16 + 64,
                "sizes are bucketed"
            );
            assert_eq!(open(&key, space, me.device_id(), &blob).unwrap(), plain);
        }
        assert_eq!(bucket(0), 256);
        assert_eq!(bucket(252), 256);
        assert_eq!(bucket(253), 320);
        for len in [0usize, 100, 1_000, 10_000, 100_000, 500_000] {
            let b = bucket(len);
            assert!(
                b >= len + 4 && b as f64 <= ((len + 4) as f64 * 1.25 + 64.0).max(256.0),
                "{len} -> {b}"
            );
            assert_eq!(bucket(b - 4), b, "a bucket is its own bucket");
        }
        assert!(
            bucket(super::super::entry::PIECE + super::super::entry::MAX_STATEMENT_BYTES + 12)
                + 137
                <= rapport_wire::frames::MAX_BLOB
        );
    }

    #[test]
    fn tampering_wrong_keys_and_forged_senders_are_refused() {
        let key = SpaceKey::generate(1);
        let space = SpaceId::random();
        let me = device();
        let blob = seal(&key, space, me.key_pkcs8(), b"referral").unwrap();
        let mut tampered = blob.clone();
        tampered[60] ^= 1;
        assert_eq!(
            open(&key, space, me.device_id(), &tampered),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            open(&SpaceKey::generate(1), space, me.device_id(), &blob),
            Err(CryptoError::CannotOpen)
        );
        assert_eq!(
            open(&key, SpaceId::random(), me.device_id(), &blob),
            Err(CryptoError::BadSignature),
            "bound to its space"
        );
        assert_eq!(
            open(&key, space, device().device_id(), &blob),
            Err(CryptoError::BadSignature),
            "bound to its sender"
        );
        // A blob re-signed by another device with the right key still names its signer.
        let other = device();
        let forged = seal(&key, space, other.key_pkcs8(), b"referral").unwrap();
        assert_eq!(
            open(&key, space, me.device_id(), &forged),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            open(&key, space, me.device_id(), &blob[..10]),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn a_snapshot_sized_blob_is_checked_the_same_on_two_threads() {
        let key = SpaceKey::generate(1);
        let space = SpaceId::random();
        let me = device();
        let plain: Vec<u8> = (0..3 * PARALLEL_OPEN).map(|i| (i % 251) as u8).collect();
        let blob = seal(&key, space, me.key_pkcs8(), &plain).unwrap();
        assert!(blob.len() >= PARALLEL_OPEN);
        assert_eq!(open(&key, space, me.device_id(), &blob).unwrap(), plain);
        let mut tampered = blob.clone();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 1;
        assert_eq!(
            open(&key, space, me.device_id(), &tampered),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            open(&SpaceKey::generate(1), space, me.device_id(), &blob),
            Err(CryptoError::CannotOpen),
            "a valid signature does not open it under another key"
        );
    }

    #[test]
    fn epoch_keys_wrap_to_one_device_only() {
        let space = SpaceId::random();
        let key = SpaceKey::generate(2);
        let alice = BoxKey::generate();
        let bob = BoxKey::generate();
        let envelope = wrap(&key, space, alice.public());
        assert_eq!(
            unwrap(&envelope, space, 2, &alice).unwrap().bytes(),
            key.bytes()
        );
        assert_eq!(
            unwrap(&envelope, space, 2, &bob).unwrap_err(),
            CryptoError::CannotOpen
        );
        assert_eq!(
            unwrap(&envelope, space, 3, &alice).unwrap_err(),
            CryptoError::CannotOpen,
            "bound to its epoch"
        );
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.bytes())));
    }
}
