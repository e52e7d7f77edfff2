//! The cache's flags of `dbbind serve` and starting the watches they ask for.

use std::sync::Arc;

use clap::Args;
use kube::Api;

use super::namespaces::{self, ClientWatches};
use super::{SecretCache, watch};
use crate::metrics::Metrics;
use crate::profiles::SharedProfiles;
use crate::rotation::changed::ChangedSecrets;
use crate::tasks::Tasks;

#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Secret cache")]
pub struct CacheFlags {
    /// Watch Secrets in these namespaces only (comma separated), so read access to Secrets is
    /// needed there only. They must cover every namespace that opts in. Default: all namespaces.
    #[arg(
        long,
        env = "DBBIND_WATCH_NAMESPACES",
        value_delimiter = ',',
        conflicts_with = "namespace_selector"
    )]
    pub watch_namespaces: Vec<String>,
    /// Watch Secrets only in the namespaces this label selector picks, following them as they
    /// are labelled and unlabelled (e.g. `dbbind.io/inject=enabled`, the webhook's own
    /// namespaceSelector): Secrets elsewhere are never listed. Needs list and watch on
    /// namespaces. Default: all namespaces.
    #[arg(long, env = "DBBIND_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,
}

/// Starts the Secret watches of the cache's scope: the whole cluster, the namespaces of
/// `--watch-namespaces`, or those `--namespace-selector` picks.
pub fn start(
    flags: &CacheFlags,
    client: &kube::Client,
    profiles: &SharedProfiles,
    metrics: &Arc<Metrics>,
    rotations: Option<Arc<ChangedSecrets>>,
    tasks: &mut Tasks,
) -> SecretCache {
    let filters = profiles.shape_filter();
    if let Some(selector) = &flags.namespace_selector {
        let cache = SecretCache::following_namespaces(rotations);
        let counted = cache.clone();
        let metrics = Arc::clone(metrics);
        let watches = ClientWatches {
            client: client.clone(),
            filters,
            on_change: Arc::new(move || metrics.set_cache_objects(counted.len())),
        };
        tasks.spawn(
            "namespace watch",
            namespaces::follow(
                Api::all(client.clone()),
                selector.clone(),
                cache.clone(),
                watches,
            ),
        );
        tracing::info!(%selector, "watching Secrets in the namespaces this selector picks");
        return cache;
    }
    if flags.watch_namespaces.is_empty() {
        let (cache, partition) = SecretCache::cluster(rotations);
        let counted = Arc::clone(&partition);
        let metrics = Arc::clone(metrics);
        tasks.spawn(
            "Secret watch",
            watch::run(partition, Api::all(client.clone()), filters, move || {
                metrics.set_cache_objects(counted.len())
            }),
        );
        return cache;
    }
    let (cache, partitions) = SecretCache::namespaces(&flags.watch_namespaces, rotations);
    for (namespace, partition) in partitions {
        let (metrics, counted) = (Arc::clone(metrics), cache.clone());
        tasks.spawn(
            format!("Secret watch in {namespace}"),
            watch::run(
                partition,
                Api::namespaced(client.clone(), &namespace),
                filters.clone(),
                move || metrics.set_cache_objects(counted.len()),
            ),
        );
    }
    tracing::info!(namespaces = %flags.watch_namespaces.join(","), "watching Secrets in these namespaces only");
    cache
}
