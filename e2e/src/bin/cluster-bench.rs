//! The control-plane figures of BENCHMARKS.md: `dbbind serve` (release build) against the
//! harness's real kube-apiserver, etcd and kube-controller-manager.
//!
//! - memory and time to ready with no Secrets, 10,000 and 100,000, for the cluster-wide cache
//!   and for the opted-in scope (`--namespace-selector`, the chart's default) with 10,000 of the
//!   100,000 in opted-in namespaces, and after the load runs;
//! - h2load against that `dbbind serve` (TLS, HTTP/2): the unchanged floor and a bind;
//! - pod-create latency through the API server: no webhook, a dbbind call that changes
//!   nothing, a dbbind bind.
//!
//!   scripts/bench-cluster            (runs this, and writes its section of BENCHMARKS.md)
//!   cargo run --release -p dbbind-e2e --bin cluster-bench [-- SECRETS PODS]
//!
//! Prints a Markdown section on stdout; progress on stderr. Everything runs on loopback and
//! stops when it ends.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbbind_e2e::cluster::ControlPlane;
use dbbind_e2e::kyverno::Kyverno;
use dbbind_e2e::tools::{self, repo_root};
use dbbind_e2e::webhook::Dbbind;
use dbbind_e2e::{Error, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const OPTED_IN: &str = "dbbind.io/inject=enabled";

fn progress(message: &str) {
    eprintln!("cluster-bench: {message}");
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    dbbind_e2e::process::stop_all_on_signal();
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let pods: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let opted_in_share = total / 10;

    progress("starting the control plane");
    let plane = ControlPlane::start()?;
    let client = plane.client().await?;
    let binary = tools::dbbind_release()?;
    let mut out = Vec::new();

    let cluster_scope: &[&str] = &[];
    let opted_in_scope: &[&str] = &["--namespace-selector=dbbind.io/inject=enabled"];
    let mut memory = Vec::new();

    progress("idle");
    memory.push(measure(&plane, &binary, cluster_scope, "cluster", 0).await?);

    progress(&format!(
        "creating {opted_in_share} Secrets in an opted-in namespace"
    ));
    namespace(&client, "bench-optin", true).await?;
    create_secrets(&client, "bench-optin", opted_in_share).await?;
    memory.push(measure(&plane, &binary, cluster_scope, "cluster", opted_in_share).await?);

    let others = total - opted_in_share;
    progress(&format!(
        "creating {others} Secrets in namespaces that did not opt in"
    ));
    let per_namespace = 10_000;
    for index in 0..others.div_ceil(per_namespace) {
        let name = format!("bench-other-{index}");
        namespace(&client, &name, false).await?;
        let count = per_namespace.min(others - index * per_namespace);
        create_secrets(&client, &name, count).await?;
    }
    memory.push(measure(&plane, &binary, cluster_scope, "cluster", total).await?);
    memory.push(
        measure(
            &plane,
            &binary,
            opted_in_scope,
            "opted-in namespaces",
            opted_in_share,
        )
        .await?,
    );

    out.push("## Against the real control plane".to_owned());
    out.push(String::new());
    out.push(format!(
        "`scripts/bench-cluster` (`cargo run --release -p dbbind-e2e --bin cluster-bench`) starts the \
         suite's kube-apiserver, etcd and kube-controller-manager, fills them with Secrets of eight \
         keys and two labels each, and runs the release `dbbind serve` against them. Last run: {}.",
        today()
    ));
    out.push(String::new());
    out.push("### Memory and time to ready".to_owned());
    out.push(String::new());
    out.push(
        "| scope | Secrets in the cluster | Secrets cached | RSS at ready | time to ready |"
            .to_owned(),
    );
    out.push("|---|---|---|---|---|".to_owned());
    for footprint in &memory {
        out.push(footprint.row());
    }

    // The rest runs against the chart's configuration: the opted-in scope.
    progress("serving as the chart does, for the load and the latency runs");
    namespace(&client, "shop", true).await?;
    let fixture = fixture_secret()?;
    Api::<Secret>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &fixture)
        .await?;
    let dbbind = Dbbind::start_binary(&plane, &binary, opted_in_scope)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_load = dbbind.rss_kib()?;

    progress("h2load: floor and bind");
    let address = format!("https://127.0.0.1:{}/mutate", dbbind.listen_port);
    let floor = h2load(&address, "tests/fixtures/admission/update-pod.json")?;
    answers_with_a_patch(
        &address,
        "tests/fixtures/admission/create-replicaset-pod.json",
    )?;
    let bind = h2load(
        &address,
        "tests/fixtures/admission/create-replicaset-pod.json",
    )?;
    let after_load = dbbind.rss_kib()?;
    out.push(String::new());
    out.push(format!(
        "RSS of the opted-in `dbbind serve` ({opted_in_share} Secrets cached) before the load runs: \
         {}; after 40,000 h2load requests and {} pod creates: see below.",
        mib(before_load),
        pods * 2
    ));
    out.push(String::new());
    out.push("### h2load against `dbbind serve`".to_owned());
    out.push(String::new());
    out.push(
        "`h2load -n 20000 -c 8 -m 1` (Debian's nghttp2-client) over TLS and HTTP/2, one request in \
         flight per connection as the API server sends them, against the process above."
            .to_owned(),
    );
    out.push(String::new());
    out.push("| request | requests/s | time per request vs floor | p50 | p99 | response bytes | bytes vs floor | failed |".to_owned());
    out.push("|---|---|---|---|---|---|---|---|".to_owned());
    out.push(floor.row("floor: UPDATE review, unchanged", &floor));
    out.push(bind.row("bind: ReplicaSet pod CREATE, patched", &floor));

    progress("pod creates through the API server");
    dbbind.register(&plane)?;
    namespace(&client, "lat-none", false).await?;
    namespace(&client, "lat-noop", true).await?;
    namespace(&client, "lat-bind", true).await?;
    Api::<Secret>::namespaced(client.clone(), "lat-bind")
        .create(&PostParams::default(), &fixture)
        .await?;
    // Warm each path (a namespace's first pods, the API server's webhook client) first.
    let bind_annotation = [("dbbind.io/secret", "orders-db-conn")];
    let noop_annotation = [("dbbind.io/inject", "false")];
    create_pods(&client, "lat-none", &bind_annotation, 5).await?;
    create_pods(&client, "lat-noop", &noop_annotation, 5).await?;
    create_pods(&client, "lat-bind", &bind_annotation, 5).await?;
    let none = create_pods(&client, "lat-none", &bind_annotation, pods).await?;
    let noop = create_pods(&client, "lat-noop", &noop_annotation, pods).await?;
    let bound = create_pods(&client, "lat-bind", &bind_annotation, pods).await?;
    let after_all = dbbind.rss_kib()?;
    out.push(String::new());
    out.push("### Pod creates through the API server".to_owned());
    out.push(String::new());
    out.push(format!(
        "{pods} pods created one after another with the kube client, each timed from request to \
         response. *No webhook*: a namespace without the opt-in label (the API server's \
         namespaceSelector skips dbbind). *No-op call*: `dbbind.io/inject: \"false\"`, sent to \
         dbbind and admitted unchanged. *Bind*: one binding, patched."
    ));
    out.push(String::new());
    out.push("| pod create | mean | p50 | p99 | mean vs no webhook |".to_owned());
    out.push("|---|---|---|---|---|".to_owned());
    for (name, run) in [
        ("no webhook", &none),
        ("dbbind, no-op call", &noop),
        ("dbbind, bind", &bound),
    ] {
        out.push(format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} |",
            run.mean_ms(),
            run.percentile_ms(0.5),
            run.percentile_ms(0.99),
            run.mean_ms() / none.mean_ms()
        ));
    }
    out.push(String::new());
    out.push(format!(
        "RSS after the h2load runs: {}; after the pod creates too: {}.",
        mib(after_load),
        mib(after_all)
    ));

    progress("Kyverno, side by side");
    let kyverno_ratio = match side_by_side(
        &plane, &client, &dbbind, &floor, &bind, &bound, pods, after_all,
    )
    .await
    {
        Ok((lines, ratio)) => {
            out.extend(lines);
            Some(ratio)
        }
        Err(error) => {
            out.push(String::new());
            out.push(format!("Kyverno was not measured in this run: {error}"));
            None
        }
    };

    // The targets of the scale work, judged on this run's figures.
    let verdict = |met: bool| if met { "met" } else { "not met" };
    let (ten_k, hundred_k, scoped) = (&memory[1], &memory[2], &memory[3]);
    let others_cached = scoped.cached.saturating_sub(opted_in_share as u64);
    out.push(String::new());
    out.push("### Targets".to_owned());
    out.push(String::new());
    out.push("| target | this run | |".to_owned());
    out.push("|---|---|---|".to_owned());
    let rows = [
        (
            format!("RSS ≤ 20 MiB with {} Secrets cached", ten_k.cached),
            mib(ten_k.rss_kib),
            ten_k.rss_kib <= 20 * 1024,
        ),
        (
            format!("RSS ≤ 64 MiB with {} Secrets cached", hundred_k.cached),
            mib(hundred_k.rss_kib),
            hundred_k.rss_kib <= 64 * 1024,
        ),
        (
            "opted-in scope: no Secret of another namespace cached".to_owned(),
            format!("{others_cached} of {}", total - opted_in_share),
            others_cached == 0,
        ),
        (
            "bind ≤ 1.10 × the floor's time per request (h2load)".to_owned(),
            format!("{:.2}", floor.rate / bind.rate),
            floor.rate / bind.rate <= 1.10,
        ),
        (
            "bind response ≤ 2 × the floor's bytes".to_owned(),
            format!("{:.0} vs {:.0} bytes", bind.bytes, floor.bytes),
            bind.bytes <= 2.0 * floor.bytes,
        ),
        (
            "≥ 5 × Kyverno's throughput on the equivalent injection".to_owned(),
            kyverno_ratio.map_or("not measured".to_owned(), |r| format!("{r:.1}×")),
            kyverno_ratio.is_some_and(|r| r >= 5.0),
        ),
    ];
    for (target, figure, met) in rows {
        out.push(format!("| {target} | {figure} | {} |", verdict(met)));
    }
    println!("{}", out.join("\n"));
    Ok(())
}

/// Kyverno with the equivalent ClusterPolicy: the same h2load runs against its mutate
/// endpoint, the same pod creates through the API server (dbbind's webhooks removed first, so
/// Kyverno alone acts), its memory; then the ratios.
#[allow(clippy::too_many_arguments)]
async fn side_by_side(
    plane: &ControlPlane,
    client: &kube::Client,
    dbbind: &Dbbind,
    dbbind_floor: &H2load,
    dbbind_bind: &H2load,
    dbbind_pods: &Latencies,
    pods: usize,
    dbbind_rss: u64,
) -> Result<(Vec<String>, f64)> {
    let kyverno = Kyverno::start(plane)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = kyverno.rss_kib()?;
    let url = kyverno.mutate_url(plane)?;
    let floor = h2load(&url, "tests/fixtures/admission/update-pod.json")?;
    answers_with_a_patch(&url, "tests/fixtures/admission/create-replicaset-pod.json")?;
    let bind = h2load(&url, "tests/fixtures/admission/create-replicaset-pod.json")?;
    for config in [
        "mutatingwebhookconfiguration/dbbind",
        "validatingwebhookconfiguration/dbbind-workloads",
    ] {
        plane.kubectl_run(&["delete", config], None)?;
    }
    namespace(client, "lat-kyverno", true).await?;
    let fixture = fixture_secret()?;
    Api::<Secret>::namespaced(client.clone(), "lat-kyverno")
        .create(&PostParams::default(), &fixture)
        .await?;
    let annotation = [("dbbind.io/secret", "orders-db-conn")];
    create_pods(client, "lat-kyverno", &annotation, 5).await?;
    let pods_run = create_pods(client, "lat-kyverno", &annotation, pods).await?;
    // The comparison holds only if Kyverno really injected: look at one pod it admitted.
    let list = Api::<Pod>::namespaced(client.clone(), "lat-kyverno")
        .list(&Default::default())
        .await?;
    let injected = list.items.first().is_some_and(|pod| {
        pod.spec.as_ref().is_some_and(|spec| {
            spec.containers[0].env.iter().flatten().any(|env| {
                env.name == "POSTGRES_PASSWORD"
                    && env
                        .value_from
                        .as_ref()
                        .and_then(|from| from.secret_key_ref.as_ref())
                        .is_some_and(|key| key.name == "orders-db-conn" && key.key == "password")
            })
        })
    });
    if !injected {
        return Err(Error::new(format!(
            "Kyverno admitted the pods without the variables; its log:\n{}",
            kyverno.log_tail(20)
        )));
    }
    let after = kyverno.rss_kib()?;
    let _ = dbbind;
    let ratio = dbbind_bind.rate / bind.rate;
    Ok((
        vec![
            String::new(),
            "### Side by side with Kyverno".to_owned(),
            String::new(),
            format!(
                "Kyverno {} (`cmd/kyverno` built from the Go module proxy by `scripts/kyverno`, run out \
             of cluster as its DEVELOPMENT.md describes, its CRDs from the module's `config/crds`) \
             with `e2e/bench/kyverno-policy.yaml`: in opted-in namespaces, a pod annotated \
             `dbbind.io/secret` gets the five `POSTGRES_*` variables as `secretKeyRef`s in every \
             container. It was ready (policy accepted, webhook registered) after {:.1} s.",
                std::env::var("KYVERNO_VERSION").unwrap_or_else(|_| "v1.19.1".to_owned()),
                kyverno.ready_after.as_secs_f64()
            ),
            String::new(),
            "| h2load, same bodies | requests/s | p50 | p99 | response bytes | failed |".to_owned(),
            "|---|---|---|---|---|---|".to_owned(),
            format!(
                "| dbbind floor | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {} |",
                dbbind_floor.rate,
                dbbind_floor.p50_ms,
                dbbind_floor.p99_ms,
                dbbind_floor.bytes,
                dbbind_floor.failed
            ),
            format!(
                "| Kyverno floor (UPDATE, no rule matches) | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {} |",
                floor.rate, floor.p50_ms, floor.p99_ms, floor.bytes, floor.failed
            ),
            format!(
                "| dbbind bind | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {} |",
                dbbind_bind.rate,
                dbbind_bind.p50_ms,
                dbbind_bind.p99_ms,
                dbbind_bind.bytes,
                dbbind_bind.failed
            ),
            format!(
                "| Kyverno injection | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {} |",
                bind.rate, bind.p50_ms, bind.p99_ms, bind.bytes, bind.failed
            ),
            String::new(),
            "| ratio dbbind / Kyverno | value |".to_owned(),
            "|---|---|".to_owned(),
            format!(
                "| throughput, injection (h2load) | {:.1}× |",
                dbbind_bind.rate / bind.rate
            ),
            format!(
                "| p50 latency, injection (h2load) | {:.2} |",
                dbbind_bind.p50_ms / bind.p50_ms
            ),
            format!(
                "| pod create through the API server, mean | {:.2} ({:.2} ms vs {:.2} ms) |",
                dbbind_pods.mean_ms() / pods_run.mean_ms(),
                dbbind_pods.mean_ms(),
                pods_run.mean_ms()
            ),
            format!(
                "| pod create p99 | {:.2} ({:.2} ms vs {:.2} ms) |",
                dbbind_pods.percentile_ms(0.99) / pods_run.percentile_ms(0.99),
                dbbind_pods.percentile_ms(0.99),
                pods_run.percentile_ms(0.99)
            ),
            format!(
                "| RSS after the same runs | {:.2} ({} vs {}) |",
                dbbind_rss as f64 / after as f64,
                mib(dbbind_rss),
                mib(after)
            ),
            String::new(),
            format!(
                "Kyverno's RSS once ready: {}; after the runs: {}.",
                mib(idle),
                mib(after)
            ),
        ],
        ratio,
    ))
}

/// One `dbbind serve` start: what it cached, its memory once ready, how long ready took.
struct Footprint {
    scope: &'static str,
    in_cluster: usize,
    cached: u64,
    rss_kib: u64,
    ready_after: Duration,
}

impl Footprint {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} s |",
            self.scope,
            self.in_cluster,
            self.cached,
            mib(self.rss_kib),
            self.ready_after.as_secs_f64()
        )
    }
}

/// Starts dbbind with `flags`, waits for ready, lets it settle, and reports its memory.
async fn measure(
    plane: &ControlPlane,
    binary: &Path,
    flags: &[&str],
    scope: &'static str,
    expected: usize,
) -> Result<Footprint> {
    let mut dbbind = Dbbind::start_binary(plane, binary, flags)?;
    let ready_after = dbbind.ready_after;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cached = dbbind.cached_secrets()?;
    let rss_kib = dbbind.rss_kib()?;
    dbbind.terminate()?;
    if cached as usize != expected {
        return Err(Error::new(format!(
            "{scope}: {cached} Secrets cached, {expected} expected"
        )));
    }
    Ok(Footprint {
        scope,
        in_cluster: total_secrets(plane).await?,
        cached,
        rss_kib,
        ready_after,
    })
}

async fn total_secrets(plane: &ControlPlane) -> Result<usize> {
    let client = plane.client().await?;
    let mut count = 0;
    let mut params = kube::api::ListParams::default().limit(5000);
    loop {
        let page = Api::<Secret>::all(client.clone())
            .list_metadata(&params)
            .await?;
        count += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(count),
        }
    }
}

/// The generic fixture Secret (`orders-db-conn`), to be created in any namespace.
fn fixture_secret() -> Result<Secret> {
    let mut secret: Secret = serde_yaml_ng::from_slice(&std::fs::read(
        repo_root().join("tests/fixtures/secrets/generic-external.yaml"),
    )?)?;
    secret.metadata.namespace = None;
    Ok(secret)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn today() -> String {
    let output = Command::new("date").arg("+%Y-%m-%d").output();
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

async fn namespace(client: &kube::Client, name: &str, opted_in: bool) -> Result<()> {
    let mut labels = serde_json::Map::new();
    if opted_in {
        let (key, value) = OPTED_IN.split_once('=').unwrap_or_default();
        labels.insert(key.to_owned(), json!(value));
    }
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

/// `count` Secrets of eight keys and two labels, created 32 at a time.
async fn create_secrets(client: &kube::Client, namespace: &str, count: usize) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for index in 0..count {
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .map_err(|e| Error::new(e.to_string()))?;
        let api = api.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("app-{index}-db"),
                    "labels": {"app.kubernetes.io/name": format!("app-{index}"), "team": format!("team-{}", index % 20)},
                },
                "stringData": {
                    "host": format!("db-{index}.example.internal"), "port": "5432",
                    "dbname": format!("app_{index}"), "username": format!("app_{index}"),
                    "password": format!("pw-{index:016x}-not-a-real-one"), "sslmode": "require",
                    "uri": format!("postgresql://app_{index}@db-{index}.example.internal:5432/app_{index}"),
                    "jdbc-uri": format!("jdbc:postgresql://db-{index}.example.internal:5432/app_{index}"),
                },
            }))?;
            api.create(&PostParams::default(), &secret).await?;
            Ok::<(), Error>(())
        });
        while let Some(done) = tasks.try_join_next() {
            done.map_err(|e| Error::new(e.to_string()))??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Error::new(e.to_string()))??;
    }
    progress(&format!(
        "{count} Secrets in {namespace} in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn mean_ms(&self) -> f64 {
        let total: Duration = self.0.iter().sum();
        total.as_secs_f64() * 1000.0 / self.0.len().max(1) as f64
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Creates `count` pods with these annotations one after another; the latency of each create.
async fn create_pods(
    client: &kube::Client,
    namespace: &str,
    annotations: &[(&str, &str)],
    count: usize,
) -> Result<Latencies> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "bench-", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/orders:1.0"}]},
    }))?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        api.create(&PostParams::default(), &pod).await?;
        latencies.push(sent.elapsed());
    }
    Ok(Latencies(latencies))
}

/// One h2load run: throughput, per-request latencies, body bytes per response, failures.
struct H2load {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes: f64,
    failed: u64,
}

impl H2load {
    fn row(&self, name: &str, floor: &H2load) -> String {
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.0} | {:.2} | {} |",
            self.rate,
            floor.rate / self.rate,
            self.p50_ms,
            self.p99_ms,
            self.bytes,
            self.bytes / floor.bytes,
            self.failed
        )
    }
}

/// The load's bind body must really be answered with a patch, or the comparison is void.
fn answers_with_a_patch(url: &str, body: &str) -> Result<()> {
    let output = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-H",
            "content-type: application/json",
            "--data-binary",
        ])
        .arg(format!("@{}", repo_root().join(body).display()))
        .arg(url)
        .output()?;
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let response = &answer["response"];
    if response["allowed"] == true && response["patch"].is_string() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&output.stdout);
        Err(Error::new(format!(
            "{url} did not answer the bind body with a patch: {}",
            text.chars().take(300).collect::<String>()
        )))
    }
}

fn h2load(url: &str, body: &str) -> Result<H2load> {
    let log = tempfile::NamedTempFile::new()?;
    let output = Command::new("h2load")
        .args([
            "-n",
            "20000",
            "-c",
            "8",
            "-m",
            "1",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(repo_root().join(body))
        .arg(format!("--log-file={}", log.path().display()))
        .arg(url)
        .output()
        .map_err(|e| Error::new(format!("h2load (Debian's nghttp2-client): {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    parse_h2load(&text, &std::fs::read_to_string(log.path())?)
        .ok_or_else(|| Error::new(format!("cannot read h2load's report:\n{text}")))
}

fn parse_h2load(report: &str, log: &str) -> Option<H2load> {
    let after = |line_start: &str| {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(line_start))
    };
    let finished = after("finished in ")?;
    let rate: f64 = finished
        .split(", ")
        .nth(1)?
        .strip_suffix(" req/s")?
        .parse()
        .ok()?;
    // requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout
    let requests: Vec<u64> = after("requests: ")?
        .split(", ")
        .filter_map(|part| part.split(' ').next()?.parse().ok())
        .collect();
    // traffic: 4.30MB (4510000) total, 212.00KB (217088) headers (space savings 94.63%), 3.96MB (4150000) data
    let data: f64 = after("traffic: ")?
        .rsplit('(')
        .next()?
        .split(')')
        .next()?
        .parse()
        .ok()?;
    let mut micros: Vec<u64> = log
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
        .collect();
    micros.sort_unstable();
    let pct = |p: f64| {
        let index = ((micros.len() as f64 - 1.0) * p).round() as usize;
        micros.get(index).map_or(0.0, |m| *m as f64 / 1000.0)
    };
    Some(H2load {
        rate,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        bytes: data / *requests.get(2)? as f64,
        failed: requests.get(4)? + requests.get(5)?,
    })
}
