//! Identities: an Ed25519 key and a self-signed certificate made from it. A device's id
//! is derived from its public key; a relay is known by its certificate's fingerprint.

use rcgen::{CertificateParams, KeyPair, PKCS_ED25519};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::ids::DeviceId;

/// Identity failures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Key or certificate generation failed.
    #[error("cannot create an identity: {0}")]
    Generate(String),
    /// Stored key or certificate bytes are not valid.
    #[error("the stored identity is damaged: {0}")]
    Damaged(String),
}

/// An Ed25519 key pair (PKCS#8) and its self-signed certificate.
#[derive(Clone)]
pub struct Identity {
    key_pkcs8: Vec<u8>,
    cert_der: Vec<u8>,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity")
            .field("public_key", &crate::ids::hex(&self.public_key))
            .finish()
    }
}

impl Identity {
    /// A new key and certificate; `name` goes into the certificate's subject alt name.
    pub fn generate(name: &str) -> Result<Identity, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Identity::from_key(key, name)
    }

    fn from_key(key: KeyPair, name: &str) -> Result<Identity, IdentityError> {
        let params = CertificateParams::new(vec![name.to_string()])
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Identity {
            key_pkcs8: key.serialize_der(),
            cert_der: cert.der().to_vec(),
            public_key: key.public_key_raw().to_vec(),
        })
    }

    /// Restores an identity from its stored key and certificate.
    pub fn from_parts(key_pkcs8: Vec<u8>, cert_der: Vec<u8>) -> Result<Identity, IdentityError> {
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(key_pkcs8.as_slice()),
            &PKCS_ED25519,
        )
        .map_err(|e| IdentityError::Damaged(e.to_string()))?;
        let public_key = key.public_key_raw().to_vec();
        if ed25519_public_key(&cert_der).as_deref() != Some(public_key.as_slice()) {
            return Err(IdentityError::Damaged(
                "the certificate does not belong to the key".into(),
            ));
        }
        Ok(Identity {
            key_pkcs8,
            cert_der,
            public_key,
        })
    }

    /// The PKCS#8 private key (store it with care; never log it).
    pub fn key_pkcs8(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The device id this key gives.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.public_key)
    }

    /// SHA-256 of the certificate: what devices pin.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der)
    }

    /// The certificate chain for rustls.
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.cert_der.clone())]
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// SHA-256 of a DER certificate.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// The raw Ed25519 public key of a certificate, or `None` if it is not an Ed25519
/// certificate (or not a certificate at all).
pub fn ed25519_public_key(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let spki = cert.public_key();
    // 1.3.101.112 is Ed25519 (RFC 8410).
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return None;
    }
    let key = spki.subject_public_key.data.to_vec();
    (key.len() == 32).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_restore_and_derive_ids() {
        let id = Identity::generate("device").unwrap();
        assert_eq!(
            ed25519_public_key(id.cert_der()).as_deref(),
            Some(id.public_key())
        );
        let restored =
            Identity::from_parts(id.key_pkcs8().to_vec(), id.cert_der().to_vec()).unwrap();
        assert_eq!(restored.device_id(), id.device_id());
        assert_eq!(restored.fingerprint(), id.fingerprint());
        let other = Identity::generate("other").unwrap();
        assert!(Identity::from_parts(id.key_pkcs8().to_vec(), other.cert_der().to_vec()).is_err());
        assert!(ed25519_public_key(b"not a certificate").is_none());
        assert!(!format!("{id:?}").contains(&crate::ids::hex(id.key_pkcs8())));
    }
}
