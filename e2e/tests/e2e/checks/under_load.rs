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

/// `helm upgrade` to the image's other tag with a values change, under load; then `helm test`
/// again, and the certificates, CA and caBundles are as they were. `helm template | kubectl
/// apply` of the same release (a GitOps tool's way) changes nothing either, and every field the
/// chart renders is live as rendered.
pub async fn upgrade(environment: &mut Environment) -> Result<()> {
    let before = certificates(environment)?;
    let next = format!(
        "image.tag={}{}",
        dbbind_e2e::tools::chart_app_version()?,
        dbbind_e2e::image::DBBIND_NEXT_TAG_SUFFIX
    );
    under_load(environment, "upgrade", ALL_BOUND, async |environment| {
        let started = Instant::now();
        environment.dbbind.upgrade(
            &environment.plane,
            &environment.node,
            &["--set", &next, "--set", "logLevel=debug"],
        )?;
        let client = environment.plane.client().await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), release::NAMESPACE);
        let replicas = Release::wait_replicas(&client, 2).await?;
        for replica in &replicas {
            let image = pods
                .get(&replica.name)
                .await?
                .spec
                .unwrap_or_default()
                .containers[0]
                .image
                .clone()
                .unwrap_or_default();
            if !image.ends_with(dbbind_e2e::image::DBBIND_NEXT_TAG_SUFFIX) {
                return Err(anyhow!("{} still runs {image}", replica.name));
            }
        }
        Ok(format!(
            "helm upgrade to {next} and logLevel debug took {:.1} s",
            started.elapsed().as_secs_f64()
        ))
    })
    .await?;
    helm_test_binds(environment, "after the upgrade")?;
    if certificates(environment)? != before {
        return Err(anyhow!(
            "the upgrade changed the certificate Secret or a caBundle"
        ));
    }

    gitops_apply_changes_nothing(environment, &before).await
}

/// One replica's pod deleted (as `kubectl delete pod` or a node going away does), under load.
pub async fn deleted_replica(environment: &mut Environment) -> Result<()> {
    under_load(
        environment,
        "replica-deleted",
        ALL_BOUND,
        async |environment| {
            let victim = busiest_replica(environment).await?;
            kubectl(
                environment,
                &[
                    "delete",
                    "pod",
                    &victim.name,
                    "-n",
                    release::NAMESPACE,
                    "--wait=false",
                ],
                "",
            )?;
            let started = Instant::now();
            replaced(environment, &victim).await?;
            Ok(format!(
                "pod {} deleted, its replacement ready after {:.1} s",
                victim.name,
                started.elapsed().as_secs_f64()
            ))
        },
    )
    .await
    .map(|_| ())
}

/// Waits until two replicas are ready and `gone` is not one of them.
async fn replaced(environment: &Environment, gone: &Replica) -> Result<()> {
    let client = environment.plane.client().await?;
    let started = Instant::now();
    loop {
        let replicas = Release::replicas(&client).await?;
        if replicas.len() == 2 && replicas.iter().all(|r| r.name != gone.name) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!(
                "no replacement for {} within 120 s: {replicas:?}",
                gone.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The process of the replica the API server is calling killed (SIGKILL): the kubelet restarts
/// its container. Under load.
///
/// The one failure no webhook behind a Service can prevent, and the only one excused: until
/// the kubelet notices the dead container (its next relist, up to a second) and the endpoint is
/// marked not ready, the pod's address still counts as ready; a connection the API server
/// dials meanwhile may pick it and be refused, and the API server neither retries a POST nor
/// tries another endpoint (a create whose request was in flight at the kill fails the same
/// way). So a failure is excused only if it is the API server's call to the killed replica's
/// address, refused or cut, sent between the kill and the moment its endpoint was seen not
/// ready; anything else — a denial, a timeout, the other replica, a create sent after the
/// endpoint update, a pod created unbound — fails the check.
pub async fn killed_process(environment: &mut Environment) -> Result<()> {
    let window = std::sync::Mutex::new(None::<(String, Instant, Instant)>);
    let excused = |failure: &Failure| {
        let Ok(window) = window.lock() else {
            return false;
        };
        let Some((ip, killed, not_ready)) = window.as_ref() else {
            return false;
        };
        let message = &failure.message;
        let to_the_killed_replica = message.contains("failed calling webhook \"bind.dbbind.io\"")
            && (message.contains(&format!("dial tcp {ip}:8443: connect: connection refused"))
                || message.contains("connection reset by peer")
                || message.contains(": EOF"));
        to_the_killed_replica
            && failure.sent + Duration::from_millis(100) >= *killed
            && failure.sent <= *not_ready + Duration::from_millis(500)
    };
    let expect = Expect {
        bound: true,
        excused: &excused,
    };
    under_load(environment, "process-killed", expect, async |environment| {
        let victim = busiest_replica(environment).await?;
        let client = environment.plane.client().await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), release::NAMESPACE);
        let pod = pods.get(&victim.name).await?;
        let restarts = |pod: &Pod| -> i32 {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|all| all.iter().map(|c| c.restart_count).sum())
                .unwrap_or_default()
        };
        let before = restarts(&pod);
        let pid = container_pid(environment, &pod)?;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        let killed_at = Instant::now();
        if !killed.success() {
            return Err(anyhow!("cannot kill process {pid}"));
        }
        // Until the endpoint is not ready, the API server may still dial the dead address.
        let not_ready_at = loop {
            if !ready_endpoints(environment)?.contains(&victim.ip) {
                break Instant::now();
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                return Err(anyhow!(
                    "{}'s endpoint still ready 30 s after its process was killed",
                    victim.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Ok(mut window) = window.lock() {
            *window = Some((victim.ip.clone(), killed_at, not_ready_at));
        }
        loop {
            let now = pods.get(&victim.name).await?;
            let ready = Release::replicas(&client).await?;
            if restarts(&now) > before && ready.len() == 2 {
                break;
            }
            if killed_at.elapsed() > Duration::from_secs(120) {
                return Err(anyhow!(
                    "{}'s container was not restarted and ready within 120 s",
                    victim.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(format!(
            "process {pid} of {} ({}) killed, its endpoint not ready after {:.2} s, its container restarted and ready after {:.1} s",
            victim.name,
            victim.ip,
            (not_ready_at - killed_at).as_secs_f64(),
            killed_at.elapsed().as_secs_f64()
        ))
    })
    .await
    .map(|_| ())
}

/// One replica evicted through the Eviction API, as `kubectl drain` does, under load: the
/// PodDisruptionBudget lets one go and refuses the second while the first's replacement is not
/// ready.
pub async fn eviction(environment: &mut Environment) -> Result<()> {
    under_load(environment, "eviction", ALL_BOUND, async |environment| {
        let client = environment.plane.client().await?;
        let replicas = Release::wait_replicas(&client, 2).await?;
        let evict = |pod: &str| {
            let body = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": release::NAMESPACE}});
            environment.plane.kubectl_outcome(
                &[
                    "create",
                    "--raw",
                    &format!(
                        "/api/v1/namespaces/{}/pods/{pod}/eviction",
                        release::NAMESPACE
                    ),
                    "-f",
                    "-",
                ],
                Some(&body.to_string()),
            )
        };
        let first = evict(&replicas[0].name)?;
        if !first.success {
            return Err(anyhow!(
                "the first eviction was refused: {}",
                first.stderr
            ));
        }
        let second = evict(&replicas[1].name)?;
        if second.success || !second.stderr.contains("disruption budget") {
            return Err(anyhow!(
                "the second eviction was not refused by the PodDisruptionBudget: {}{}",
                second.stdout, second.stderr
            ));
        }
        let started = Instant::now();
        replaced(environment, &replicas[0]).await?;
        Ok(format!(
            "{} evicted, the second eviction refused by the PodDisruptionBudget, the replacement ready after {:.1} s",
            replicas[0].name,
            started.elapsed().as_secs_f64()
        ))
    })
    .await
    .map(|_| ())
}

/// 5,000 TCP connections that never start TLS, opened to the replica the API server is
/// calling and held, under load: at the cap, each new connection takes the place of the
/// oldest unfinished handshake, so the API server's connections are served throughout.
pub async fn idle_flood(environment: &mut Environment) -> Result<()> {
    const CONNECTIONS: usize = 5_000;
    dbbind_e2e::tools::enough_open_files(CONNECTIONS + 2_000)?;
    under_load(environment, "idle-connections", ALL_BOUND, async |environment| {
        let target = busiest_replica(environment).await?;
        let address = format!("{}:8443", target.ip);
        let started = Instant::now();
        // 100 connects under way at a time, as fast as the two cores allow.
        let mut connecting = tokio::task::JoinSet::new();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
        for _ in 0..CONNECTIONS {
            let (address, gate) = (address.clone(), std::sync::Arc::clone(&gate));
            connecting.spawn(async move {
                let _permit = gate.acquire_owned().await;
                tokio::net::TcpStream::connect(&address).await
            });
        }
        let mut held = Vec::with_capacity(CONNECTIONS);
        let mut refused = 0;
        while let Some(connected) = connecting.join_next().await {
            match connected {
                Ok(Ok(stream)) => held.push(stream),
                _ => refused += 1,
            }
        }
        let opened = started.elapsed();
        // Held for a while: the stream's creates go on meanwhile.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let mut closed_by_dbbind = 0;
        for stream in &held {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut byte)).await {
                closed_by_dbbind += 1;
            }
        }
        let memory = rss_mib(environment, &target).await?;
        drop(held);
        Ok(format!(
            "{CONNECTIONS} idle TCP connections to {} opened in {:.1} s ({refused} refused), {closed_by_dbbind} closed by dbbind after 6 s; its RSS {memory} MiB",
            target.name,
            opened.as_secs_f64(),
        ))
    })
    .await
    .map(|_| ())
}

/// `helm uninstall` under load: the pre-delete hook removes the webhook configurations before
/// the Service and pods go, so no create fails; pods created after it are admitted unbound.
/// What remains is what the README says remains.
pub async fn uninstall(environment: &mut Environment) -> Result<()> {
    let unbound_after_removal = Expect {
        bound: false,
        excused: &|_| false,
    };
    let tally = under_load(
        environment,
        "uninstall",
        unbound_after_removal,
        async |environment| {
            let started = Instant::now();
            let output = environment.dbbind.helm_checked(
                &[
                    "uninstall",
                    release::RELEASE,
                    "--namespace",
                    release::NAMESPACE,
                    "--wait",
                    "--timeout",
                    "3m",
                ],
                &environment.plane,
                &environment.node,
            )?;
            Ok(format!(
                "helm uninstall took {:.1} s ({})",
                started.elapsed().as_secs_f64(),
                output.trim()
            ))
        },
    )
    .await?;
    if tally.bound == 0 {
        return Err(anyhow!("no pod was bound before the uninstall"));
    }
    for (kind, name) in [
        ("mutatingwebhookconfiguration", "dbbind"),
        ("validatingwebhookconfiguration", "dbbind-workloads"),
        ("clusterrole", "dbbind-unregister"),
    ] {
        let left = environment
            .plane
            .kubectl_outcome(&["get", kind, name], None)?;
        if left.success {
            return Err(anyhow!("{kind} {name} is left after uninstall"));
        }
    }
    // What the README lists as remaining: the certificate Secret dbbind made, the Lease of
    // restart on rotation, the namespace, and the opt-in labels.
    for (kind, name) in [("secret", "dbbind-tls"), ("lease", "dbbind-rotation")] {
        kubectl(
            environment,
            &["get", kind, name, "-n", release::NAMESPACE],
            "",
        )?;
    }
    let readme = std::fs::read_to_string(dbbind_e2e::tools::repo_root().join("README.md"))?;
    for remaining in [
        "`dbbind-tls`",
        "`dbbind-test`",
        "`dbbind-rotation`",
        "`dbbind.io/inject=enabled`",
        "`dbbind.io/restartedAt`",
    ] {
        if !readme.contains(remaining) {
            return Err(anyhow!(
                "README does not list {remaining} among what an uninstall leaves"
            ));
        }
    }
    Ok(())
}
