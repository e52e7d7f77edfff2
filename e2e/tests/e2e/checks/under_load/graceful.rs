//! Graceful events under load: an upgrade, a replica deleted, an eviction, an uninstall.

use super::*;

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
pub(super) async fn replaced(environment: &Environment, gone: &Replica) -> Result<()> {
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
