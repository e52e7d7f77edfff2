//! dbbind as users install it (docs/design.md §11): the chart's two replicas on the node,
//! serving through their Service, checked where a platform team would look; then judged by a
//! fail-closed webhook's worst minutes — an upgrade, a replica deleted, a process killed, an
//! eviction, a flood of idle connections, an uninstall — each under a steady stream of annotated
//! pod creates through the API server, none of which may fail.

use std::time::{Duration, Instant};

use dbbind_e2e::load::{self, CreateStream, Failure, Tally};
use dbbind_e2e::network::KUBERNETES_SERVICE_IP;
use dbbind_e2e::release::{self, Release, Replica};
use dbbind_e2e::scenarios::{self, Environment};
use dbbind_e2e::{Error, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;

use super::{apply_secret, kubectl};

/// Where the create streams run: an opted-in namespace with the external-generic Secret.
const LOAD_NAMESPACE: &str = "e2e-load";
const LOAD_SECRET: &str = "orders-db-conn";
/// Creates per second, through every event.
const RATE: u32 = 8;

fn object(environment: &Environment, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let output = kubectl(environment, &args, "")?;
    Ok(serde_json::from_str(&output.stdout)?)
}

/// The chart's replicas, read as a platform team would: running under runc as 65532 with a
/// read-only root, on pod addresses; the webhooks registered by Service with a caBundle the pods
/// wrote; the certificate Secret made by the pods under the chart's RBAC; the Service's
/// endpoints; the safety net on the Service range; and `helm test`.
pub async fn serves_from_its_own_pods(environment: &mut Environment) -> Result<()> {
    let client = environment.plane.client().await?;
    let replicas = Release::wait_replicas(&client, 2).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), release::NAMESPACE);
    let subnet = environment
        .network
        .subnet
        .trim_end_matches("0/24")
        .to_owned();
    for replica in &replicas {
        let pod = pods.get(&replica.name).await?;
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.host_network == Some(true) || !replica.ip.starts_with(&subnet) {
            return Err(Error::new(format!(
                "{} is not on the pod network ({}): {}",
                replica.name, environment.network.subnet, replica.ip
            )));
        }
        let pid = container_pid(environment, &pod)?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        if cmdline != b"/dbbind\0serve\0" {
            return Err(Error::new(format!(
                "{}'s process is not the image's /dbbind serve: {:?}",
                replica.name,
                String::from_utf8_lossy(&cmdline)
            )));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        for id in ["Uid:", "Gid:"] {
            let ids: Vec<&str> = status
                .lines()
                .find(|line| line.starts_with(id))
                .map(|line| line.split_whitespace().skip(1).collect())
                .unwrap_or_default();
            if ids != ["65532"; 4] {
                return Err(Error::new(format!(
                    "{} runs with {id} {ids:?}, not 65532",
                    replica.name
                )));
            }
        }
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root = mounts
            .lines()
            .find(|line| line.split_whitespace().nth(4) == Some("/"))
            .and_then(|line| line.split_whitespace().nth(5))
            .unwrap_or_default();
        if !root.split(',').any(|option| option == "ro") {
            return Err(Error::new(format!(
                "{}'s root filesystem is mounted {root:?}, not read-only",
                replica.name
            )));
        }
    }

    // Registered by Service, trusting the CA the pods keep in their certificate Secret.
    let secret = object(
        environment,
        &["get", "secret", "dbbind-tls", "-n", release::NAMESPACE],
    )?;
    let bundle = secret["data"]["ca-bundle.crt"].as_str().unwrap_or_default();
    if secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "dbbind"
        || !secret["metadata"]["annotations"]["meta.helm.sh/release-name"].is_null()
        || bundle.is_empty()
    {
        return Err(Error::new(format!(
            "the certificate Secret was not made by dbbind's pods: {}",
            secret["metadata"]
        )));
    }
    for (kind, name) in [
        ("mutatingwebhookconfiguration", "dbbind"),
        ("validatingwebhookconfiguration", "dbbind-workloads"),
    ] {
        let config = object(environment, &["get", kind, name])?;
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            let client_config = &webhook["clientConfig"];
            if client_config["service"]["name"] != "dbbind"
                || client_config["service"]["namespace"] != "dbbind"
                || client_config["service"]["port"] != 443
                || !client_config["url"].is_null()
                || client_config["caBundle"] != bundle
            {
                return Err(Error::new(format!(
                    "{kind} {name}'s {} is not registered by Service with the pods' CA: {client_config}",
                    webhook["name"]
                )));
            }
        }
    }

    // The Service's endpoints are the two pods.
    let mut addresses = ready_endpoints(environment)?;
    addresses.sort();
    let mut ips: Vec<String> = replicas.iter().map(|r| r.ip.clone()).collect();
    ips.sort();
    if addresses != ips {
        return Err(Error::new(format!(
            "the Service's ready endpoints {addresses:?} are not the replicas {ips:?}"
        )));
    }

    // Nothing is routed to a ClusterIP here: a connection to one fails at once on the machine.
    let service = object(
        environment,
        &["get", "service", "dbbind", "-n", release::NAMESPACE],
    )?;
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap_or_default();
    for address in [cluster_ip, KUBERNETES_SERVICE_IP] {
        let started = Instant::now();
        let connected = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect((address, 443)),
        )
        .await;
        let failed_at_once =
            matches!(&connected, Ok(Err(error)) if error.raw_os_error() == Some(113));
        if !failed_at_once || started.elapsed() > Duration::from_secs(1) {
            return Err(Error::new(format!(
                "a connection to ClusterIP {address}:443 did not fail at once with no route to host: {connected:?} after {:?}",
                started.elapsed()
            )));
        }
    }

    // The chart's own test: a dry-run Pod through the API server comes back bound.
    scenarios::opted_in_namespace(&environment.plane, LOAD_NAMESPACE)?;
    apply_secret(environment, "external-generic", LOAD_NAMESPACE, None)?;
    helm_test_binds(environment, "after the install")
}

/// `helm test`: the chart's test Pod reports a dry-run Pod bound.
fn helm_test_binds(environment: &Environment, when: &str) -> Result<()> {
    let tested = environment
        .dbbind
        .test(&environment.plane, &environment.node)?;
    if tested.contains("dbbind bound a Pod") {
        Ok(())
    } else {
        Err(Error::new(format!(
            "helm test {when} did not report a binding:\n{tested}"
        )))
    }
}

/// The host pid of a pod's dbbind container, from runc's state.
fn container_pid(environment: &Environment, pod: &Pod) -> Result<u32> {
    let id = pod
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|c| c.name == release::CONTAINER))
        .and_then(|status| status.container_id.clone())
        .ok_or_else(|| Error::new("the dbbind container has no id yet"))?;
    environment
        .node
        .container_pid(id.trim_start_matches("containerd://"))
}

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
        return Err(Error::new(format!(
            "{name}: {} of {} pod creates failed ({what}): {}",
            failed.len(),
            tally.created + tally.failed.len(),
            failed
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    for failure in excused {
        eprintln!("{name}: excused: {}", failure.message);
    }
    if expect.bound && tally.bound != tally.created {
        return Err(Error::new(format!(
            "{name}: {} of {} pods created unbound",
            tally.created - tally.bound,
            tally.created
        )));
    }
    if tally.created < RATE as usize * 5 {
        return Err(Error::new(format!(
            "{name}: only {} creates: the stream did not keep its rate",
            tally.created
        )));
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

/// The replicas' pod names, sorted.
fn names(replicas: &[Replica]) -> Vec<String> {
    let mut names: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names
}

/// The certificate Secret's CA and serving certificate, and both caBundles.
fn certificates(environment: &Environment) -> Result<Vec<String>> {
    let secret = object(
        environment,
        &["get", "secret", "dbbind-tls", "-n", release::NAMESPACE],
    )?;
    let mut seen: Vec<String> = ["ca.crt", "tls.crt", "ca-bundle.crt"]
        .iter()
        .map(|key| secret["data"][key].as_str().unwrap_or_default().to_owned())
        .collect();
    for (kind, name) in [
        ("mutatingwebhookconfiguration", "dbbind"),
        ("validatingwebhookconfiguration", "dbbind-workloads"),
    ] {
        let config = object(environment, &["get", kind, name])?;
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            seen.push(
                webhook["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    Ok(seen)
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
                return Err(Error::new(format!("{} still runs {image}", replica.name)));
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
        return Err(Error::new(
            "the upgrade changed the certificate Secret or a caBundle",
        ));
    }

    // The same release rendered and applied as a GitOps tool does.
    let values = environment.dbbind.helm(&[
        "get",
        "values",
        release::RELEASE,
        "-n",
        release::NAMESPACE,
        "-o",
        "json",
    ])?;
    let values_file = tempfile::NamedTempFile::new()?;
    std::fs::write(values_file.path(), &values.stdout)?;
    let rendered = environment.dbbind.helm(&[
        "template",
        release::RELEASE,
        "charts/dbbind",
        "--namespace",
        release::NAMESPACE,
        "--no-hooks",
        // What a GitOps tool passes: the cluster's version (the chart requires 1.30 or later).
        "--kube-version",
        "1.36.3",
        "-f",
        &values_file.path().display().to_string(),
    ])?;
    if !rendered.success {
        return Err(Error::new(format!("helm template: {}", rendered.stderr)));
    }
    // Not the Deployment's generation: kubectl's last-applied annotation alone bumps it.
    let client = environment.plane.client().await?;
    let pods_before = names(&Release::replicas(&client).await?);
    kubectl(
        environment,
        &["apply", "-n", release::NAMESPACE, "-f", "-"],
        &rendered.stdout,
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if certificates(environment)? != before {
        return Err(Error::new(
            "kubectl apply of the rendered release changed the certificates or a caBundle",
        ));
    }
    let pods_after = names(&Release::replicas(&client).await?);
    if pods_after != pods_before {
        return Err(Error::new(format!(
            "kubectl apply of the rendered release rolled dbbind: {pods_before:?} -> {pods_after:?}"
        )));
    }
    for rendered_object in dbbind_e2e::yaml_documents(&rendered.stdout)? {
        let kind = rendered_object["kind"].as_str().unwrap_or_default();
        let name = rendered_object["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        let mut args = vec!["get", kind, name];
        if rendered_object["metadata"]["namespace"].is_string() {
            args.extend(["-n", release::NAMESPACE]);
        }
        let live = object(environment, &args)?;
        if let Some(path) = first_difference(&rendered_object, &live, String::new()) {
            return Err(Error::new(format!(
                "{kind} {name}: live {path} is not what the chart renders"
            )));
        }
    }
    Ok(())
}

/// The first path where `rendered` has a value `live` does not (lists by index, numbers and
/// strings compared as text, as the API server may normalise either).
fn first_difference(rendered: &Value, live: &Value, path: String) -> Option<String> {
    match rendered {
        Value::Object(fields) => fields.iter().find_map(|(key, value)| {
            first_difference(value, &live[key.as_str()], format!("{path}/{key}"))
        }),
        Value::Array(items) => {
            let live_items = live.as_array()?;
            if live_items.len() != items.len() {
                return Some(path);
            }
            items
                .iter()
                .zip(live_items)
                .enumerate()
                .find_map(|(index, (r, l))| first_difference(r, l, format!("{path}/{index}")))
        }
        Value::Null => None,
        scalar => {
            let text = |value: &Value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (text(scalar) != text(live)).then_some(path)
        }
    }
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
            return Err(Error::new(format!(
                "no replacement for {} within 120 s: {replicas:?}",
                gone.name
            )));
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
            return Err(Error::new(format!("cannot kill process {pid}")));
        }
        // Until the endpoint is not ready, the API server may still dial the dead address.
        let not_ready_at = loop {
            if !ready_endpoints(environment)?.contains(&victim.ip) {
                break Instant::now();
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                return Err(Error::new(format!(
                    "{}'s endpoint still ready 30 s after its process was killed",
                    victim.name
                )));
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
                return Err(Error::new(format!(
                    "{}'s container was not restarted and ready within 120 s",
                    victim.name
                )));
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

/// The Service's ready endpoint addresses.
fn ready_endpoints(environment: &Environment) -> Result<Vec<String>> {
    let slices = object(
        environment,
        &[
            "get",
            "endpointslices",
            "-n",
            release::NAMESPACE,
            "-l",
            "kubernetes.io/service-name=dbbind",
        ],
    )?;
    Ok(slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|endpoint| endpoint["conditions"]["ready"] == true)
        .filter_map(|endpoint| endpoint["addresses"][0].as_str().map(str::to_owned))
        .collect())
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
            environment.plane.kubectl_run(
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
            return Err(Error::new(format!(
                "the first eviction was refused: {}",
                first.stderr
            )));
        }
        let second = evict(&replicas[1].name)?;
        if second.success || !second.stderr.contains("disruption budget") {
            return Err(Error::new(format!(
                "the second eviction was not refused by the PodDisruptionBudget: {}{}",
                second.stdout, second.stderr
            )));
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

/// A replica's resident memory, in MiB.
async fn rss_mib(environment: &Environment, replica: &Replica) -> Result<u64> {
    let client = environment.plane.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, release::NAMESPACE);
    let pid = container_pid(environment, &pods.get(&replica.name).await?)?;
    Ok(dbbind_e2e::webhook::rss_kib(pid)? / 1024)
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
        return Err(Error::new("no pod was bound before the uninstall"));
    }
    for (kind, name) in [
        ("mutatingwebhookconfiguration", "dbbind"),
        ("validatingwebhookconfiguration", "dbbind-workloads"),
        ("clusterrole", "dbbind-unregister"),
    ] {
        let left = environment.plane.kubectl_run(&["get", kind, name], None)?;
        if left.success {
            return Err(Error::new(format!("{kind} {name} is left after uninstall")));
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
            return Err(Error::new(format!(
                "README does not list {remaining} among what an uninstall leaves"
            )));
        }
    }
    Ok(())
}
