//! The profiles in effect: the built-ins, laid over by `--profiles-file`, and while serving,
//! reloaded when that file changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dbbind_core::profile::{ProfileError, ProfileSet};
use dbbind_core::secret::ShapeFilter;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::reload::{FileContents, ReadError, Recheck};

#[derive(Debug, thiserror::Error)]
pub enum ProfilesFileError {
    #[error("cannot read profiles file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("profiles file {path} is not UTF-8 text")]
    NotUtf8 { path: String },
    #[error(transparent)]
    Invalid(#[from] ProfileError),
}

/// The built-ins, with the file laid over them when one is given.
pub fn load(path: Option<&Path>) -> Result<ProfileSet, ProfilesFileError> {
    let Some(path) = path else {
        return Ok(ProfileSet::builtin());
    };
    let text = std::fs::read(path).map_err(|source| ProfilesFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    from_text(&text, path)
}

fn from_text(text: &[u8], path: &Path) -> Result<ProfileSet, ProfilesFileError> {
    let path = path.display().to_string();
    let text =
        std::str::from_utf8(text).map_err(|_| ProfilesFileError::NotUtf8 { path: path.clone() })?;
    Ok(ProfileSet::with_overlay(text, &path)?)
}

/// The current profile set; readers take a cheap snapshot per request.
#[derive(Clone, Debug)]
pub struct SharedProfiles {
    current: Arc<ArcSwap<ProfileSet>>,
    /// What of a Secret the current profiles read, for the Secret cache; it changes only when
    /// a reload changes the labels or owners the profiles name.
    filter: Arc<watch::Sender<Arc<ShapeFilter>>>,
}

/// The profiles' flag of `dbbind serve` (the file itself is the global --profiles-file).
#[derive(Clone, Copy, Debug, clap::Args)]
#[command(next_help_heading = "Profiles")]
pub struct ProfilesFlags {
    /// How often --profiles-file is checked for changes.
    #[arg(long, env = "DBBIND_PROFILES_RELOAD_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub profiles_reload_interval: std::time::Duration,
}

impl SharedProfiles {
    pub fn new(profiles: ProfileSet) -> SharedProfiles {
        let filter = Arc::new(profiles.shape_filter());
        SharedProfiles {
            current: Arc::new(ArcSwap::from_pointee(profiles)),
            filter: Arc::new(watch::Sender::new(filter)),
        }
    }

    pub fn current(&self) -> Arc<ProfileSet> {
        self.current.load_full()
    }

    /// The labels and owners the profiles read, now and after each reload.
    pub fn shape_filter(&self) -> watch::Receiver<Arc<ShapeFilter>> {
        self.filter.subscribe()
    }

    /// Puts `profiles` in effect.
    pub fn replace(&self, profiles: ProfileSet) {
        let filter = profiles.shape_filter();
        self.current.store(Arc::new(profiles));
        self.filter.send_if_modified(|current| {
            let changed = **current != filter;
            if changed {
                *current = Arc::new(filter);
            }
            changed
        });
    }

    /// Re-reads `path` when its contents change. A file that fails to load is reported (a
    /// warning, and `dbbind_profiles_file_valid` 0) and the previous set stays in effect: a
    /// typo in a ConfigMap must not take admission down.
    pub fn reloader(&self, path: PathBuf, metrics: Arc<Metrics>) -> ProfilesReloader {
        ProfilesReloader {
            contents: FileContents::primed([&path]),
            path,
            target: self.clone(),
            metrics,
            reported: None,
        }
    }
}

/// Watches `--profiles-file` for [`crate::reload::every`].
pub struct ProfilesReloader {
    path: PathBuf,
    contents: FileContents<1>,
    target: SharedProfiles,
    metrics: Arc<Metrics>,
    /// The last problem logged, so a file that stays unreadable is reported once.
    reported: Option<String>,
}

impl ProfilesReloader {
    fn reload(&mut self) -> Result<Option<ProfileSet>, ProfilesFileError> {
        let changed = self
            .contents
            .changed()
            .map_err(|ReadError { path, source }| ProfilesFileError::Read { path, source })?;
        match changed {
            Some([text]) => from_text(&text, &self.path).map(Some),
            None => Ok(None),
        }
    }
}

impl Recheck for ProfilesReloader {
    async fn recheck(&mut self) {
        match self.reload() {
            Ok(None) => {}
            Ok(Some(profiles)) => {
                tracing::info!(file = %self.path.display(), profiles = profiles.names().len(), "profiles reloaded");
                self.target.replace(profiles);
                self.metrics.set_profiles_file_valid(true);
                self.reported = None;
            }
            Err(error) => {
                self.metrics.set_profiles_file_valid(false);
                let text = error.to_string();
                if self.reported.as_ref() != Some(&text) {
                    tracing::warn!(error = %text, "profiles file not reloaded; the previous profiles stay in effect");
                    self.reported = Some(text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = "profiles:\n- name: acme\n  detect:\n  - type: acme.example/postgres\n  fields:\n    host: {keys: [server]}\n    user: {keys: [login]}\n    password: {keys: [pw]}\n";

    fn valid(metrics: &Metrics) -> bool {
        metrics
            .encode()
            .contains("\ndbbind_profiles_file_valid 1\n")
    }

    #[tokio::test]
    async fn an_invalid_file_keeps_the_previous_profiles_and_says_so_in_a_metric() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profiles.yaml");
        std::fs::write(&path, ACME).unwrap();
        let profiles = SharedProfiles::new(load(Some(&path)).unwrap());
        let metrics = Arc::new(Metrics::new());
        let mut reloader = profiles.reloader(path.clone(), Arc::clone(&metrics));
        assert!(valid(&metrics));

        // Replaced by a file that does not load: the profiles stay, the metric turns 0.
        std::fs::write(&path, "profiles:\n- name: Not A Label\n").unwrap();
        reloader.recheck().await;
        assert!(profiles.current().get("acme").is_some());
        assert!(!valid(&metrics), "{}", metrics.encode());
        // Checked again unchanged: still 0.
        reloader.recheck().await;
        assert!(!valid(&metrics));

        // Fixed: loaded, and 1 again.
        std::fs::write(&path, ACME.replace("acme", "acme2")).unwrap();
        reloader.recheck().await;
        assert!(profiles.current().get("acme2").is_some());
        assert!(profiles.current().get("acme").is_none());
        assert!(valid(&metrics));
    }
}
