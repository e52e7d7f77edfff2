//! Behaviour beyond the scenarios, against the same live environment.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dbbind_e2e::scenarios::{self, Environment};
use dbbind_e2e::{Error, Result, kubelet};
use serde_json::{Value, json};

type Check = for<'a> fn(&'a mut Environment) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// In order; the last one stops dbbind.
pub const ALL: &[(&str, Check)] = &[
    ("an_unlabelled_namespace_is_untouched", |e| {
        Box::pin(unlabelled_namespace(e))
    }),
    ("an_opted_out_pod_is_untouched", |e| {
        Box::pin(opted_out_pod(e))
    }),
    ("a_pod_without_annotations_never_reaches_dbbind", |e| {
        Box::pin(plain_pod(e))
    }),
    ("kubectl_shows_warnings_and_denials", |e| {
        Box::pin(kubectl_messages(e))
    }),
    ("a_server_side_dry_run_is_patched_and_leaves_nothing", |e| {
        Box::pin(dry_run(e))
    }),
    ("a_secret_created_after_its_deployment_binds", |e| {
        Box::pin(secret_later(e))
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

/// The Secret of an example, applied alone (the example's Deployment would make pods of its own).
fn apply_secret(
    environment: &Environment,
    example: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<()> {
    let text = std::fs::read_to_string(scenarios::example_path(example))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value: Value =
            serde::Deserialize::deserialize(document).map_err(|e| Error::new(e.to_string()))?;
        if value["kind"] == "Secret" {
            if let Some(name) = name {
                value["metadata"]["name"] = json!(name);
            }
            return kubectl(
                environment,
                &["apply", "-n", namespace, "-f", "-"],
                &value.to_string(),
            )
            .map(|_| ());
        }
    }
    Err(Error::new("no Secret"))
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

fn untouched(pod: &Value) -> Result<()> {
    if pod["metadata"]["annotations"]
        .get("dbbind.io/status")
        .is_some()
        || pod["spec"]["containers"][0].get("env").is_some()
    {
        return Err(Error::new(format!("the pod was changed: {pod}")));
    }
    Ok(())
}

async fn unlabelled_namespace(environment: &mut Environment) -> Result<()> {
    kubectl(environment, &["create", "namespace", "e2e-unlabelled"], "")?;
    apply_secret(environment, "external-generic", "e2e-unlabelled", None)?;
    let before = environment.dbbind.requests_total()?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-unlabelled", "-f", "-"],
        &pod("asks", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    untouched(&get_pod(environment, "e2e-unlabelled", "asks")?)?;
    if environment.dbbind.requests_total()? != before {
        return Err(Error::new(
            "the namespaceSelector let an unlabelled namespace's pod through",
        ));
    }
    Ok(())
}

async fn opted_out_pod(environment: &mut Environment) -> Result<()> {
    scenarios::opted_in_namespace(&environment.plane, "e2e-checks")?;
    apply_secret(environment, "external-generic", "e2e-checks", None)?;
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
    untouched(&get_pod(environment, "e2e-checks", "opted-out")?)
}

async fn plain_pod(environment: &mut Environment) -> Result<()> {
    let before = environment.dbbind.requests_total()?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("plain", &[("team", "shop")]),
    )?;
    untouched(&get_pod(environment, "e2e-checks", "plain")?)?;
    let after = environment.dbbind.requests_total()?;
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

async fn secret_later(environment: &mut Environment) -> Result<()> {
    scenarios::opted_in_namespace(&environment.plane, "e2e-late")?;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "late"},
        "spec": {
            "selector": {"matchLabels": {"app": "late"}},
            "template": {
                "metadata": {"labels": {"app": "late"}, "annotations": {"dbbind.io/secret": "late-db", "dbbind.io/profile": "generic"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
            },
        },
    });
    kubectl(
        environment,
        &["apply", "-n", "e2e-late", "-f", "-"],
        &deployment.to_string(),
    )?;
    let client = environment.plane.client().await?;
    let pod = scenarios::wait_for_pod(&client, "e2e-late", "late").await?;
    // Admitted before the Secret exists: the kubelet could not start it yet.
    if kubelet::resolve(&client, &pod, "app").await.is_ok() {
        return Err(Error::new(
            "the pod's references resolved before the Secret existed",
        ));
    }
    apply_secret(environment, "external-generic", "e2e-late", Some("late-db"))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resolved = kubelet::resolve(&client, &pod, "app").await?;
    let params = scenarios::from_env(&resolved, "")?
        .ok_or_else(|| Error::new("no connection in the env"))?;
    let (user, database) = scenarios::connect(&environment.servers.shared, &params).await?;
    if (user.as_str(), database.as_str()) != ("orders_app", "orders") {
        return Err(Error::new(format!("connected as {user} to {database}")));
    }
    Ok(())
}

async fn stopped(environment: &mut Environment) -> Result<()> {
    let status = environment.dbbind.terminate()?;
    if !status.success() {
        return Err(Error::new(format!(
            "dbbind exited with {status} after SIGTERM:\n{}",
            environment.dbbind.log()
        )));
    }
    let log = environment.dbbind.log();
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
    Ok(())
}
