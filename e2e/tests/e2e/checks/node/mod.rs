//! Checks on the real node: what the kubelet does with what dbbind injected, seen from inside
//! the container and from PostgreSQL.

use anyhow::anyhow;
use std::time::Duration;

use dbbind_e2e::Result;
use dbbind_e2e::app::{self, EVERY_DRIVER, EVERY_SET, Way};
use dbbind_e2e::scenarios::{self, Environment, SHARED_ADDRESS};
use dbbind_e2e::workload::{self, Expected};
use serde_json::{Value, json};

use super::{apply_secret, kubectl};

mod database;
mod drivers;
pub use database::*;
pub use drivers::*;

/// The host name in external-generic's Secret, which the checks' pods resolve to the shared
/// server.
pub const GENERIC_HOST: &str = "pg-prod-01.db.internal.example.com";

/// The host names the checks' pods resolve to the shared server: external-generic's, and
/// CloudNativePG's read-only Service, but not its primary's (`pg-main-rw`), so a pod that
/// used the Secret's own host or URI instead of the role's would not connect.
const CHECK_HOSTS: &[&str] = &[GENERIC_HOST, "pg-main-ro"];

/// The ways of the default binding, for the checks' app containers.
fn ways(kinds: &[&'static str]) -> Vec<Way> {
    kinds
        .iter()
        .map(|kind| Way {
            binding: "db".to_owned(),
            prefix: String::new(),
            kind,
        })
        .collect()
}

/// Applies an app Deployment (see `workload::app_deployment`) reading `ways` of the default
/// binding, and returns its pod's name and the stderr of `kubectl apply` (its warnings).
pub async fn apply_app(
    environment: &Environment,
    namespace: &str,
    name: &str,
    annotations: Value,
    kinds: &[&'static str],
    pod_spec: Value,
) -> Result<(String, String)> {
    let deployment = workload::app_deployment(
        name,
        &annotations,
        &ways(kinds),
        SHARED_ADDRESS,
        CHECK_HOSTS,
        pod_spec,
    );
    apply_and_wait_for_pod(environment, namespace, name, &deployment).await
}

/// `kubectl apply` of `manifest` in `namespace`; the name of the first pod labelled
/// `app=<label>`, and what `kubectl apply` said on stderr (its warnings).
pub async fn apply_and_wait_for_pod(
    environment: &Environment,
    namespace: &str,
    label: &str,
    manifest: &Value,
) -> Result<(String, String)> {
    let applied = kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &manifest.to_string(),
    )?;
    let client = environment.plane.client().await?;
    let pod = workload::wait_for_pod(&client, namespace, label).await?;
    Ok((pod.metadata.name.unwrap_or_default(), applied.stderr))
}

/// Waits for the pod to run and PostgreSQL to show each of its ways connected as `user` on
/// `database`; returns the app container's log.
pub async fn connected(
    environment: &Environment,
    namespace: &str,
    app: &str,
    pod: &str,
    kinds: &[&'static str],
    login: (&str, &str),
) -> Result<String> {
    Ok(seen(environment, namespace, app, pod, kinds, login)
        .await?
        .0)
}

/// A Deployment applied before its Secret exists: the kubelet holds the container
/// (`CreateContainerConfigError`) while the Secret is missing, and while a key it needs is
/// missing; once the Secret is whole, the pod starts and connects.
pub async fn secret_later(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-late";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    let kinds = ["postgres", "libpq", "url"];
    let annotations = json!({"dbbind.io/secret": "late-db", "dbbind.io/profile": "generic",
        "dbbind.io/env": "postgres,libpq,database-url"});
    let (pod, warnings) = apply_app(
        environment,
        namespace,
        "late",
        annotations,
        &kinds,
        json!({}),
    )
    .await?;
    if !warnings.contains("Secret \"late-db\" not found") {
        return Err(anyhow!(
            "kubectl apply did not warn of the missing Secret: {warnings}"
        ));
    }
    let client = environment.plane.client().await?;
    let config_error = "CreateContainerConfigError";
    let message = workload::wait_waiting(&client, namespace, &pod, "app", config_error).await?;
    if !message.contains("secret \"late-db\" not found") {
        return Err(anyhow!("the kubelet said: {message}"));
    }

    // The Secret arrives without the password: the kubelet names the key it lacks.
    let mut secret = scenarios::example_secret_object("external-generic")?;
    secret["metadata"]["name"] = json!("late-db");
    let whole = secret.clone();
    if let Some(data) = secret["data"].as_object_mut() {
        data.remove("password");
    }
    kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &secret.to_string(),
    )?;
    let missing_key = "couldn't find key password in Secret e2e-late/late-db";
    let started = std::time::Instant::now();
    loop {
        let message = workload::wait_waiting(&client, namespace, &pod, "app", config_error).await?;
        if message.contains(missing_key) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(anyhow!(
                "the kubelet never named the missing key; it says: {message}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shown = kubectl(environment, &["get", "pod", &pod, "-n", namespace], "")?;
    if !shown.stdout.contains(config_error) {
        return Err(anyhow!(
            "kubectl get pod does not show {config_error}:\n{}",
            shown.stdout
        ));
    }

    kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &whole.to_string(),
    )?;
    connected(
        environment,
        namespace,
        "late",
        &pod,
        &kinds,
        ("orders_app", "orders"),
    )
    .await?;
    Ok(())
}

/// Bindings as files for an app that is not root: with `fsGroup` the kubelet gives the files
/// that group; without, they stay root's, readable through their 0644 mode. Either way the app
/// reads them and connects.
pub async fn file_modes(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-files";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    apply_secret(environment, "external-generic", namespace, None)?;
    let annotations = json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/files": "true",
        "dbbind.io/env": "none"});
    let runs = [
        (
            "files-fsgroup",
            json!({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000}),
            "-rw-r--r-- 0:2000",
        ),
        (
            "files-plain",
            json!({"runAsUser": 1000, "runAsGroup": 1000}),
            "-rw-r--r-- 0:0",
        ),
    ];
    for (name, security, mode) in runs {
        let (pod, _) = apply_app(
            environment,
            namespace,
            name,
            annotations.clone(),
            &["files"],
            json!({"securityContext": security}),
        )
        .await?;
        let log = connected(
            environment,
            namespace,
            name,
            &pod,
            &["files"],
            ("orders_app", "orders"),
        )
        .await?;
        let (_, files) = app::received(&log);
        let password = files
            .iter()
            .find(|line| line.ends_with("/bindings/db/password"))
            .ok_or_else(|| anyhow!("{name}: no password file listed:\n{log}"))?;
        if !password.starts_with(mode) {
            return Err(anyhow!(
                "{name}: the password file is {password:?}, expected {mode}"
            ));
        }
    }
    Ok(())
}
