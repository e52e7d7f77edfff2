//! TLS for the admission listener: the certificate in use, swapped atomically when a new pair
//! arrives, and the rustls configuration that serves it.
//!
//! Certificates come from files (re-read on change, [`files`]) or are generated and rotated by
//! dbbind itself ([`self_managed`]); either way they land in a [`CertStore`], which rustls asks
//! for the certificate on every handshake, so rotation needs no restart.

pub mod files;
pub mod generate;
pub mod self_managed;
pub mod setup;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("the certificate PEM is not valid: {0}")]
    CertificatePem(rustls::pki_types::pem::Error),
    #[error("the private key PEM is not valid: {0}")]
    KeyPem(rustls::pki_types::pem::Error),
    #[error("the private key is not usable: {0}")]
    Key(rustls::Error),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The one crypto provider of the binary (kube's too): two in one process make rustls panic.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider; harmless when already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A parsed certificate chain with its key, ready to serve.
#[derive(Debug)]
pub struct ServingCert {
    pub key: Arc<CertifiedKey>,
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
}

impl ServingCert {
    /// Parses a PEM chain and key; refuses a key that does not match the leaf, which is what a
    /// half-written or half-swapped pair looks like.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServingCert, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TlsError::CertificatePem)?;
        let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
        let not_after = not_after(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
        let signing_key = crypto_provider()
            .key_provider
            .load_private_key(key)
            .map_err(TlsError::Key)?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsError::KeyMismatch),
            Err(error) => return Err(TlsError::Key(error)),
        }
        Ok(ServingCert {
            key: Arc::new(certified),
            not_after,
        })
    }
}

/// A certificate's notAfter, seconds since the epoch.
pub fn not_after(der: &[u8]) -> Result<i64, TlsError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Parse(e.to_string()))?;
    Ok(parsed.validity().not_after.timestamp())
}

/// Told the notAfter of each serving certificate loaded (the expiry metric).
pub type OnLoaded = Arc<dyn Fn(i64) + Send + Sync>;

/// The certificate being served. Cheap to read on every handshake; replaced whole.
#[derive(Debug, Default)]
pub struct CertStore {
    current: ArcSwapOption<ServingCert>,
}

impl CertStore {
    pub fn new() -> Arc<CertStore> {
        Arc::new(CertStore::default())
    }

    pub fn set(&self, cert: ServingCert) {
        self.current.store(Some(Arc::new(cert)));
    }

    pub fn current(&self) -> Option<Arc<ServingCert>> {
        self.current.load_full()
    }

    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().map(|cert| Arc::clone(&cert.key))
    }
}

/// TLS 1.2 and 1.3 with the ring provider, HTTP/2 and HTTP/1.1 by ALPN, and the certificate
/// taken from `store` at each handshake.
pub fn server_config(store: Arc<CertStore>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests;
