//! The scope that follows the opt-in label: a watch on the namespaces a label selector picks
//! (metadata only), which starts a Secret watch for each namespace as it appears and stops it,
//! forgetting its Secrets, when the namespace loses the label or is deleted. Secrets in other
//! namespaces are never listed, sent or decoded.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use dbbind_core::secret::ShapeFilter;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{Partition, SecretCache};

/// Starts the Secret watch of one namespace into its partition; the future runs until aborted.
pub trait StartWatch: Send + 'static {
    fn start(
        &self,
        namespace: &str,
        partition: Arc<Partition>,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// A namespace's Secrets were forgotten.
    fn stopped(&self) {}
}

/// The Secret watches of real namespaces through `client`.
pub struct ClientWatches {
    pub client: kube::Client,
    pub filters: watch::Receiver<Arc<ShapeFilter>>,
    pub on_change: Arc<dyn Fn() + Send + Sync>,
}

impl StartWatch for ClientWatches {
    fn start(
        &self,
        namespace: &str,
        partition: Arc<Partition>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let api = Api::namespaced(self.client.clone(), namespace);
        let on_change = Arc::clone(&self.on_change);
        super::watch::run(partition, api, self.filters.clone(), move || on_change())
    }

    fn stopped(&self) {
        (self.on_change)();
    }
}

/// Follows the namespaces `selector` picks, keeping `cache` and its watches in step. Runs
/// forever; watch errors are logged and retried with backoff.
pub async fn follow(
    namespaces: Api<PartialObjectMeta<Namespace>>,
    selector: String,
    cache: SecretCache,
    watches: impl StartWatch,
) {
    let mut follower = Follower {
        cache,
        watches,
        running: BTreeMap::new(),
        listing: None,
    };
    let config = watcher::Config::default().labels(&selector);
    let mut events = watcher::watcher(namespaces, config)
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => follower.apply(named(event)),
            Err(error) => {
                tracing::warn!(%error, "namespace watch failed; retrying with backoff");
            }
        }
    }
}

/// The event with each namespace reduced to its name.
fn named<K: Resource>(event: Event<K>) -> Event<String> {
    let name = |object: K| object.meta().name.clone().unwrap_or_default();
    match event {
        Event::Init => Event::Init,
        Event::InitApply(object) => Event::InitApply(name(object)),
        Event::InitDone => Event::InitDone,
        Event::Apply(object) => Event::Apply(name(object)),
        Event::Delete(object) => Event::Delete(name(object)),
    }
}

/// The follower's state: one running Secret watch per namespace it has seen.
struct Follower<W: StartWatch> {
    cache: SecretCache,
    watches: W,
    running: BTreeMap<String, AbortHandle>,
    /// During a (re)list, the namespaces listed so far.
    listing: Option<BTreeSet<String>>,
}

impl<W: StartWatch> Follower<W> {
    fn apply(&mut self, event: Event<String>) {
        match event {
            Event::Init => self.listing = Some(BTreeSet::new()),
            Event::InitApply(namespace) => {
                self.listing
                    .get_or_insert_with(BTreeSet::new)
                    .insert(namespace);
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .running
                    .keys()
                    .filter(|namespace| !listed.contains(*namespace))
                    .cloned()
                    .collect();
                for namespace in gone {
                    self.stop(&namespace);
                }
                for namespace in listed {
                    self.start(&namespace);
                }
                self.cache.set_namespaces_listed();
            }
            Event::Apply(namespace) => self.start(&namespace),
            Event::Delete(namespace) => self.stop(&namespace),
        }
    }

    fn start(&mut self, namespace: &str) {
        if namespace.is_empty() || self.running.contains_key(namespace) {
            return;
        }
        let partition = self.cache.add_namespace(namespace);
        let task = tokio::spawn(self.watches.start(namespace, partition));
        self.running
            .insert(namespace.to_owned(), task.abort_handle());
        tracing::info!(%namespace, "namespace opted in: watching its Secrets");
    }

    fn stop(&mut self, namespace: &str) {
        if let Some(task) = self.running.remove(namespace) {
            task.abort();
            self.cache.remove_namespace(namespace);
            self.watches.stopped();
            tracing::info!(%namespace, "namespace left: its Secrets are no longer watched");
        }
    }
}

impl<W: StartWatch> Drop for Follower<W> {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;

    /// Records starts; the "watch" marks its partition synced and then waits to be aborted.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<String>>>);

    impl StartWatch for Recorded {
        fn start(
            &self,
            namespace: &str,
            partition: Arc<Partition>,
        ) -> impl Future<Output = ()> + Send + 'static {
            self.0.lock().unwrap().push(namespace.to_owned());
            async move {
                partition.apply(Event::Init, &ShapeFilter::default());
                partition.apply(Event::InitDone, &ShapeFilter::default());
                futures::future::pending::<()>().await
            }
        }
    }

    #[tokio::test]
    async fn namespaces_are_watched_while_they_carry_the_label() {
        let cache = SecretCache::following_namespaces(None);
        let started = Recorded::default();
        let mut follower = Follower {
            cache: cache.clone(),
            watches: started.clone(),
            running: BTreeMap::new(),
            listing: None,
        };
        follower.apply(Event::Init);
        follower.apply(Event::InitApply("shop".to_owned()));
        assert!(!cache.is_synced(), "the namespace list is not complete");
        follower.apply(Event::InitApply("billing".to_owned()));
        follower.apply(Event::InitDone);
        tokio::task::yield_now().await;
        cache.wait_for("shop").await;
        cache.wait_for("billing").await;
        assert!(cache.is_synced());
        assert_eq!(cache.watched_namespaces(), ["billing", "shop"]);

        // Labelled later; unlabelled; a relist that no longer has "shop".
        follower.apply(Event::Apply("orders".to_owned()));
        follower.apply(Event::Apply("orders".to_owned()));
        follower.apply(Event::Delete("billing".to_owned()));
        assert_eq!(cache.watched_namespaces(), ["orders", "shop"]);
        follower.apply(Event::Init);
        follower.apply(Event::InitApply("orders".to_owned()));
        follower.apply(Event::InitDone);
        assert_eq!(cache.watched_namespaces(), ["orders"]);
        assert_eq!(
            *started.0.lock().unwrap(),
            ["billing", "shop", "orders"],
            "one watch per namespace, not one per event"
        );
    }

    #[tokio::test]
    async fn an_admission_waits_for_a_namespace_that_appears_a_moment_later() {
        let cache = SecretCache::following_namespaces(None);
        let mut follower = Follower {
            cache: cache.clone(),
            watches: Recorded::default(),
            running: BTreeMap::new(),
            listing: None,
        };
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_for("late").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        follower.apply(Event::Apply("late".to_owned()));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
