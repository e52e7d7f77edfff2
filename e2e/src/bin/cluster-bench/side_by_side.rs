//! dbbind and Kyverno side by side on the same control plane, the same pods.

use super::*;

/// Kyverno with the equivalent ClusterPolicy: the same h2load runs against its mutate
/// endpoint, the same pod creates through the API server (dbbind's webhooks removed first, so
/// Kyverno alone acts), its memory; then the ratios.
#[allow(clippy::too_many_arguments)]
pub(super) async fn side_by_side(
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
        return Err(anyhow!(
            "Kyverno admitted the pods without the variables; its log:\n{}",
            kyverno.log_tail(20)
        ));
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
