//! The database side: an endpoint role reaches the role's Service; TLS verifies the server and logs in by certificate.

use super::*;

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
