//! Checks on the real node: what the kubelet does with what dbbind injected, seen from inside
//! the container and from PostgreSQL.

use std::time::Duration;

use dbbind_e2e::app::{self, EVERY_DRIVER, EVERY_SET, Way};
use dbbind_e2e::scenarios::{self, Environment, SHARED_ADDRESS};
use dbbind_e2e::workload::{self, Expected};
use dbbind_e2e::{Error, Result};
use serde_json::{Value, json};

use super::{apply_secret, kubectl};

/// The host name in external-generic's Secret, which the checks' pods resolve to the shared
/// server.
const GENERIC_HOST: &str = "pg-prod-01.db.internal.example.com";

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
    let applied = kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &deployment.to_string(),
    )?;
    let client = environment.plane.client().await?;
    let pod = workload::wait_for_pod(&client, namespace, name).await?;
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
    (user, database): (&str, &str),
) -> Result<String> {
    let client = environment.plane.client().await?;
    let node = &environment.node;
    workload::wait_running(&environment.plane, node, &client, namespace, pod).await?;
    let expected: Vec<Expected> = ways(kinds)
        .iter()
        .map(|way| Expected {
            label: way.label(app, "app"),
            user: user.to_owned(),
            database: database.to_owned(),
        })
        .collect();
    let log = || node.container_log(namespace, pod, "app");
    workload::wait_for_connections(&environment.servers.shared, &expected, log).await?;
    Ok(log())
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
        return Err(Error::new(format!(
            "kubectl apply did not warn of the missing Secret: {warnings}"
        )));
    }
    let client = environment.plane.client().await?;
    let config_error = "CreateContainerConfigError";
    let message = workload::wait_waiting(&client, namespace, &pod, "app", config_error).await?;
    if !message.contains("secret \"late-db\" not found") {
        return Err(Error::new(format!("the kubelet said: {message}")));
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
            return Err(Error::new(format!(
                "the kubelet never named the missing key; it says: {message}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shown = kubectl(environment, &["get", "pod", &pod, "-n", namespace], "")?;
    if !shown.stdout.contains(config_error) {
        return Err(Error::new(format!(
            "kubectl get pod does not show {config_error}:\n{}",
            shown.stdout
        )));
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

/// A generated-looking password with URL-reserved characters, quotes, a space and a non-ASCII
/// letter.
const RESERVED_PASSWORD: &str = "p@ss:w/rd?#%&=+; '\"é1";

/// Every driver with every set it reads, for a plain password and for one with URL-reserved
/// characters, quotes, a space and a non-ASCII letter: each connects, the composed
/// `DATABASE_URL` too, because it leaves the password to `PGPASSWORD` (a password inside it
/// would break it: expansion does not percent-encode), as the warning at `kubectl apply` says;
/// the JDBC URLs hold no password either.
pub async fn every_driver(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-drivers";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    let runs = [
        (
            "plain",
            "plain_user",
            "Xk3vQ9pL2mN8rT5wY7zB",
            "Xk3vQ9pL2mN8rT5wY7zB",
        ),
        ("reserved", "reserved_user", RESERVED_PASSWORD, "w/rd"),
    ];
    let mut pods = Vec::new();
    for (app, user, password, _) in runs {
        environment
            .servers
            .shared
            .add_account(&dbbind_e2e::postgres::Account {
                user,
                password,
                database: app,
            })?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{app}-db")},
            "stringData": {"host": GENERIC_HOST, "port": "5432", "database": app,
                "username": user, "password": password}});
        kubectl(
            environment,
            &["apply", "-n", namespace, "-f", "-"],
            &secret.to_string(),
        )?;
        let annotations =
            json!({"dbbind.io/secret": format!("{app}-db"), "dbbind.io/env": EVERY_SET});
        let (pod, warnings) = apply_app(
            environment,
            namespace,
            app,
            annotations,
            &EVERY_DRIVER,
            json!({}),
        )
        .await?;
        if !warnings.contains("composed without the password") || warnings.contains(password) {
            return Err(Error::new(format!(
                "kubectl apply did not warn of the composed URL (or showed the password): {warnings}"
            )));
        }
        pods.push(pod);
    }
    for ((app, user, _, shown), pod) in runs.into_iter().zip(&pods) {
        let log = connected(environment, namespace, app, pod, &EVERY_DRIVER, (user, app)).await?;
        if log.contains(shown) {
            return Err(Error::new(format!(
                "{app}: the app's log shows the password"
            )));
        }
    }
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
            .ok_or_else(|| Error::new(format!("{name}: no password file listed:\n{log}")))?;
        if !password.starts_with(mode) {
            return Err(Error::new(format!(
                "{name}: the password file is {password:?}, expected {mode}"
            )));
        }
    }
    Ok(())
}

/// `dbbind.io/endpoint: ro` on a CloudNativePG Secret: the app reaches `<cluster>-ro`, through
/// its variables and through the `DATABASE_URL` composed from them (the Secret's own URI names
/// the primary).
pub async fn endpoint_role(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-endpoint";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    apply_secret(environment, "cnpg", namespace, None)?;
    let annotations = json!({"dbbind.io/secret": "pg-main-app", "dbbind.io/endpoint": "ro",
        "dbbind.io/env": "postgres,database-url"});
    let kinds = ["postgres", "url"];
    let (pod, _) = apply_app(
        environment,
        namespace,
        "readonly",
        annotations,
        &kinds,
        json!({}),
    )
    .await?;
    let log = connected(
        environment,
        namespace,
        "readonly",
        &pod,
        &kinds,
        ("app", "app"),
    )
    .await?;
    let (variables, _) = app::received(&log);
    if !variables.iter().any(|v| v == "POSTGRES_HOST=pg-main-ro") {
        return Err(Error::new(format!(
            "the app did not see the ro Service as its host: {variables:?}"
        )));
    }
    Ok(())
}
