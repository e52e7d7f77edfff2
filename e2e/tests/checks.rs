//! Behaviour beyond the scenarios, against the same live environment.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dbbind_e2e::release::Release;
use dbbind_e2e::scenarios::{self, Environment};
use dbbind_e2e::webhook::Dbbind;
use dbbind_e2e::workload;
use dbbind_e2e::{Error, Result};
use serde_json::{Value, json};

mod installed;
mod node;
mod rotation;
mod under_load;

type Check = for<'a> fn(&'a mut Environment) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// In order: the chart's install first, its uninstall last but one; the last starts dbbind as a
/// process beside the cluster to watch it stop.
pub const ALL: &[(&str, Check)] = &[
    (
        "the_chart_serves_from_its_own_pods_behind_its_service",
        |e| Box::pin(installed::serves_from_its_own_pods(e)),
    ),
    ("an_unlabelled_namespace_is_untouched", |e| {
        Box::pin(unlabelled_namespace(e))
    }),
    (
        "only_opted_in_namespaces_secrets_are_cached_from_the_moment_they_opt_in",
        |e| Box::pin(cache_scope(e)),
    ),
    ("an_opted_out_pod_is_untouched", |e| {
        Box::pin(opted_out_pod(e))
    }),
    ("a_pod_without_annotations_never_reaches_dbbind", |e| {
        Box::pin(plain_pod(e))
    }),
    ("kubectl_shows_warnings_and_denials", |e| {
        Box::pin(kubectl_messages(e))
    }),
    ("kubectl_apply_checks_workload_templates", |e| {
        Box::pin(workload_templates(e))
    }),
    (
        "a_controller_made_pods_warning_is_an_event_on_its_owner",
        |e| Box::pin(owner_events(e)),
    ),
    ("a_server_side_dry_run_is_patched_and_leaves_nothing", |e| {
        Box::pin(dry_run(e))
    }),
    (
        "a_secret_created_after_its_deployment_starts_the_pod_once_whole",
        |e| Box::pin(node::secret_later(e)),
    ),
    (
        "every_driver_connects_with_a_plain_and_a_reserved_character_password",
        |e| Box::pin(node::every_driver(e)),
    ),
    (
        "tls_to_the_database_verifies_the_server_and_logs_in_by_certificate",
        |e| Box::pin(node::tls_to_the_database(e)),
    ),
    ("an_endpoint_role_reaches_the_roles_service", |e| {
        Box::pin(node::endpoint_role(e))
    }),
    (
        "a_non_root_app_reads_its_files_with_and_without_fs_group",
        |e| Box::pin(node::file_modes(e)),
    ),
    (
        "a_rotated_password_rolls_the_opted_in_deployment_once_and_nothing_else",
        |e| Box::pin(rotation::restart_on_rotation(e)),
    ),
    (
        "admission_review_fixtures_have_the_api_servers_shape",
        |e| Box::pin(captured_reviews(e)),
    ),
    (
        "every_chart_mode_and_webhook_config_pass_server_side_validation",
        |e| Box::pin(server_side_validation(e)),
    ),
    (
        "the_charts_rotation_rbac_grants_the_controllers_calls_and_no_more",
        |e| Box::pin(rotation_rbac(e)),
    ),
    (
        "an_upgrade_under_load_fails_no_create_and_keeps_the_certificates",
        |e| Box::pin(under_load::upgrade(e)),
    ),
    ("a_deleted_replica_under_load_fails_no_create", |e| {
        Box::pin(under_load::deleted_replica(e))
    }),
    ("a_killed_process_under_load_fails_no_create", |e| {
        Box::pin(under_load::killed_process(e))
    }),
    ("an_eviction_under_load_fails_no_create", |e| {
        Box::pin(under_load::eviction(e))
    }),
    ("idle_connections_under_load_fail_no_create", |e| {
        Box::pin(under_load::idle_flood(e))
    }),
    ("an_uninstall_under_load_fails_no_create", |e| {
        Box::pin(under_load::uninstall(e))
    }),
    ("sigterm_drains_then_opted_in_pods_fail_closed", |e| {
        Box::pin(stopped(e))
    }),
];

fn pod(name: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
    })
    .to_string()
}

fn deployment(name: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]}}},
    })
    .to_string()
}

/// The Secret of an example, applied alone (the example's Deployment would make pods of its own).
fn apply_secret(
    environment: &Environment,
    example: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<()> {
    let mut secret = scenarios::example_secret_object(example)?;
    if let Some(name) = name {
        secret["metadata"]["name"] = json!(name);
    }
    kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &secret.to_string(),
    )
    .map(|_| ())
}

fn kubectl(
    environment: &Environment,
    args: &[&str],
    stdin: &str,
) -> Result<dbbind_e2e::cluster::KubectlOutput> {
    let output = environment.plane.kubectl_run(args, Some(stdin))?;
    if output.success {
        Ok(output)
    } else {
        Err(Error::new(format!("kubectl {args:?}: {}", output.stderr)))
    }
}

fn get_pod(environment: &Environment, namespace: &str, name: &str) -> Result<Value> {
    let output = kubectl(
        environment,
        &["get", "pod", name, "-n", namespace, "-o", "json"],
        "",
    )?;
    serde_json::from_str(&output.stdout).map_err(|e| Error::new(e.to_string()))
}

/// The pod as sent, as far as dbbind could have changed it: no annotation dbbind writes, no
/// variable in any container or init container (the test pods define none), no dbbind volume
/// or mount.
fn untouched(pod: &Value) -> Result<()> {
    let annotations = pod["metadata"]["annotations"].as_object();
    let written = annotations
        .into_iter()
        .flatten()
        .any(|(key, _)| dbbind_core::keys::is_written_by_dbbind(key));
    let is_dbbind = |item: &Value| {
        item["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("dbbind"))
    };
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten());
    let mut changed = written
        || pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(is_dbbind);
    for container in containers {
        let mounts = container["volumeMounts"].as_array().into_iter().flatten();
        changed |= container.get("env").is_some()
            || container.get("envFrom").is_some()
            || mounts.into_iter().any(is_dbbind);
    }
    if changed {
        return Err(Error::new(format!("the pod was changed: {pod}")));
    }
    Ok(())
}

async fn unlabelled_namespace(environment: &mut Environment) -> Result<()> {
    kubectl(environment, &["create", "namespace", "e2e-unlabelled"], "")?;
    apply_secret(environment, "external-generic", "e2e-unlabelled", None)?;
    let client = environment.plane.client().await?;
    let before = Release::requests_total(&client).await?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-unlabelled", "-f", "-"],
        &pod("asks", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    untouched(&get_pod(environment, "e2e-unlabelled", "asks")?)?;
    if Release::requests_total(&client).await? != before {
        return Err(Error::new(
            "the namespaceSelector let an unlabelled namespace's pod through",
        ));
    }
    Ok(())
}

/// Polls `condition` for up to 20 s.
async fn eventually<F: Future<Output = Result<bool>>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) -> Result<()> {
    for _ in 0..200 {
        if condition().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::new(format!("not reached within 20 s: {what}")))
}

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
async fn cache_scope(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-later";
    let client = environment.plane.client().await?;
    kubectl(environment, &["create", "namespace", namespace], "")?;
    let before = cached_secrets(&client).await?;
    if before.len() != 2 || before[0] != before[1] {
        return Err(Error::new(format!(
            "the two replicas do not cache the same Secrets: {before:?}"
        )));
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
        return Err(Error::new(format!(
            "Secrets of a namespace that did not opt in were cached: {before} -> {unlabelled:?}"
        )));
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
        return Err(Error::new(format!(
            "the first pod of a namespace that just opted in was not bound: {first}"
        )));
    }
    // 20 unrelated Secrets and the database's, not the Helm release.
    let expected = before + 21;
    eventually("the opted-in namespace's Secrets are cached", || async {
        Ok(cached_secrets(&client).await? == [expected, expected])
    })
    .await?;

    kubectl(
        environment,
        &["label", "namespace", namespace, "dbbind.io/inject-"],
        "",
    )?;
    eventually("the namespace that left is forgotten", || async {
        Ok(cached_secrets(&client).await? == [before, before])
    })
    .await?;
    let log = Release::logs(&environment.node);
    for line in ["namespace opted in", "namespace left"] {
        if log.matches(line).count() < 2 {
            return Err(Error::new(format!(
                "the two replicas' logs do not both say {line:?}"
            )));
        }
    }
    Ok(())
}

async fn opted_out_pod(environment: &mut Environment) -> Result<()> {
    scenarios::opted_in_namespace(&environment.plane, "e2e-checks")?;
    apply_secret(environment, "external-generic", "e2e-checks", None)?;
    // The pod carries dbbind.io/ annotations, so matchConditions send it to dbbind: untouched
    // must be dbbind's answer, not the webhook being skipped.
    let client = environment.plane.client().await?;
    let before = Release::requests_total(&client).await?;
    let manifest = pod(
        "opted-out",
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/inject", "false"),
        ],
    );
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &manifest,
    )?;
    untouched(&get_pod(environment, "e2e-checks", "opted-out")?)?;
    let after = Release::requests_total(&client).await?;
    if after <= before {
        return Err(Error::new(format!(
            "dbbind's request counter stayed at {before}: the opted-out pod never reached dbbind"
        )));
    }
    Ok(())
}

async fn plain_pod(environment: &mut Environment) -> Result<()> {
    let client = environment.plane.client().await?;
    let before = Release::requests_total(&client).await?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("plain", &[("team", "shop")]),
    )?;
    untouched(&get_pod(environment, "e2e-checks", "plain")?)?;
    let after = Release::requests_total(&client).await?;
    if after != before {
        return Err(Error::new(format!(
            "dbbind's request counter moved from {before} to {after}: matchConditions did not filter"
        )));
    }
    Ok(())
}

async fn kubectl_messages(environment: &mut Environment) -> Result<()> {
    let applied = kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("warned", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    let warning = "Warning: dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out";
    if !applied.stderr.contains(warning) {
        return Err(Error::new(format!(
            "kubectl did not show the warning; stderr: {}",
            applied.stderr
        )));
    }
    let denied = environment.plane.kubectl_run(
        &["apply", "-n", "e2e-checks", "-f", "-"],
        Some(&pod(
            "denied",
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/port", "abc"),
            ],
        )),
    )?;
    let message = "admission webhook \"bind.dbbind.io\" denied the request: dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)";
    if denied.success || !denied.stderr.contains(message) {
        return Err(Error::new(format!(
            "expected the denial; stderr: {}",
            denied.stderr
        )));
    }
    Ok(())
}

/// What a user sees at `kubectl apply` of a Deployment: its template's mistakes deny it (and
/// nothing is created), a Secret that is not there yet is a warning.
async fn workload_templates(environment: &mut Environment) -> Result<()> {
    let typo = deployment(
        "orders2",
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/profile", "cnpgg"),
        ],
    );
    let message = "admission webhook \"workloads.dbbind.io\" denied the request: dbbind: annotation \"dbbind.io/profile\": unknown profile \"cnpgg\"";
    for dry_run in [true, false] {
        let mut args = vec!["apply", "-n", "e2e-checks", "-f", "-"];
        if dry_run {
            args.push("--dry-run=server");
        }
        let denied = environment.plane.kubectl_run(&args, Some(&typo))?;
        if denied.success || !denied.stderr.contains(message) {
            return Err(Error::new(format!(
                "expected the denial (dry run: {dry_run}); stderr: {}",
                denied.stderr
            )));
        }
    }
    let left = environment
        .plane
        .kubectl_run(&["get", "deployment", "orders2", "-n", "e2e-checks"], None)?;
    if left.success || !left.stderr.contains("NotFound") {
        return Err(Error::new("the denied Deployment was created"));
    }

    let warned = kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &deployment(
            "orders-later",
            &[
                ("dbbind.io/secret", "applied-later"),
                ("dbbind.io/profile", "generic"),
            ],
        ),
    )?;
    let warning = "Warning: dbbind: Secret \"applied-later\" not found in namespace \"e2e-checks\"; the pod refers to it through profile \"generic\" and starts once it exists";
    if !warned.stderr.contains(warning) || !warned.stdout.contains("created") {
        return Err(Error::new(format!(
            "expected the Deployment created with the warning; stdout: {}; stderr: {}",
            warned.stdout, warned.stderr
        )));
    }
    // The template is stored as applied: the check never patches.
    let stored = kubectl(
        environment,
        &[
            "get",
            "deployment",
            "orders-later",
            "-n",
            "e2e-checks",
            "-o",
            "json",
        ],
        "",
    )?;
    let stored: Value =
        serde_json::from_str(&stored.stdout).map_err(|e| Error::new(e.to_string()))?;
    let template = &stored["spec"]["template"];
    if template["metadata"]["annotations"]
        .get("dbbind.io/status")
        .is_some()
        || template["spec"]["containers"][0].get("env").is_some()
    {
        return Err(Error::new(format!("the template was changed: {template}")));
    }
    kubectl(
        environment,
        &["delete", "deployment", "orders-later", "-n", "e2e-checks"],
        "",
    )?;
    Ok(())
}

/// The warning a ReplicaSet's pod got shows on the ReplicaSet (`kubectl describe rs`); a dry
/// run records nothing.
async fn owner_events(environment: &mut Environment) -> Result<()> {
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &deployment("evented", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    let client = environment.plane.client().await?;
    let made = workload::wait_for_pod(&client, "e2e-checks", "evented").await?;
    let owner = made
        .metadata
        .owner_references
        .as_ref()
        .and_then(|owners| owners.first())
        .ok_or_else(|| Error::new("the pod has no owner"))?;
    let warning = "dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out";
    let started = std::time::Instant::now();
    loop {
        let described = kubectl(
            environment,
            &["describe", "replicaset", &owner.name, "-n", "e2e-checks"],
            "",
        )?;
        if described.stdout.contains("BindingWarning") && described.stdout.contains(warning) {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(Error::new(format!(
                "no BindingWarning on ReplicaSet {}:\n{}",
                owner.name, described.stdout
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A dry run of a pod the same ReplicaSet owns, with a warning of its own: no Event.
    let mut dry: Value = serde_json::from_str(&pod(
        "dry-evented",
        &[
            ("dbbind.io/secret", "dry-only"),
            ("dbbind.io/profile", "generic"),
        ],
    ))
    .map_err(|e| Error::new(e.to_string()))?;
    dry["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner.name, "uid": owner.uid,
    }]);
    let created = kubectl(
        environment,
        &["create", "--dry-run=server", "-n", "e2e-checks", "-f", "-"],
        &dry.to_string(),
    )?;
    if !created.stderr.contains("\"dry-only\" not found") {
        return Err(Error::new(format!(
            "the dry run got no warning: {}",
            created.stderr
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = kubectl(
        environment,
        &["get", "events", "-n", "e2e-checks", "-o", "json"],
        "",
    )?;
    if events.stdout.contains("dry-only") {
        return Err(Error::new("a dry run recorded an Event"));
    }
    kubectl(
        environment,
        &["delete", "deployment", "evented", "-n", "e2e-checks"],
        "",
    )?;
    Ok(())
}

async fn dry_run(environment: &mut Environment) -> Result<()> {
    let created = kubectl(
        environment,
        &[
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-n",
            "e2e-checks",
            "-f",
            "-",
        ],
        &pod("dry", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    let pod: Value =
        serde_json::from_str(&created.stdout).map_err(|e| Error::new(e.to_string()))?;
    if pod["spec"]["containers"][0]["env"][0]["name"] != "POSTGRES_HOST" {
        return Err(Error::new(format!("the dry run was not patched: {pod}")));
    }
    let left = environment
        .plane
        .kubectl_run(&["get", "pod", "dry", "-n", "e2e-checks"], None)?;
    if left.success || !left.stderr.contains("NotFound") {
        return Err(Error::new("the dry run left a pod behind"));
    }
    Ok(())
}

/// With the chart uninstalled, dbbind as a process beside the cluster (registered by URL through
/// `webhook-config/`'s configurations), so its exit status and whole log can be read: after
/// SIGTERM it drains and exits 0; then opted-in pods fail closed, other namespaces and plain
/// pods are unaffected, and Deployments still apply (the workload check fails open).
async fn stopped(environment: &mut Environment) -> Result<()> {
    let mut dbbind = Dbbind::start(&environment.plane)?;
    dbbind.register(&environment.plane)?;
    // The API server sees the new registration within a moment: a pod bound through it.
    let started = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("through-process-{attempt}");
        kubectl(
            environment,
            &["apply", "-n", "e2e-checks", "-f", "-"],
            &pod(&name, &[("dbbind.io/secret", "orders-db-conn")]),
        )?;
        let created = get_pod(environment, "e2e-checks", &name)?;
        if created["metadata"]["annotations"]["dbbind.io/status"] == "injected" {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(Error::new("the process's registration never bound a pod"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = dbbind.terminate()?;
    if !status.success() {
        return Err(Error::new(format!(
            "dbbind exited with {status} after SIGTERM:\n{}",
            dbbind.log()
        )));
    }
    let log = dbbind.log();
    for line in [
        "SIGTERM received",
        "shutting down: readiness is false, draining",
        "in-flight requests finished",
    ] {
        if !log.contains(line) {
            return Err(Error::new(format!("dbbind's log lacks {line:?}:\n{log}")));
        }
    }
    let refused = environment.plane.kubectl_run(
        &["apply", "-n", "e2e-checks", "-f", "-"],
        Some(&pod(
            "while-down",
            &[("dbbind.io/secret", "orders-db-conn")],
        )),
    )?;
    if refused.success
        || !refused
            .stderr
            .contains("failed calling webhook \"bind.dbbind.io\"")
    {
        return Err(Error::new(format!(
            "expected the webhook failure; stderr: {}",
            refused.stderr
        )));
    }
    kubectl(
        environment,
        &["apply", "-n", "e2e-unlabelled", "-f", "-"],
        &pod("elsewhere", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("plain-while-down", &[]),
    )?;
    // The workload check fails open: applying a Deployment still works.
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &deployment(
            "applied-while-down",
            &[("dbbind.io/secret", "orders-db-conn")],
        ),
    )?;
    Ok(())
}

/// Records what the API server sends for each kind of request the router tests use, and checks
/// `tests/fixtures/admission/` against it (key structure; values such as uids differ per run).
/// `DBBIND_BLESS=1` writes the captures as the fixtures.
async fn captured_reviews(environment: &mut Environment) -> Result<()> {
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
            return Err(Error::new(format!(
                "captured only {:?}",
                classified.keys().collect::<Vec<_>>()
            )));
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
            let text =
                serde_json::to_string_pretty(review).map_err(|e| Error::new(e.to_string()))?;
            std::fs::write(&path, text + "\n")?;
            continue;
        }
        let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .map_err(|e| Error::new(e.to_string()))?;
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
            return Err(Error::new(format!(
                "{}: the API server's review differs in shape (rerun with DBBIND_BLESS=1 to refresh); missing {missing:?}, extra {extra:?}",
                path.display()
            )));
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

fn helm(environment: &Environment, args: &[&str]) -> Result<String> {
    let bin = dbbind_e2e::tools::k8s_bin_dir()?;
    let output = std::process::Command::new(bin.join("helm"))
        .arg(format!(
            "--kubeconfig={}",
            environment.plane.kubeconfig.display()
        ))
        .args(args)
        .current_dir(dbbind_e2e::tools::repo_root())
        .output()?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::new(format!(
            "helm {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// The other certificate modes and webhook-config/ pass the API server's validation (a
/// server-side dry run creates nothing). cert-manager's objects need its CRDs, which this
/// cluster does not have: that mode is checked for everything else.
/// The RBAC `rotation.enabled` adds, applied to the API server and asked with `kubectl auth
/// can-i --as` the chart's service account: every call the rotation controller makes is
/// allowed (list pods, get ReplicaSets, patch the three workload kinds, create Events, take and
/// renew its Lease), and neighbouring ones are not (delete or update workloads, another Lease,
/// a Lease elsewhere, writing Secrets).
async fn rotation_rbac(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-rbac";
    kubectl(environment, &["create", "namespace", namespace], "")?;
    let rendered = helm(
        environment,
        &[
            "template",
            "rbac",
            "charts/dbbind",
            "--namespace",
            namespace,
            "--kube-version",
            "1.36.3",
            "--set",
            "rotation.enabled=true",
        ],
    )?;
    for object in dbbind_e2e::yaml_documents(&rendered)? {
        let kind = object["kind"].as_str().unwrap_or_default();
        if [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ]
        .contains(&kind)
        {
            kubectl(
                environment,
                &["apply", "-n", namespace, "-f", "-"],
                &object.to_string(),
            )?;
        }
    }
    let account = format!("--as=system:serviceaccount:{namespace}:rbac-dbbind");
    let workloads = "e2e-rotation";
    let asks: [(&str, &str, &str, bool); 14] = [
        ("list", "pods", workloads, true),
        ("get", "replicasets.apps", workloads, true),
        ("patch", "deployments.apps", workloads, true),
        ("patch", "statefulsets.apps", workloads, true),
        ("patch", "daemonsets.apps", workloads, true),
        ("create", "events.events.k8s.io", workloads, true),
        ("create", "leases.coordination.k8s.io", namespace, true),
        (
            "get",
            "leases.coordination.k8s.io/rbac-dbbind-rotation",
            namespace,
            true,
        ),
        (
            "patch",
            "leases.coordination.k8s.io/rbac-dbbind-rotation",
            namespace,
            true,
        ),
        (
            "patch",
            "leases.coordination.k8s.io/another-lease",
            namespace,
            false,
        ),
        ("create", "leases.coordination.k8s.io", workloads, false),
        ("delete", "pods", workloads, false),
        ("update", "deployments.apps", workloads, false),
        ("patch", "secrets", workloads, false),
    ];
    let mut wrong = Vec::new();
    for (verb, resource, in_namespace, expected) in asks {
        let answer = environment.plane.kubectl_run(
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                in_namespace,
                &account,
            ],
            None,
        )?;
        let allowed = answer.stdout.trim() == "yes";
        if allowed != expected {
            wrong.push(format!(
                "{verb} {resource} in {in_namespace}: {} ({})",
                answer.stdout.trim(),
                answer.stderr.trim()
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "the chart's rotation RBAC is wrong: {wrong:?}"
        )))
    }
}

async fn server_side_validation(environment: &mut Environment) -> Result<()> {
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
        .map_err(|e| Error::new(format!("{sets:?}: {e}")))?;
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
