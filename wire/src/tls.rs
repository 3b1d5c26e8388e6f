//! TLS 1.3 for QUIC with self-signed identities on both sides.
//!
//! There is no certificate authority: the relay accepts any well-formed Ed25519
//! self-signed client certificate (who may do what is decided afterwards from the device
//! id the key gives), and devices accept only the relay certificate whose SHA-256 they
//! pinned from their setup or invite code. Either way the TLS 1.3 handshake signature is
//! always verified, so a peer must hold the private key of the certificate it shows.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ALPN;
use crate::identity::{Identity, ed25519_public_key, fingerprint};
use crate::ids::DeviceId;

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// QUIC needs a TLS 1.3 cipher suite it can use for initial packets.
    #[error("no QUIC initial cipher suite")]
    NoInitialCipherSuite,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The handshake signature schemes both sides offer and accept: every identity is an
/// Ed25519 key, the relay's and the devices' alike.
const SCHEMES: &[SignatureScheme] = &[SignatureScheme::ED25519];

/// Verifies a TLS 1.3 handshake signature made with one of [`SCHEMES`].
fn tls13_only(
    algs: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if !SCHEMES.contains(&dss.scheme) {
        return Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    verify_tls13_signature(message, cert, dss, algs)
}

/// Accepts self-signed Ed25519 client certificates, always checking the handshake
/// signature; refuses TLS 1.2.
#[derive(Debug)]
struct SelfSignedClients {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for SelfSignedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match ed25519_public_key(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_only(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// Accepts only the relay certificate with the pinned SHA-256, checking the handshake
/// signature; refuses TLS 1.2.
#[derive(Debug)]
struct PinnedRelay {
    fingerprint: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedRelay {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_only(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// Limits the relay puts on each connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Concurrent request streams per connection.
    pub max_streams: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_streams: 32,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The relay's QUIC server configuration.
pub fn server_config(
    identity: &Identity,
    limits: ServerLimits,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = SelfSignedClients {
        algs: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(identity.cert_chain(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|_| TlsError::NoInitialCipherSuite)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_streams.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Some(
            limits
                .idle_timeout
                .try_into()
                .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(60_000))),
        ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A device's QUIC client configuration, pinned to one relay certificate.
pub fn client_config(
    identity: &Identity,
    relay_fingerprint: [u8; 32],
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedRelay {
        fingerprint: relay_fingerprint,
        algs: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(identity.cert_chain(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|_| TlsError::NoInitialCipherSuite)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // Keep-alives let a device notice a vanished relay within the idle timeout and
    // reconnect, instead of waiting on a dead connection.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(4)));
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        12_000,
    ))));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The device id a connection's client certificate proves.
pub fn peer_device(connection: &quinn::Connection) -> Option<DeviceId> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let key = ed25519_public_key(certs.first()?)?;
    Some(DeviceId::from_public_key(&key))
}

/// A client configuration that presents no certificate: what an unknown party looks like.
/// For diagnostics and the relay's own tests.
#[doc(hidden)]
pub fn anonymous_client_config(
    relay_fingerprint: [u8; 32],
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedRelay {
        fingerprint: relay_fingerprint,
        algs: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|_| TlsError::NoInitialCipherSuite)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn both_sides_offer_and_accept_one_scheme_list() {
        let algs = provider().signature_verification_algorithms;
        let relay_side = SelfSignedClients { algs };
        let device_side = PinnedRelay {
            fingerprint: [0; 32],
            algs,
        };
        assert_eq!(relay_side.supported_verify_schemes(), SCHEMES);
        assert_eq!(device_side.supported_verify_schemes(), SCHEMES);
    }
}
