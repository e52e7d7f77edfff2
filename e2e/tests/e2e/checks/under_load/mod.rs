//! A fail-closed webhook is judged by its worst minutes (docs/design.md §11): an upgrade, a
//! replica deleted, a process killed, an eviction, a flood of idle connections, an uninstall —
//! each run against the chart's replicas under a steady stream of annotated pod creates through
//! the API server, none of which may fail.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use dbbind_e2e::Result;
use dbbind_e2e::load::{self, CreateStream, Failure, Tally};
use dbbind_e2e::release::{self, Release, Replica};
use dbbind_e2e::scenarios::{self, Environment};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::installed::{
    certificates, container_pid, gitops_apply_changes_nothing, helm_test_binds, ready_endpoints,
    rss_mib,
};
use super::{apply_secret, kubectl};

mod abrupt;
mod graceful;
pub use abrupt::*;
pub use graceful::*;

/// Where the create streams run: an opted-in namespace with the external-generic Secret.
const LOAD_NAMESPACE: &str = "e2e-load";

const LOAD_SECRET: &str = "orders-db-conn";

/// Creates per second, through every event.
const RATE: u32 = 8;

/// What a stream must show.
struct Expect<'a> {
    /// Every pod created comes back bound.
    bound: bool,
    /// Failures that are the event's own, not dbbind's: none but for a killed process.
    excused: &'a dyn Fn(&Failure) -> bool,
}

const ALL_BOUND: Expect<'static> = Expect {
    bound: true,
    excused: &|_| false,
};

/// Runs `event` while pods are created at [`RATE`] a second (from 2 s before it to 3 s after),
/// and fails if any create failed (but for those `expect` excuses) or, when `expect` says so,
/// came back unbound.
async fn under_load<F>(
    environment: &mut Environment,
    name: &str,
    expect: Expect<'_>,
    event: F,
) -> Result<Tally>
where
    F: AsyncFnOnce(&mut Environment) -> Result<String>,
{
    scenarios::opted_in_namespace(&environment.plane, LOAD_NAMESPACE)?;
    apply_secret(environment, "external-generic", LOAD_NAMESPACE, None)?;
    let client = environment.plane.client().await?;
    let stream = CreateStream::start(&client, LOAD_NAMESPACE, LOAD_SECRET, name, RATE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let happened = event(environment).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = stream.stop().await?;
    load::delete_pods(&client, LOAD_NAMESPACE).await?;
    let what = happened?;
    eprintln!("{name}: {what}; {}", tally.summary());
    let (excused, failed): (Vec<&Failure>, Vec<&Failure>) = tally
        .failed
        .iter()
        .partition(|failure| (expect.excused)(failure));
    if !failed.is_empty() {
        return Err(anyhow!(
            "{name}: {} of {} pod creates failed ({what}): {}",
            failed.len(),
            tally.created + tally.failed.len(),
            failed
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for failure in excused {
        eprintln!("{name}: excused: {}", failure.message);
    }
    if expect.bound && tally.bound != tally.created {
        return Err(anyhow!(
            "{name}: {} of {} pods created unbound",
            tally.created - tally.bound,
            tally.created
        ));
    }
    if tally.created < RATE as usize * 5 {
        return Err(anyhow!(
            "{name}: only {} creates: the stream did not keep its rate",
            tally.created
        ));
    }
    Ok(tally)
}

/// The replica the API server's connection currently goes to: the one whose request counter
/// moves while pods are created.
async fn busiest_replica(environment: &Environment) -> Result<Replica> {
    let client = environment.plane.client().await?;
    let replicas = Release::wait_replicas(&client, 2).await?;
    let count = |replica: &Replica| {
        replica.metric_sum("dbbind_admission_requests_total{webhook=\"mutate\",")
    };
    let before: Vec<u64> = replicas.iter().map(count).collect::<Result<_>>()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<u64> = replicas.iter().map(count).collect::<Result<_>>()?;
    let busiest = (0..replicas.len())
        .max_by_key(|&i| after[i].saturating_sub(before[i]))
        .unwrap_or(0);
    Ok(replicas[busiest].clone())
}
