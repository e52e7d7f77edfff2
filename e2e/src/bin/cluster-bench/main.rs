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

use anyhow::anyhow;
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

mod footprint;
mod latency;
mod side_by_side;
use footprint::*;
use latency::*;
use side_by_side::*;

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

fn today() -> String {
    let output = Command::new("date").arg("+%Y-%m-%d").output();
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
