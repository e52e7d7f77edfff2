//! The Secret cache's scope: only opted-in namespaces' Secrets, from the moment they opt in.

use dbbind_e2e::poll;

use super::*;

/// `dbbind_secret_cache_objects` of each replica.
async fn cached_secrets(client: &kube::Client) -> Result<Vec<u64>> {
    let mut counts = Vec::new();
    for replica in Release::replicas(client).await? {
        counts.push(replica.metric_sum("dbbind_secret_cache_objects ")?);
    }
    Ok(counts)
}

/// The chart runs dbbind with `--namespace-selector=dbbind.io/inject=enabled`: the Secrets of a
/// namespace that has not opted in are never cached, Helm's release Secrets never anywhere
/// (the release's own namespace holds dbbind's); a namespace labelled a moment before its first
/// pod is bound with its Secrets; a namespace that leaves is forgotten. Each replica's cache is
/// read through its own metrics.
pub async fn cache_scope(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-later";
    let client = environment.plane.client().await?;
    kubectl(environment, &["create", "namespace", namespace], "")?;
    let before = cached_secrets(&client).await?;
    if before.len() != 2 || before[0] != before[1] {
        return Err(anyhow!(
            "the two replicas do not cache the same Secrets: {before:?}"
        ));
    }
    let before = before[0];
    let mut items: Vec<Value> = (0..20)
        .map(|index| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": format!("unrelated-{index}")},
                   "stringData": {"token": "x"}})
        })
        .collect();
    items.push(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                      "metadata": {"name": "sh.helm.release.v1.orders.v1"},
                      "data": {"release": "SDRzSUFBQUFBQUFBLw=="}}),
    );
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &list.to_string(),
    )?;
    apply_secret(environment, "external-generic", namespace, None)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let unlabelled = cached_secrets(&client).await?;
    if unlabelled != [before, before] {
        return Err(anyhow!(
            "Secrets of a namespace that did not opt in were cached: {before} -> {unlabelled:?}"
        ));
    }

    // Opt in, and create a pod at once: the admission waits for the namespace's Secrets.
    kubectl(
        environment,
        &["label", "namespace", namespace, "dbbind.io/inject=enabled"],
        "",
    )?;
    let mut first = Value::Null;
    // The API server's own view of the label can lag too; what is checked here is dbbind's
    // side, so a pod the API server did not send to dbbind is tried again under a new name.
    for attempt in 0..3 {
        let name = format!("first-{attempt}");
        let asked = Release::requests_total(&client).await?;
        let manifest = pod(&name, &[("dbbind.io/secret", "orders-db-conn")]);
        kubectl(
            environment,
            &["apply", "-n", namespace, "-f", "-"],
            &manifest,
        )?;
        first = get_pod(environment, namespace, &name)?;
        if Release::requests_total(&client).await? != asked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if first["metadata"]["annotations"]["dbbind.io/status"].is_null() {
        return Err(anyhow!(
            "the first pod of a namespace that just opted in was not bound: {first}"
        ));
    }
    // 20 unrelated Secrets and the database's, not the Helm release.
    let expected = before + 21;
    poll::until(
        "the opted-in namespace's Secrets are cached",
        Duration::from_secs(20),
        || async { Ok(cached_secrets(&client).await? == [expected, expected]) },
    )
    .await?;

    kubectl(
        environment,
        &["label", "namespace", namespace, "dbbind.io/inject-"],
        "",
    )?;
    poll::until(
        "the namespace that left is forgotten",
        Duration::from_secs(20),
        || async { Ok(cached_secrets(&client).await? == [before, before]) },
    )
    .await?;
    let log = Release::logs(&environment.node);
    for line in ["namespace opted in", "namespace left"] {
        if log.matches(line).count() < 2 {
            return Err(anyhow!("the two replicas' logs do not both say {line:?}"));
        }
    }
    Ok(())
}
