//! Serving a certificate pair from files, re-read when they change.
//!
//! Both files are read whole on each pass ([`crate::reload::FileContents`], which also catches
//! Kubernetes' `..data` symlink swap) and loaded only when they parse as a matching pair:
//! cert-manager or a hand-run `cp` may leave a half-written file for a moment. Until then the
//! previous pair keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CertStore, OnLoaded, ServingCert, TlsError};
use crate::reload::{FileContents, ReadError, Recheck};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Read(#[from] ReadError),
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
    contents: FileContents<2>,
    /// Whether the contents last seen were refused (so a bad pair is reported once).
    refused: bool,
    on_loaded: Option<OnLoaded>,
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
            contents: FileContents::new([cert_path, key_path]),
            refused: false,
            on_loaded: None,
        }
    }

    /// Calls `on_loaded` with the notAfter of each pair loaded.
    pub fn with_on_loaded(mut self, on_loaded: OnLoaded) -> FileReloader {
        self.on_loaded = Some(on_loaded);
        self
    }

    /// Reads both files; loads them if they changed and form a valid pair.
    pub fn poll(&mut self) -> Result<Polled, ReloadError> {
        let Some([cert, key]) = self.contents.changed()? else {
            return Ok(if self.refused {
                Polled::StillInvalid
            } else {
                Polled::Unchanged
            });
        };
        match ServingCert::from_pem(&cert, &key) {
            Ok(cert) => {
                let not_after = cert.not_after;
                self.store.set(cert);
                self.refused = false;
                Ok(Polled::Loaded { not_after })
            }
            Err(source) => {
                self.refused = true;
                Err(ReloadError::Invalid {
                    cert: self.cert_path.display().to_string(),
                    key: self.key_path.display().to_string(),
                    source,
                })
            }
        }
    }
}

impl Recheck for FileReloader {
    async fn recheck(&mut self) {
        match self.poll() {
            Ok(Polled::Loaded { not_after }) => {
                tracing::info!(
                    cert = %self.cert_path.display(),
                    not_after,
                    "serving certificate loaded"
                );
                if let Some(on_loaded) = &self.on_loaded {
                    on_loaded(not_after);
                }
            }
            Ok(Polled::Unchanged | Polled::StillInvalid) => {}
            Err(error) => {
                let serving = self.store.is_loaded();
                tracing::warn!(%error, keeps_serving_previous = serving, "certificate files not loaded");
            }
        }
    }
}
