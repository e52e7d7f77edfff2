//! What the API server really sends and accepts: captured AdmissionReviews, and every chart mode and webhook-config/ through server-side validation.

use super::*;

/// Records what the API server sends for each kind of request the router tests use, and checks
/// `tests/fixtures/admission/` against it (key structure; values such as uids differ per run).
/// `DBBIND_BLESS=1` writes the captures as the fixtures.
pub async fn captured_reviews(environment: &mut Environment) -> Result<()> {
    use dbbind_e2e::capture::{Capture, key_paths};
    let capture = Capture::start().await?;
    kubectl(environment, &["apply", "-f", "-"], &capture.configuration())?;
    kubectl(environment, &["create", "namespace", "shop"], "")?;
    kubectl(
        environment,
        &["label", "namespace", "shop", "dbbind-e2e/capture=true"],
        "",
    )?;
    let annotations = json!({"dbbind.io/secret": "orders-db-conn"});
    let container = json!({"name": "app", "image": "registry.example.com/orders:1.0", "ports": [{"containerPort": 8080}],
        "env": [{"name": "APP_DB_TARGET", "value": "$(POSTGRES_HOST):$(POSTGRES_PORT)"}]});
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "orders"},
        "spec": {"selector": {"matchLabels": {"app": "orders"}}, "template": {
            "metadata": {"labels": {"app": "orders"}, "annotations": annotations},
            "spec": {"containers": [container.clone()]}}},
    });
    // Bound to a node that does not exist, so no kubelet changes its status while it is
    // updated: the UPDATE review's shape must not depend on how far the node got.
    let bad = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orders-bad", "annotations": {"dbbind.io/secret": "orders-db-conn", "dbbind.io/port": "abc"}},
        "spec": {"nodeName": "dbbind-e2e-nowhere", "containers": [container.clone()]}});
    let dry = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orders-dry", "annotations": annotations},
        "spec": {"containers": [container.clone()]}});
    // One of each workload kind the validating webhook checks, with the same template.
    let template = json!({"metadata": {"labels": {"app": "orders"}, "annotations": annotations},
        "spec": {"containers": [container.clone()], "restartPolicy": "Never"}});
    let selector = json!({"matchLabels": {"app": "orders"}});
    let mut always = template.clone();
    always["spec"]["restartPolicy"] = json!("Always");
    let workloads = [
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "orders-sts"},
            "spec": {"selector": selector, "serviceName": "orders", "template": always}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "orders-ds"},
            "spec": {"selector": selector, "template": always}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "orders-rs"},
            "spec": {"replicas": 0, "selector": selector, "template": always}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "orders-job"},
            "spec": {"suspend": true, "template": template}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "orders-cron"},
            "spec": {"schedule": "0 3 * * *", "suspend": true, "jobTemplate": {"spec": {"template": template}}}}),
    ];

    // The API server picks up a new webhook configuration within a moment: retry until heard.
    let wanted = [
        "create-deployment",
        "create-replicaset-pod",
        "create-pod-dry-run",
        "create-pod-bad-port",
        "update-pod",
        "delete-pod",
        "update-deployment",
        "create-statefulset",
        "update-statefulset",
        "create-daemonset",
        "update-daemonset",
        "create-replicaset",
        "update-replicaset",
        "create-job",
        "update-job",
        "create-cronjob",
        "update-cronjob",
    ];
    let started = std::time::Instant::now();
    let mut applied = false;
    let captured = loop {
        if !applied && started.elapsed() > Duration::from_secs(2) {
            kubectl(
                environment,
                &["apply", "-n", "shop", "-f", "-"],
                &deployment.to_string(),
            )?;
            kubectl(
                environment,
                &["create", "--dry-run=server", "-n", "shop", "-f", "-"],
                &dry.to_string(),
            )?;
            kubectl(
                environment,
                &["apply", "-n", "shop", "-f", "-"],
                &bad.to_string(),
            )?;
            kubectl(
                environment,
                &["label", "pod", "orders-bad", "-n", "shop", "tier=backend"],
                "",
            )?;
            kubectl(
                environment,
                &["delete", "pod", "orders-bad", "-n", "shop", "--wait=false"],
                "",
            )?;
            for workload in &workloads {
                kubectl(
                    environment,
                    &["apply", "-n", "shop", "-f", "-"],
                    &workload.to_string(),
                )?;
            }
            for object in [
                "deployment/orders",
                "statefulset/orders-sts",
                "daemonset/orders-ds",
                "replicaset/orders-rs",
                "job/orders-job",
                "cronjob/orders-cron",
            ] {
                kubectl(
                    environment,
                    &["label", object, "-n", "shop", "tier=backend"],
                    "",
                )?;
            }
            applied = true;
        }
        let classified = classify(&capture.reviews());
        if wanted.iter().all(|name| classified.contains_key(*name)) {
            break classified;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(anyhow!(
                "captured only {:?}",
                classified.keys().collect::<Vec<_>>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    kubectl(
        environment,
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "dbbind-e2e-capture",
        ],
        "",
    )?;

    let dir = dbbind_e2e::tools::repo_root().join("tests/fixtures/admission");
    for name in wanted {
        let review = &captured[name];
        let path = dir.join(format!("{name}.json"));
        if std::env::var_os("DBBIND_BLESS").is_some() {
            let text = serde_json::to_string_pretty(review).map_err(|e| anyhow!("{e}"))?;
            std::fs::write(&path, text + "\n")?;
            continue;
        }
        let committed: Value =
            serde_json::from_str(&std::fs::read_to_string(&path)?).map_err(|e| anyhow!("{e}"))?;
        // Status and managedFields record how far controllers and the node got, which varies
        // from run to run; dbbind reads neither.
        let shape = |review: &Value| {
            let mut paths = key_paths(review);
            paths.retain(|path| {
                !["request.object.status", "request.oldObject.status"]
                    .iter()
                    .any(|prefix| path.starts_with(prefix))
                    && !path.contains(".managedFields")
            });
            paths
        };
        let (real, ours) = (shape(review), shape(&committed));
        if real != ours {
            let missing: Vec<_> = real.difference(&ours).collect();
            let extra: Vec<_> = ours.difference(&real).collect();
            return Err(anyhow!(
                "{}: the API server's review differs in shape (rerun with DBBIND_BLESS=1 to refresh); missing {missing:?}, extra {extra:?}",
                path.display()
            ));
        }
    }
    Ok(())
}

/// The captured reviews by the fixture each one stands for.
fn classify(reviews: &[Value]) -> std::collections::BTreeMap<&'static str, Value> {
    let mut found = std::collections::BTreeMap::new();
    for review in reviews {
        let request = &review["request"];
        let kind = request["kind"]["kind"].as_str().unwrap_or_default();
        let operation = request["operation"].as_str().unwrap_or_default();
        let name = request["name"].as_str().unwrap_or_default();
        let owner = request["object"]["metadata"]["ownerReferences"][0]["kind"].as_str();
        let label = match (kind, operation) {
            ("Deployment", "CREATE") => "create-deployment",
            ("Deployment", "UPDATE") => "update-deployment",
            ("StatefulSet", "CREATE") => "create-statefulset",
            ("StatefulSet", "UPDATE") => "update-statefulset",
            ("DaemonSet", "CREATE") => "create-daemonset",
            ("DaemonSet", "UPDATE") => "update-daemonset",
            ("ReplicaSet", "CREATE") if name == "orders-rs" => "create-replicaset",
            ("ReplicaSet", "UPDATE") if name == "orders-rs" => "update-replicaset",
            ("Job", "CREATE") => "create-job",
            ("Job", "UPDATE") => "update-job",
            ("CronJob", "CREATE") => "create-cronjob",
            ("CronJob", "UPDATE") => "update-cronjob",
            ("Pod", "CREATE") if request["dryRun"] == true => "create-pod-dry-run",
            ("Pod", "CREATE")
                if request["object"]["metadata"]["generateName"].is_string()
                    && owner == Some("ReplicaSet") =>
            {
                "create-replicaset-pod"
            }
            ("Pod", "CREATE") if name == "orders-bad" => "create-pod-bad-port",
            ("Pod", "UPDATE") => "update-pod",
            ("Pod", "DELETE") => "delete-pod",
            _ => continue,
        };
        found.entry(label).or_insert_with(|| review.clone());
    }
    found
}

/// The other certificate modes and webhook-config/ pass the API server's validation (a
/// server-side dry run creates nothing). cert-manager's objects need its CRDs, which this
/// cluster does not have: that mode is checked for everything else.
pub async fn server_side_validation(environment: &mut Environment) -> Result<()> {
    use base64::Engine;
    kubectl(environment, &["create", "namespace", "e2e-validate"], "")?;
    let ca_bundle = format!(
        "certificates.secret.caBundle={}",
        base64::engine::general_purpose::STANDARD.encode(&environment.servers.ca.cert_pem)
    );
    for sets in [
        vec![
            "certificates.mode=secret",
            "certificates.secret.name=tls",
            ca_bundle.as_str(),
        ],
        vec![
            "watchNamespaces={e2e-checks}",
            "networkPolicy.enabled=true",
            "profiles[0].name=acme",
            "profiles[0].fields.host.keys={server}",
        ],
        vec!["certificates.mode=cert-manager"],
    ] {
        let mut args = vec![
            "template",
            "validated",
            "charts/dbbind",
            "--namespace",
            "e2e-validate",
            "--kube-version",
            "1.36.3",
        ];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let rendered = helm(environment, &args)?;
        // cert-manager's own objects need its CRDs, which this cluster lacks. The test hook's
        // Pod names a ServiceAccount that a dry run does not create (the hook runs for real
        // in the suite, by `helm test`).
        let objects: Vec<Value> = dbbind_e2e::yaml_documents(&rendered)?
            .into_iter()
            .filter(|o| {
                !o["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("cert-manager.io")
                    && o["kind"] != "Pod"
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        kubectl(
            environment,
            &["apply", "--dry-run=server", "-f", "-"],
            &list.to_string(),
        )
        .map_err(|e| anyhow!("{sets:?}: {e}"))?;
    }
    let _ = kubectl(environment, &["create", "namespace", "dbbind"], "");
    let dir = dbbind_e2e::tools::repo_root().join("webhook-config");
    kubectl(
        environment,
        &[
            "apply",
            "--dry-run=server",
            "-k",
            &dir.display().to_string(),
        ],
        "",
    )?;
    Ok(())
}
