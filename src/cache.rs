//! The Secret watch cache: what the webhook knows about the cluster's Secrets, kept current by a
//! kube-runtime watcher, so an admission never calls the API server.
//!
//! The store is kube-runtime's reflector store — its relist buffering (a relist replaces the
//! contents whole, so Secrets deleted while the watch was down disappear) and its readiness —
//! holding [`SecretView`]s instead of Secrets: name, type, labels, owners and key names, never
//! values. Each Secret is shrunk to its view as it arrives, so no value outlives one decode and
//! memory stays small.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use dbbind_core::secret::{SecretLookup, SecretView};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{Lookup, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};

/// A Secret as the cache keeps it. A newtype, so kube-runtime's store can hold the core's view.
#[derive(Clone, Debug)]
pub struct CachedSecret(pub SecretView);

impl Lookup for CachedSecret {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.0.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.0.namespace))
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// The reading side, shared with the webhook: cheap to clone.
#[derive(Clone)]
pub struct SecretCache {
    store: Store<CachedSecret>,
}

/// The writing side, owned by the watch task.
pub struct CacheWriter {
    writer: Writer<CachedSecret>,
}

/// An empty cache and the writer that fills it.
pub fn secret_cache() -> (SecretCache, CacheWriter) {
    let writer = Writer::default();
    let cache = SecretCache {
        store: writer.as_reader(),
    };
    (cache, CacheWriter { writer })
}

impl SecretCache {
    /// True once a complete list has been received.
    pub fn is_synced(&self) -> bool {
        self.store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|ready| ready.is_ok())
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

impl SecretLookup for SecretCache {
    fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        let key = ObjectRef::<CachedSecret>::new_with(name, ()).within(namespace);
        self.store.get(&key).map(|cached| cached.0.clone())
    }
}

impl CacheWriter {
    /// Applies one watcher event.
    pub fn apply(&mut self, event: Event<Secret>) {
        self.writer.apply_watcher_event(&shrink(event));
    }

    /// Watches `api` forever: errors are logged and the watcher backs off and resumes, relisting
    /// when the API server says the watch is too old. `on_change` runs after every event with
    /// the cache's size (for the cache-size metric).
    pub async fn run(mut self, api: Api<Secret>, on_change: impl Fn(usize)) {
        let reader = self.writer.as_reader();
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            // for_each, not try_for_each: an error must never end the watch.
            .for_each(|result| {
                match result {
                    Ok(event) => {
                        self.apply(event);
                        on_change(reader.len());
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

/// The event with each Secret replaced by its view; the values are dropped here.
fn shrink(event: Event<Secret>) -> Event<CachedSecret> {
    // Watched Secrets always carry their namespace.
    let view = |secret: Secret| CachedSecret(SecretView::from_secret(&secret, ""));
    match event {
        Event::Apply(secret) => Event::Apply(view(secret)),
        Event::Delete(secret) => Event::Delete(view(secret)),
        Event::Init => Event::Init,
        Event::InitApply(secret) => Event::InitApply(view(secret)),
        Event::InitDone => Event::InitDone,
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

/// The caches of a fixed set of namespaces, each watched on its own (`--watch-namespaces`), so
/// dbbind needs Secret read access in those namespaces only.
#[derive(Clone, Default)]
pub struct ScopedSecretCache {
    caches: Arc<BTreeMap<String, SecretCache>>,
}

impl ScopedSecretCache {
    /// The caches, and a writer for each namespace to run a watcher with.
    pub fn new(namespaces: &[String]) -> (ScopedSecretCache, Vec<(String, CacheWriter)>) {
        let mut caches = BTreeMap::new();
        let mut writers = Vec::new();
        for namespace in namespaces {
            let (cache, writer) = secret_cache();
            caches.insert(namespace.clone(), cache);
            writers.push((namespace.clone(), writer));
        }
        let scoped = ScopedSecretCache {
            caches: Arc::new(caches),
        };
        (scoped, writers)
    }

    /// True once every namespace has been listed.
    pub fn is_synced(&self) -> bool {
        self.caches.values().all(SecretCache::is_synced)
    }

    pub fn len(&self) -> usize {
        self.caches.values().map(SecretCache::len).sum()
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
