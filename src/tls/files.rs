//! Serving a certificate pair from files, re-read when they change.
//!
//! The files are polled and compared by content rather than watched with inotify: Kubernetes
//! updates a mounted Secret by swapping the `..data` symlink, which file-level watches miss, and
//! cert-manager or a hand-run `cp` may leave a half-written file for a moment. Reading both
//! files whole and loading them only when they parse as a matching pair covers all of these;
//! until then the previous pair keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{CertStore, ServingCert, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{cert} and {key} are not a usable pair: {source}")]
    Invalid {
        cert: String,
        key: String,
        source: TlsError,
    },
}

/// Loads a certificate and key file into a [`CertStore`] whenever their contents change.
pub struct FileReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    store: Arc<CertStore>,
    /// The contents last loaded, and the contents last refused (so a bad pair is reported once).
    loaded: Option<(Vec<u8>, Vec<u8>)>,
    refused: Option<(Vec<u8>, Vec<u8>)>,
}

/// What one poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    Unchanged,
    /// A new pair is serving; its notAfter.
    Loaded {
        not_after: i64,
    },
    /// The same unusable contents as last time: already reported.
    StillInvalid,
}

impl FileReloader {
    pub fn new(cert_path: &Path, key_path: &Path, store: Arc<CertStore>) -> FileReloader {
        FileReloader {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            store,
            loaded: None,
            refused: None,
        }
    }

    /// Reads both files; loads them if they changed and form a valid pair.
    pub fn poll(&mut self) -> Result<Polled, ReloadError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ReloadError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let contents = (read(&self.cert_path)?, read(&self.key_path)?);
        if self.loaded.as_ref() == Some(&contents) {
            return Ok(Polled::Unchanged);
        }
        if self.refused.as_ref() == Some(&contents) {
            return Ok(Polled::StillInvalid);
        }
        match ServingCert::from_pem(&contents.0, &contents.1) {
            Ok(cert) => {
                let not_after = cert.not_after;
                self.store.set(cert);
                self.loaded = Some(contents);
                self.refused = None;
                Ok(Polled::Loaded { not_after })
            }
            Err(source) => {
                self.refused = Some(contents);
                Err(ReloadError::Invalid {
                    cert: self.cert_path.display().to_string(),
                    key: self.key_path.display().to_string(),
                    source,
                })
            }
        }
    }

    /// Polls forever. `on_loaded` receives the notAfter of each pair loaded.
    pub async fn run(mut self, interval: Duration, on_loaded: impl Fn(i64) + Send) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.poll() {
                Ok(Polled::Loaded { not_after }) => {
                    tracing::info!(
                        cert = %self.cert_path.display(),
                        not_after,
                        "serving certificate loaded"
                    );
                    on_loaded(not_after);
                }
                Ok(Polled::Unchanged | Polled::StillInvalid) => {}
                Err(error) => {
                    let serving = self.store.is_loaded();
                    tracing::warn!(%error, keeps_serving_previous = serving, "certificate files not loaded");
                }
            }
        }
    }
}
