//! The profiles in effect while serving, reloaded when `--profiles-file` changes.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::profile::ProfileSet;

/// The current profile set; readers take a cheap snapshot per request.
#[derive(Clone, Debug)]
pub struct SharedProfiles {
    current: Arc<RwLock<Arc<ProfileSet>>>,
}

impl SharedProfiles {
    pub fn new(profiles: ProfileSet) -> SharedProfiles {
        SharedProfiles {
            current: Arc::new(RwLock::new(Arc::new(profiles))),
        }
    }

    pub fn current(&self) -> Arc<ProfileSet> {
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    fn replace(&self, profiles: ProfileSet) {
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(profiles);
    }

    /// Polls `path` and swaps in the new set when its contents change and load. A file that
    /// fails to load is reported and the previous set stays in effect: a typo in a ConfigMap must
    /// not take admission down. (Polled by content, as certificate files are: a mounted
    /// ConfigMap changes by a symlink swap.)
    pub async fn reload_from(self, path: PathBuf, interval: Duration) {
        let mut last = std::fs::read(&path).ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let contents = std::fs::read(&path).ok();
            if contents == last {
                continue;
            }
            last = contents;
            match ProfileSet::with_file(&path) {
                Ok(profiles) => {
                    tracing::info!(file = %path.display(), profiles = profiles.names().len(), "profiles reloaded");
                    self.replace(profiles);
                }
                Err(error) => {
                    tracing::warn!(%error, "profiles file not reloaded; the previous profiles stay in effect");
                }
            }
        }
    }
}
