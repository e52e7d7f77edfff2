//! A steady stream of annotated pod creates through the API server, as the ReplicaSet
//! controller sends them during a rollout, counted: how many were created, how many failed and
//! why, how many came back bound, and how long the API server took for each. The suite runs one
//! through each event that could cost a fail-closed webhook a pod create (an upgrade, a replica
//! lost, an eviction, a flood of connections, an uninstall).
//!
//! The pods are bound to a node that does not exist: they are never scheduled or run, so the
//! stream costs the API server and dbbind what a create costs, and nothing on the node.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Result;

/// The label every pod of a stream carries, for cleaning up.
pub const LABEL: &str = "e2e.dbbind.io/load";

/// What became of one create.
enum Outcome {
    Bound(Duration),
    Unbound(Duration),
    Failed(Failure),
}

/// A create the API server refused: when it was sent, and the API server's message.
#[derive(Debug)]
pub struct Failure {
    pub sent: Instant,
    pub message: String,
}

/// What a stream saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub created: usize,
    /// Created and bound by dbbind (`dbbind.io/status: injected`).
    pub bound: usize,
    /// Refused by the API server.
    pub failed: Vec<Failure>,
    /// Each successful create's latency, sorted.
    pub latencies: Vec<Duration>,
    pub lasted: Duration,
}

impl Tally {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)]
    }

    /// `N creates in Ts, F failed, B bound; latency p50 …, p99 …, max …`.
    pub fn summary(&self) -> String {
        format!(
            "{} creates in {:.1} s, {} failed, {} bound; create latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.created + self.failed.len(),
            self.lasted.as_secs_f64(),
            self.failed.len(),
            self.bound,
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        )
    }
}

/// Pod creates at a steady rate, each in a task of its own (a slow create never slows the
/// rate), until stopped.
pub struct CreateStream {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Tally>,
}

impl CreateStream {
    /// Starts creating, `per_second` a second, pods in `namespace` annotated with
    /// `dbbind.io/secret: <secret>`; `name` prefixes their names.
    pub fn start(
        client: &kube::Client,
        namespace: &str,
        secret: &str,
        name: &str,
        per_second: u32,
    ) -> CreateStream {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let (stop, mut stopped) = watch::channel(false);
        let (secret, name) = (secret.to_owned(), name.to_owned());
        let period = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut creates = JoinSet::new();
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut index = 0u64;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                index += 1;
                let pod = load_pod(&format!("{name}-{index}"), &secret, &name);
                let pods = pods.clone();
                creates.spawn(async move { create(&pods, &pod).await });
            }
            let mut tally = Tally::default();
            while let Some(outcome) = creates.join_next().await {
                match outcome {
                    Ok(Outcome::Bound(latency)) => {
                        tally.created += 1;
                        tally.bound += 1;
                        tally.latencies.push(latency);
                    }
                    Ok(Outcome::Unbound(latency)) => {
                        tally.created += 1;
                        tally.latencies.push(latency);
                    }
                    Ok(Outcome::Failed(failure)) => tally.failed.push(failure),
                    Err(error) => tally.failed.push(Failure {
                        sent: Instant::now(),
                        message: format!("create task: {error}"),
                    }),
                }
            }
            tally.latencies.sort();
            tally.lasted = started.elapsed();
            tally
        });
        CreateStream { stop, task }
    }

    /// Stops creating, waits for the creates under way, and returns the tally.
    pub async fn stop(self) -> Result<Tally> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| anyhow!("the create stream ended badly: {e}"))
    }
}

async fn create(pods: &Api<Pod>, pod: &Pod) -> Outcome {
    let started = Instant::now();
    match pods.create(&PostParams::default(), pod).await {
        Ok(created) => {
            let latency = started.elapsed();
            let bound = created
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("dbbind.io/status"))
                .is_some_and(|status| status == "injected");
            if bound {
                Outcome::Bound(latency)
            } else {
                Outcome::Unbound(latency)
            }
        }
        Err(error) => Outcome::Failed(Failure {
            sent: started,
            message: format!(
                "{:?} after {:?}: {error}",
                pod.metadata.name,
                started.elapsed()
            ),
        }),
    }
}

/// A pod that asks for `secret`, bound to a node that does not exist (never run).
fn load_pod(name: &str, secret: &str, stream: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {LABEL: stream},
            "annotations": {"dbbind.io/secret": secret},
        },
        "spec": {
            "nodeName": "dbbind-e2e-nowhere",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": "registry.invalid/dbbind-e2e/never-run:1"}],
        },
    }))
    .unwrap_or_default()
}

/// Deletes a stream's pods.
pub async fn delete_pods(client: &kube::Client, namespace: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels(LABEL),
    )
    .await?;
    Ok(())
}
