//! The Secret watch cache: what the webhook knows about the Secrets of the cluster, kept current
//! by a kube-runtime watcher, so an admission never calls the API server.
//!
//! Only [`SecretView`]s are kept — name, type, labels, owners and key names — never values, so
//! memory stays small and nothing sensitive lives in the process longer than one decode.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::secret::{SecretLookup, SecretStore, SecretView};

/// Secret views by namespace and name, and whether the first full list has arrived.
#[derive(Debug, Default)]
pub struct SecretCache {
    store: RwLock<SecretStore>,
    /// The list being received after a (re)start of the watch; swapped in whole when complete,
    /// so Secrets deleted while the watch was down disappear.
    relist: RwLock<Option<SecretStore>>,
    synced: AtomicBool,
}

impl SecretCache {
    pub fn new() -> SecretCache {
        SecretCache::default()
    }

    /// True once a complete list has been received.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        read(&self.store).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one watcher event.
    pub fn apply(&self, event: Event<Secret>) {
        match event {
            Event::Init => *write(&self.relist) = Some(SecretStore::new()),
            Event::InitApply(secret) => {
                if let Some(relist) = write(&self.relist).as_mut() {
                    relist.insert(view(&secret));
                }
            }
            Event::InitDone => {
                if let Some(complete) = write(&self.relist).take() {
                    *write(&self.store) = complete;
                }
                self.synced.store(true, Ordering::Release);
            }
            Event::Apply(secret) => write(&self.store).insert(view(&secret)),
            Event::Delete(secret) => {
                let view = view(&secret);
                write(&self.store).remove(&view.namespace, &view.name);
            }
        }
    }

    /// Watches `api` forever: errors are logged and the watcher backs off and resumes, relisting
    /// when the API server says the watch is too old. `on_change` runs after every event (for the
    /// cache-size metric).
    pub async fn run(&self, api: Api<Secret>, on_change: impl Fn(usize)) {
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            // for_each, not try_for_each: an error must never end the watch.
            .for_each(|result| {
                match result {
                    Ok(event) => {
                        self.apply(event);
                        on_change(self.len());
                    }
                    Err(error) => {
                        tracing::warn!(error = %describe(&error), "Secret watch failed; retrying with backoff");
                    }
                }
                futures::future::ready(())
            })
            .await;
    }
}

impl SecretLookup for SecretCache {
    fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        read(&self.store).get(namespace, name)
    }
}

fn view(secret: &Secret) -> SecretView {
    // Watched Secrets always carry their namespace.
    SecretView::from_secret(secret, "")
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

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The caches of a fixed set of namespaces, each watched on its own (`--watch-namespaces`), so
/// dbbind needs Secret read access in those namespaces only.
#[derive(Debug, Default)]
pub struct ScopedSecretCache {
    caches: std::collections::BTreeMap<String, std::sync::Arc<SecretCache>>,
}

impl ScopedSecretCache {
    pub fn new(namespaces: &[String]) -> ScopedSecretCache {
        ScopedSecretCache {
            caches: namespaces
                .iter()
                .map(|namespace| (namespace.clone(), std::sync::Arc::new(SecretCache::new())))
                .collect(),
        }
    }

    /// Each namespace's cache, to run a watcher for.
    pub fn caches(&self) -> impl Iterator<Item = (&String, &std::sync::Arc<SecretCache>)> {
        self.caches.iter()
    }

    /// True once every namespace has been listed.
    pub fn is_synced(&self) -> bool {
        self.caches.values().all(|cache| cache.is_synced())
    }

    pub fn len(&self) -> usize {
        self.caches.values().map(|cache| cache.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SecretLookup for ScopedSecretCache {
    fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        self.caches.get(namespace)?.get(namespace, name)
    }
}
