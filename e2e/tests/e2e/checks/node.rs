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
            return Err(anyhow!(
                "kubectl apply did not warn of the composed URL (or showed the password): {warnings}"
            ));
        }
        pods.push(pod);
    }
    for ((app, user, _, shown), pod) in runs.into_iter().zip(&pods) {
        let log = connected(environment, namespace, app, pod, &EVERY_DRIVER, (user, app)).await?;
        if log.contains(shown) {
            return Err(anyhow!("{app}: the app's log shows the password"));
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
            .ok_or_else(|| anyhow!("{name}: no password file listed:\n{log}"))?;
        if !password.starts_with(mode) {
            return Err(anyhow!(
                "{name}: the password file is {password:?}, expected {mode}"
            ));
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
        return Err(anyhow!(
            "the app did not see the ro Service as its host: {variables:?}"
        ));
    }
    Ok(())
}

/// Like [`connected`], and returns what PostgreSQL saw of each way's connection too.
pub async fn seen(
    environment: &Environment,
    namespace: &str,
    app: &str,
    pod: &str,
    kinds: &[&'static str],
    (user, database): (&str, &str),
) -> Result<(String, Vec<workload::Seen>)> {
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
    let seen = workload::wait_for_connections(&environment.servers.shared, &expected, log).await?;
    Ok((log(), seen))
}

/// TLS to the database on the node (docs/design.md §9), as a non-root app: a CA from a Secret
/// (no fsGroup: the CA is readable through its 0644 mode), from a ConfigMap and from a
/// CloudNativePG-shaped `<cluster>-ca` Secret whose `ca.key` must stay behind; a client
/// certificate for a role that logs in only with one (`clientcert=verify-full`), with fsGroup;
/// and a wrong CA, which psql and pgx refuse. Each connection is TLS with `verify-full`, which
/// dbbind chose because a CA is bound.
pub async fn tls_to_the_database(environment: &mut Environment) -> Result<()> {
    use base64::Engine as _;
    let namespace = "e2e-tls";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    let shared = &environment.servers.shared;
    let password = "Tls9Pass7Word3";
    for (user, database) in [("tls_user", "tls"), ("cert_user", "certs")] {
        shared.add_account(&dbbind_e2e::postgres::Account {
            user,
            password,
            database,
        })?;
    }
    shared.require_client_certificate("cert_user")?;
    let ca_pem = environment.servers.ca.cert_pem.clone();
    let client = dbbind_e2e::postgres::client_certificate(&environment.servers.ca, "cert_user")?;
    let now = time::OffsetDateTime::now_utc();
    let wrong =
        dbbind::tls::generate::new_ca("not the database's CA", Duration::from_secs(3600), now)
            .map_err(|e| anyhow!("{e}"))?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let login = |name: &str, user: &str, database: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": labels},
            "stringData": {"host": GENERIC_HOST, "port": "5432", "database": database,
                "dbname": database, "username": user, "password": password}})
    };
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        login("tls-db", "tls_user", "tls", json!({})),
        login("cert-db", "cert_user", "certs", json!({})),
        // CloudNativePG's shapes: the app Secret, and the CA Secret with the CA's private key.
        login("pg-tls-app", "tls_user", "tls", json!({"cnpg.io/cluster": "pg-tls"})),
        {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pg-tls-ca", "labels": {"cnpg.io/cluster": "pg-tls"}},
            "data": {"ca.crt": b64(&ca_pem), "ca.key": b64("PRIVATE KEY STAYS HERE")}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-ca"},
            "data": {"ca.crt": b64(&ca_pem)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db-ca-bundle"},
            "data": {"bundle.pem": ca_pem}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert-client"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(&client.cert_pem), "tls.key": b64(&client.key_pem)}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong-ca"},
            "data": {"ca.crt": b64(&wrong.cert_pem)}},
    ]});
    kubectl(
        environment,
        &["apply", "-n", namespace, "-f", "-"],
        &objects.to_string(),
    )?;

    let non_root = json!({"runAsUser": 1000, "runAsGroup": 1000});
    let with_fs_group = json!({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000});
    struct Run {
        name: &'static str,
        annotations: Value,
        kinds: &'static [&'static str],
        security: Value,
        login: (&'static str, &'static str),
    }
    let runs = [
        Run {
            name: "ca-secret",
            annotations: json!({"dbbind.io/secret": "tls-db", "dbbind.io/ca": "secret:db-ca",
                "dbbind.io/env": "postgres,libpq,database-url,jdbc"}),
            kinds: &[
                "postgres",
                "libpq",
                "url",
                "pgx-libpq",
                "pgx-url",
                "pgjdbc-jdbc",
            ],
            security: non_root.clone(),
            login: ("tls_user", "tls"),
        },
        Run {
            name: "ca-configmap",
            annotations: json!({"dbbind.io/secret": "tls-db",
                "dbbind.io/ca": "configmap:db-ca-bundle/bundle.pem",
                "dbbind.io/env": "libpq", "dbbind.io/files": "true"}),
            kinds: &["libpq", "files", "pgx-libpq"],
            security: with_fs_group.clone(),
            login: ("tls_user", "tls"),
        },
        Run {
            name: "cnpg-ca",
            annotations: json!({"dbbind.io/secret": "pg-tls-app", "dbbind.io/env": "libpq"}),
            kinds: &["libpq", "pgx-libpq"],
            security: non_root.clone(),
            login: ("tls_user", "tls"),
        },
        Run {
            name: "client-cert",
            annotations: json!({"dbbind.io/secret": "cert-db", "dbbind.io/ca": "secret:db-ca",
                "dbbind.io/client-cert": "cert-client", "dbbind.io/env": "postgres,libpq"}),
            kinds: &["postgres", "libpq", "pgx-libpq"],
            security: with_fs_group.clone(),
            login: ("cert_user", "certs"),
        },
    ];
    let mut pods = Vec::new();
    for run in &runs {
        let (pod, warnings) = apply_app(
            environment,
            namespace,
            run.name,
            run.annotations.clone(),
            run.kinds,
            json!({"securityContext": run.security}),
        )
        .await?;
        if warnings.contains("fsGroup") {
            return Err(anyhow!("{}: unexpected warning: {warnings}", run.name));
        }
        pods.push(pod);
    }
    for (run, pod) in runs.iter().zip(&pods) {
        let (log, seen) = seen(environment, namespace, run.name, pod, run.kinds, run.login).await?;
        for (kind, seen) in run.kinds.iter().zip(&seen) {
            if !seen.tls {
                return Err(anyhow!("{}: {kind} did not use TLS", run.name));
            }
            let with_cert = run.name == "client-cert";
            if with_cert != seen.client_dn.contains("CN=cert_user") {
                return Err(anyhow!(
                    "{}: {kind} presented client certificate {:?}",
                    run.name,
                    seen.client_dn
                ));
            }
        }
        let (variables, files) = app::received(&log);
        if !variables.iter().any(|v| v.ends_with("SSLMODE=verify-full")) {
            return Err(anyhow!(
                "{}: sslmode is not verify-full: {variables:?}",
                run.name
            ));
        }
        // The CNPG CA Secret's private key never reaches the pod.
        if files.iter().any(|f| f.contains("ca.key")) || log.contains("PRIVATE KEY STAYS") {
            return Err(anyhow!("{}: ca.key reached the pod", run.name));
        }
        if run.name == "client-cert" {
            let key = files
                .iter()
                .find(|f| f.ends_with("/bindings/db/tls.key"))
                .ok_or_else(|| anyhow!("no tls.key listed:\n{log}"))?;
            // 0600 under fsGroup: the kubelet gives the group read, root keeps it.
            if !key.starts_with("-rw-r----- 0:2000") {
                return Err(anyhow!("tls.key is {key:?}"));
            }
        }
    }

    // A wrong CA: libpq (psql) and pgx refuse the server's certificate.
    let wrong_kinds: &[&'static str] = &["libpq", "pgx-libpq"];
    let (pod, _) = apply_app(
        environment,
        namespace,
        "wrong-ca",
        json!({"dbbind.io/secret": "tls-db", "dbbind.io/ca": "secret:wrong-ca",
            "dbbind.io/env": "libpq"}),
        wrong_kinds,
        json!({"securityContext": non_root}),
    )
    .await?;
    let node = &environment.node;
    for said in [
        "certificate verify failed",
        "x509: certificate signed by unknown authority",
    ] {
        workload::wait_for_log(node, namespace, &pod, "app", said).await?;
    }

    // A client key without fsGroup: dbbind says what to set, and libpq indeed cannot read it.
    let (pod, warnings) = apply_app(
        environment,
        namespace,
        "key-unreadable",
        json!({"dbbind.io/secret": "cert-db", "dbbind.io/ca": "secret:db-ca",
            "dbbind.io/client-cert": "cert-client", "dbbind.io/env": "libpq"}),
        &["libpq"],
        json!({"securityContext": non_root}),
    )
    .await?;
    if !warnings.contains("set spec.securityContext.fsGroup") {
        return Err(anyhow!(
            "kubectl apply did not say to set fsGroup: {warnings}"
        ));
    }
    let client = environment.plane.client().await?;
    workload::wait_running(&environment.plane, node, &client, namespace, &pod).await?;
    workload::wait_for_log(node, namespace, &pod, "app", "private key file").await?;
    Ok(())
}
