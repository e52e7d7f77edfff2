//! The Secret watch cache: what the webhook knows about the cluster's Secrets, kept current by
//! kube-runtime watchers, so an admission never calls the API server.
//!
//! - [`shape`]: the decoder, which reads names, type, labels, owners and key *names*, and skips
//!   values, annotations and managed fields unread;
//! - [`compact`]: the memory layout, with key sets, label sets and types shared between Secrets
//!   and only the labels and owners the profiles read;
//! - [`watch`]: one watch into one partition (relists replace a partition whole; Helm release
//!   Secrets are filtered out by the API server);
//! - [`namespaces`]: the scope that follows the namespaces carrying the opt-in label, starting
//!   and stopping one watch per namespace.
//!
//! Three scopes: the whole cluster (one watch), a fixed list of namespaces
//! (`--watch-namespaces`), or the namespaces a label selector picks (`--namespace-selector`).

pub mod compact;
pub mod namespaces;
pub mod setup;
pub mod shape;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::rotation::changed::ChangedSecrets;
use dbbind_core::secret::{SecretLookup, SecretView};
use tokio::sync::watch as channel;

pub use shape::SecretShape;
pub use watch::Partition;

/// How long an admission in a namespace the cache does not know yet waits for it to appear:
/// the namespace watch learns of a newly labelled namespace a moment after the API server
/// starts calling the webhook for it.
pub const UNKNOWN_NAMESPACE_GRACE: Duration = Duration::from_secs(2);

/// The reading side, shared with the webhook: cheap to clone.
#[derive(Clone, Debug)]
pub struct SecretCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    layout: Layout,
    /// For the per-namespace layout: whether the namespace list is complete.
    namespaces_listed: AtomicBool,
    /// The namespaces are a fixed list, not followed by label.
    fixed: bool,
    /// Bumped whenever a namespace's partition is added or removed, to wake waiters.
    generation: channel::Sender<u64>,
    /// Where each partition reports Secrets whose data changed (restart on rotation).
    rotations: Option<Arc<ChangedSecrets>>,
}

#[derive(Debug)]
enum Layout {
    /// One watch over every namespace.
    Cluster(Arc<Partition>),
    /// One watch per namespace.
    PerNamespace(RwLock<BTreeMap<String, Arc<Partition>>>),
}

impl SecretCache {
    /// A cache of every namespace, and the partition its one watch fills. With `rotations`,
    /// Secrets whose data changes are reported there (so for every constructor).
    pub fn cluster(rotations: Option<Arc<ChangedSecrets>>) -> (SecretCache, Arc<Partition>) {
        let partition = Arc::new(Partition::new(rotations.clone()));
        let layout = Layout::Cluster(Arc::clone(&partition));
        let cache = SecretCache::with_layout(layout, true, rotations);
        (cache, partition)
    }

    /// A cache of a fixed set of namespaces, and the partition of each for its watch.
    pub fn namespaces(
        namespaces: &[String],
        rotations: Option<Arc<ChangedSecrets>>,
    ) -> (SecretCache, Vec<(String, Arc<Partition>)>) {
        let layout = Layout::PerNamespace(RwLock::default());
        let cache = SecretCache::with_layout(layout, true, rotations);
        let partitions = namespaces
            .iter()
            .map(|namespace| (namespace.clone(), cache.add_namespace(namespace)))
            .collect();
        (cache, partitions)
    }

    /// A cache whose namespaces are added and removed as a namespace watch sees them; not
    /// synced until that watch has listed them ([`SecretCache::namespaces_listed`]).
    pub fn following_namespaces(rotations: Option<Arc<ChangedSecrets>>) -> SecretCache {
        SecretCache::with_layout(Layout::PerNamespace(RwLock::default()), false, rotations)
    }

    fn with_layout(
        layout: Layout,
        namespaces_listed: bool,
        rotations: Option<Arc<ChangedSecrets>>,
    ) -> SecretCache {
        SecretCache {
            inner: Arc::new(Inner {
                layout,
                namespaces_listed: AtomicBool::new(namespaces_listed),
                fixed: namespaces_listed,
                generation: channel::Sender::new(0),
                rotations,
            }),
        }
    }

    /// True once every watched namespace has been listed.
    pub fn is_synced(&self) -> bool {
        match &self.inner.layout {
            Layout::Cluster(partition) => partition.is_synced(),
            Layout::PerNamespace(partitions) => {
                self.inner.namespaces_listed.load(Ordering::Acquire)
                    && read(partitions).values().all(|p| p.is_synced())
            }
        }
    }

    pub fn len(&self) -> usize {
        match &self.inner.layout {
            Layout::Cluster(partition) => partition.len(),
            Layout::PerNamespace(partitions) => read(partitions).values().map(|p| p.len()).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The namespaces watched one by one (empty for the cluster-wide watch).
    pub fn watched_namespaces(&self) -> Vec<String> {
        match &self.inner.layout {
            Layout::Cluster(_) => Vec::new(),
            Layout::PerNamespace(partitions) => read(partitions).keys().cloned().collect(),
        }
    }

    /// Waits until `namespace`'s Secrets are listed, so a pod in a namespace labelled a moment
    /// ago is decided with its Secrets, not without them. A namespace the cache does not watch
    /// is waited for [`UNKNOWN_NAMESPACE_GRACE`] at most; the caller bounds the whole wait
    /// with its request deadline.
    pub async fn wait_for(&self, namespace: &str) {
        let partitions = match &self.inner.layout {
            Layout::Cluster(partition) => return partition.synced().await,
            Layout::PerNamespace(partitions) => partitions,
        };
        if self.inner.fixed {
            // A fixed list never grows: nothing to wait for when the namespace is not on it.
            let partition = read(partitions).get(namespace).cloned();
            if let Some(partition) = partition {
                partition.synced().await;
            }
            return;
        }
        let mut generation = self.inner.generation.subscribe();
        let appeared = tokio::time::timeout(UNKNOWN_NAMESPACE_GRACE, async {
            loop {
                if let Some(partition) = read(partitions).get(namespace).cloned() {
                    return Some(partition);
                }
                if generation.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match appeared {
            Ok(Some(partition)) => partition.synced().await,
            _ => tracing::warn!(
                namespace = %dbbind_core::message::clip(namespace),
                "no Secret watch covers this namespace: its Secrets are unknown to dbbind \
                 (check --namespace-selector or --watch-namespaces against the webhook's namespaceSelector)"
            ),
        }
    }

    /// Starts caching `namespace` (per-namespace layout only); returns its partition for a
    /// watch to fill. Adding a namespace twice returns the existing partition.
    pub fn add_namespace(&self, namespace: &str) -> Arc<Partition> {
        let Layout::PerNamespace(partitions) = &self.inner.layout else {
            return Arc::new(Partition::new(self.inner.rotations.clone()));
        };
        let partition = Arc::clone(
            write(partitions)
                .entry(namespace.to_owned())
                .or_insert_with(|| Arc::new(Partition::new(self.inner.rotations.clone()))),
        );
        self.inner.generation.send_modify(|g| *g += 1);
        partition
    }

    /// Stops caching `namespace`: its Secrets are forgotten.
    pub fn remove_namespace(&self, namespace: &str) {
        if let Layout::PerNamespace(partitions) = &self.inner.layout {
            write(partitions).remove(namespace);
            self.inner.generation.send_modify(|g| *g += 1);
        }
    }

    /// The namespace watch has listed every namespace once.
    pub fn set_namespaces_listed(&self) {
        self.inner.namespaces_listed.store(true, Ordering::Release);
    }
}

impl SecretLookup for SecretCache {
    fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        match &self.inner.layout {
            Layout::Cluster(partition) => partition.get(namespace, name),
            Layout::PerNamespace(partitions) => {
                let partition = read(partitions).get(namespace).cloned()?;
                partition.get(namespace, name)
            }
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
