//! One Secret watch (the whole cluster's, or one namespace's) feeding one [`Partition`].

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dbbind_core::secret::{SecretView, ShapeFilter};
use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use super::compact::Contents;
use super::shape::SecretShape;
use crate::rotation::changed::ChangedSecrets;

/// Helm keeps every release's rendered manifests in a Secret of this type, often hundreds of
/// KiB each and numerous; no database binding ever points at one, so the API server filters
/// them out before they are sent.
pub const NOT_HELM_RELEASES: &str = "type!=helm.sh/release.v1";

/// What one watch has seen, and whether its first list is complete.
#[derive(Debug)]
pub struct Partition {
    contents: RwLock<Contents>,
    synced: watch::Sender<bool>,
}

impl Default for Partition {
    fn default() -> Partition {
        Partition::new(None)
    }
}

impl Partition {
    /// An empty partition; with `rotations`, a change of a Secret's data is reported there.
    pub fn new(rotations: Option<Arc<ChangedSecrets>>) -> Partition {
        Partition {
            contents: RwLock::new(Contents::reporting(rotations)),
            synced: watch::Sender::new(false),
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        self.read().get(namespace, name)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the first list is complete.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as self, so this cannot fail while we wait.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Applies one watcher event, keeping what `filter` names.
    pub fn apply(&self, event: Event<SecretShape>, filter: &ShapeFilter) {
        let mut contents = self.write();
        match event {
            Event::Init => contents.begin_relist(),
            Event::InitApply(shape) => contents.relisted(shape, filter),
            Event::InitDone => {
                contents.end_relist();
                drop(contents);
                self.synced.send_replace(true);
            }
            Event::Apply(shape) => contents.apply(shape, filter),
            Event::Delete(shape) => contents.delete(&shape),
        }
    }

    /// Distinct shared values, for tests.
    pub fn distinct_values(&self) -> usize {
        self.read().distinct_values()
    }

    // A panic while holding the lock leaves the contents as consistent as any single event
    // leaves them, so a poisoned lock is used as it is rather than taking admission down.
    fn read(&self) -> RwLockReadGuard<'_, Contents> {
        self.contents.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Contents> {
        self.contents
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Watches `api` into `partition` forever: errors are logged and the watcher backs off and
/// resumes, relisting when the API server says the watch is too old. When the profiles start
/// reading other labels or owners (`filters` changes), the watch starts over with a fresh
/// list under the new filter; the old contents answer until that list is complete.
/// `on_change` runs after every event (for the cache-size metric).
pub async fn run(
    partition: Arc<Partition>,
    api: Api<SecretShape>,
    mut filters: watch::Receiver<Arc<ShapeFilter>>,
    on_change: impl Fn(),
) {
    let config = watcher::Config::default().fields(NOT_HELM_RELEASES);
    let mut filters_open = true;
    loop {
        let filter = Arc::clone(&filters.borrow_and_update());
        let mut events = watcher::watcher(api.clone(), config.clone())
            .default_backoff()
            .boxed();
        loop {
            tokio::select! {
                changed = filters.changed(), if filters_open => {
                    if changed.is_err() {
                        filters_open = false;
                    } else if **filters.borrow() != *filter {
                        tracing::info!("the profiles read other labels or owners; listing Secrets again");
                        break;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        partition.apply(event, &filter);
                        on_change();
                    }
                    Some(Err(error)) => {
                        tracing::warn!(error = %describe(&error), "Secret watch failed; retrying with backoff");
                    }
                    // The watcher's stream does not end; if it ever did, start it again.
                    None => break,
                },
            }
        }
    }
}

/// A watch error for the log. Decoding errors are reduced to their position: serde's messages
/// can quote the offending text, which here would be part of a Secret.
fn describe(error: &watcher::Error) -> String {
    let source = match error {
        watcher::Error::InitialListFailed(source)
        | watcher::Error::WatchStartFailed(source)
        | watcher::Error::WatchFailed(source) => source,
        other => return other.to_string(),
    };
    match source {
        kube::Error::SerdeError(serde) => format!(
            "cannot decode a Secret from the API server ({:?} error at line {} column {})",
            serde.classify(),
            serde.line(),
            serde.column()
        ),
        other => format!("{error}: {other}"),
    }
}
