//! The examples, run for real: each is applied into its own opted-in namespace, the Pod its
//! Deployment's ReplicaSet creates is compared with `dbbind render`'s golden output, and its
//! environment (resolved like the kubelet does) is used to connect to PostgreSQL.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use crate::cluster::ControlPlane;
use crate::kubelet::{self, Resolved};
use crate::postgres::{Account, Postgres};
use crate::tools::repo_root;
use crate::webhook::Dbbind;
use crate::{Error, Result};

/// One example and whom its pod must reach the database as.
pub struct Scenario {
    /// `examples/<name>.yaml`.
    pub name: &'static str,
    /// The Deployment (and its pods' `app` label).
    pub deployment: &'static str,
    /// Per binding: variable prefix, binding directory, expected user and database.
    pub bindings: &'static [(&'static str, &'static str, &'static str, &'static str)],
    /// Which database server the scenario's Secret describes (see [`Servers`]).
    pub server: Server,
}

/// The database servers of the suite. The Bitnami chart's database is a server of its own: its
/// custom user `app` exists on the CloudNativePG cluster too, with another password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Shared,
    Embedded,
}

pub struct Servers {
    pub shared: Postgres,
    pub embedded: Postgres,
}

impl Servers {
    pub fn start() -> Result<Servers> {
        Ok(Servers {
            shared: Postgres::start()?,
            embedded: Postgres::start()?,
        })
    }

    pub fn get(&self, server: Server) -> &Postgres {
        match server {
            Server::Shared => &self.shared,
            Server::Embedded => &self.embedded,
        }
    }
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "a8s",
        deployment: "sample-app",
        bindings: &[("", "db", "a9s2f4c1e8b7d6a5", "demo")],
        server: Server::Shared,
    },
    Scenario {
        name: "bitnami-embedded",
        deployment: "myapp-api",
        bindings: &[("", "db", "app", "appdb")],
        server: Server::Embedded,
    },
    Scenario {
        name: "cnpg",
        deployment: "pg-main-client",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
    },
    Scenario {
        name: "cockroachdb-broker",
        deployment: "ledger",
        bindings: &[(
            "",
            "db",
            "QcT7mZ2xK9pL4vNa",
            "cf_6f1d2c3b_4a5e_4b6c_8d7e_9f0a1b2c3d4e",
        )],
        server: Server::Shared,
    },
    Scenario {
        name: "crossplane",
        deployment: "orders-reporting",
        bindings: &[("", "db", "masteruser", "orders")],
        server: Server::Shared,
    },
    Scenario {
        name: "crunchy",
        deployment: "hippo-app",
        bindings: &[
            ("", "db", "hippo", "hippo"),
            ("POOLER_", "pooler", "hippo", "hippo"),
        ],
        server: Server::Shared,
    },
    Scenario {
        name: "eso-database-url",
        deployment: "myshop-api",
        bindings: &[("", "db", "myshop_admin", "myshop")],
        server: Server::Shared,
    },
    Scenario {
        name: "eso-rds-extract",
        deployment: "orders-worker",
        bindings: &[("", "db", "postgres", "orders")],
        server: Server::Shared,
    },
    Scenario {
        name: "external-generic",
        deployment: "orders",
        bindings: &[("", "db", "orders_app", "orders")],
        server: Server::Shared,
    },
    Scenario {
        name: "osba",
        deployment: "inventory",
        bindings: &[(
            "",
            "db",
            "v2m8k4p1zq@a7c1e9d0-4f2b-4c55-9d0e-2b6f8a1c3d4e",
            "jqwtr3n8kx",
        )],
        server: Server::Shared,
    },
    Scenario {
        name: "servicebinding",
        deployment: "catalog",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
    },
    Scenario {
        name: "zalando",
        deployment: "foo-service",
        bindings: &[("", "db", "foo_user", "foo")],
        server: Server::Shared,
    },
];

pub fn example_path(name: &str) -> PathBuf {
    repo_root().join(format!("examples/{name}.yaml"))
}

/// The Secret document of `examples/<name>.yaml`.
pub fn example_secret_object(name: &str) -> Result<Value> {
    let text = std::fs::read_to_string(example_path(name))?;
    crate::yaml_documents(&text)?
        .into_iter()
        .find(|document| document["kind"] == "Secret")
        .ok_or_else(|| Error::new(format!("examples/{name}.yaml has no Secret")))
}

/// The example's Secret, decoded: key → value.
fn example_secret(name: &str) -> Result<Vec<(String, String)>> {
    let secret = example_secret_object(name)?;
    let data = secret["data"].as_object().cloned().unwrap_or_default();
    data.iter()
        .map(|(k, v)| Ok((k.clone(), kubelet::decode(v.as_str().unwrap_or_default())?)))
        .collect()
}

/// Creates the database accounts the examples' Secrets describe. The passwords come from the
/// Secrets as written in `examples/`, independently of what dbbind injects.
pub fn provision(servers: &Servers) -> Result<()> {
    for scenario in SCENARIOS {
        let secret = example_secret(scenario.name)?;
        let password = match secret.iter().find(|(k, _)| k == "password") {
            Some((_, password)) => password.clone(),
            None => {
                let url = secret
                    .iter()
                    .find(|(k, _)| k == "DATABASE_URL")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                parse_url(&url)?.password
            }
        };
        for (_, _, user, database) in scenario.bindings {
            servers.get(scenario.server).add_account(&Account {
                user,
                password: &password,
                database,
            })?;
        }
    }
    Ok(())
}

/// A namespace that opts in.
pub fn opted_in_namespace(plane: &ControlPlane, namespace: &str) -> Result<()> {
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels:\n    dbbind.io/inject: enabled\n"
    );
    let applied = plane.kubectl_run(&["apply", "-f", "-"], Some(&manifest))?;
    if applied.success {
        Ok(())
    } else {
        Err(Error::new(applied.stderr))
    }
}

/// Waits for the first pod with `app=<label>` in `namespace`.
pub async fn wait_for_pod(client: &kube::Client, namespace: &str, label: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={label}")))
            .await?;
        if let Some(pod) = list.items.into_iter().next() {
            return Ok(pod);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(Error::new(format!(
                "no pod app={label} in {namespace} after 60s (check the ReplicaSet's events)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The namespace's workloads and events, for a failure message.
pub fn diagnose(plane: &ControlPlane, namespace: &str) -> String {
    let show = |args: &[&str]| {
        plane
            .kubectl_run(args, None)
            .map(|o| format!("{}{}", o.stdout, o.stderr))
            .unwrap_or_default()
    };
    format!(
        "{}\n{}",
        show(&[
            "get",
            "deployments,replicasets,pods",
            "-n",
            namespace,
            "-o",
            "wide"
        ]),
        show(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"])
    )
}

/// What a scenario showed, for the demo's report.
pub struct Report {
    pub pod: String,
    /// `NAME=secret:<secret>/<key>` or `NAME=<literal>` for the app container.
    pub variables: Vec<String>,
    pub files: Vec<String>,
    /// Per binding and way of reading it: `env: connected as app to app`.
    pub connections: Vec<String>,
}

/// Runs one scenario end to end.
pub async fn run(
    plane: &ControlPlane,
    client: &kube::Client,
    servers: &Servers,
    scenario: &Scenario,
) -> Result<Report> {
    let postgres = servers.get(scenario.server);
    let namespace = format!("e2e-{}", scenario.name);
    opted_in_namespace(plane, &namespace)?;
    let path = example_path(scenario.name);
    let applied = plane.kubectl_run(
        &["apply", "-n", &namespace, "-f", &path.display().to_string()],
        None,
    )?;
    if !applied.success {
        return Err(Error::new(format!(
            "kubectl apply failed: {}",
            applied.stderr
        )));
    }
    let pod = match wait_for_pod(client, &namespace, scenario.deployment).await {
        Ok(pod) => pod,
        Err(error) => {
            return Err(Error::new(format!(
                "{error}\n{}",
                diagnose(plane, &namespace)
            )));
        }
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    if !name.starts_with(&format!("{}-", scenario.deployment))
        || pod.metadata.generate_name.is_none()
    {
        return Err(Error::new(format!(
            "pod {name} was not created by the Deployment's ReplicaSet"
        )));
    }
    compare_with_golden(&pod, scenario)?;

    let resolved = kubelet::resolve(client, &pod, "app").await?;
    let mut connections = Vec::new();
    for (prefix, binding, user, database) in scenario.bindings {
        let mut ways = ways_from_env(&resolved, prefix)?;
        if let Some(params) = from_files(&resolved, binding)? {
            ways.push(("files", params));
        }
        if ways.is_empty() {
            return Err(Error::new(format!(
                "binding {binding}: the app container received no connection"
            )));
        }
        for (way, params) in ways {
            let (current_user, current_database) = connect(postgres, &params).await?;
            if (current_user.as_str(), current_database.as_str()) != (*user, *database) {
                return Err(Error::new(format!(
                    "binding {binding} via {way}: connected as {current_user} to {current_database}, expected {user} to {database}"
                )));
            }
            connections.push(format!(
                "{binding} via {way}: connected as {current_user} to {current_database}"
            ));
        }
    }
    let app = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == "app"));
    let variables = app
        .map(|c| c.env.iter().flatten().map(describe).collect())
        .unwrap_or_default();
    let files = resolved
        .files
        .iter()
        .filter(|(dir, _)| !dir.starts_with("/var/run/secrets/kubernetes.io/"))
        .flat_map(|(dir, entries)| entries.keys().map(move |k| format!("{dir}/{k}")))
        .collect();
    Ok(Report {
        pod: format!("{namespace}/{name}"),
        variables,
        files,
        connections,
    })
}

fn describe(var: &k8s_openapi::api::core::v1::EnvVar) -> String {
    match (
        &var.value,
        var.value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref()),
    ) {
        (Some(value), _) => format!("{}={value}", var.name),
        (None, Some(reference)) => {
            format!("{}=secret:{}/{}", var.name, reference.name, reference.key)
        }
        _ => format!("{}=<from elsewhere>", var.name),
    }
}

/// The pod's containers, volumes and dbbind annotations are exactly what `dbbind render`
/// produced for the example (tests/golden), plus what the API server adds on its own.
fn compare_with_golden(pod: &Pod, scenario: &Scenario) -> Result<()> {
    let golden_path = repo_root().join(format!("tests/golden/{}.yaml", scenario.name));
    let golden: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&golden_path)?)
        .map_err(|e| Error::new(format!("{}: {e}", golden_path.display())))?;
    let template = &golden["spec"]["template"];
    let actual = serde_json::to_value(pod).map_err(|e| Error::new(e.to_string()))?;
    for list in ["initContainers", "containers"] {
        for expected in template["spec"][list].as_array().into_iter().flatten() {
            let name = &expected["name"];
            let found = actual["spec"][list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == *name);
            let Some(found) = found else {
                return Err(Error::new(format!("pod lacks {list} {name}")));
            };
            for field in ["env", "volumeMounts"] {
                let mut want = expected[field].clone();
                let mut got = found[field].clone();
                // The API server adds the service-account token mount.
                retain_dbbind_mounts(&mut want, field);
                retain_dbbind_mounts(&mut got, field);
                if want != got {
                    return Err(Error::new(format!(
                        "{list} {name} {field} differs from the golden render:\n got  {got}\n want {want}"
                    )));
                }
            }
        }
    }
    let dbbind_volumes = |spec: &Value| -> Vec<Value> {
        spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with("dbbind-")))
            .cloned()
            .collect()
    };
    if dbbind_volumes(&template["spec"]) != dbbind_volumes(&actual["spec"]) {
        return Err(Error::new("dbbind volumes differ from the golden render"));
    }
    for key in ["dbbind.io/status", "dbbind.io/bindings"] {
        if template["metadata"]["annotations"][key] != actual["metadata"]["annotations"][key] {
            return Err(Error::new(format!(
                "annotation {key} differs from the golden render"
            )));
        }
    }
    Ok(())
}

fn retain_dbbind_mounts(value: &mut Value, field: &str) {
    if field == "volumeMounts"
        && let Some(mounts) = value.as_array_mut()
    {
        mounts.retain(|m| m["name"].as_str().is_some_and(|n| n.starts_with("dbbind-")));
        if mounts.is_empty() {
            *value = Value::Null;
        }
    }
}

/// How the simulated app connects: what it read, before any routing.
#[derive(Clone, Debug)]
pub struct Params {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

/// Every way an app could read the binding from its environment: the `postgres` set, the
/// `libpq` set, the URL (`DATABASE_URL`, else `POSTGRES_URL`). Each one present must work.
pub fn ways_from_env(resolved: &Resolved, prefix: &str) -> Result<Vec<(&'static str, Params)>> {
    let var = |name: &str| resolved.var(&format!("{prefix}{name}")).map(str::to_owned);
    let mut ways = Vec::new();
    for (way, [host, port, database, user, password]) in [
        (
            "postgres",
            [
                "POSTGRES_HOST",
                "POSTGRES_PORT",
                "POSTGRES_DB",
                "POSTGRES_USER",
                "POSTGRES_PASSWORD",
            ],
        ),
        (
            "libpq",
            ["PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"],
        ),
    ] {
        if let (Some(host), Some(user), Some(password)) = (var(host), var(user), var(password)) {
            let port = var(port).unwrap_or_else(|| "5432".to_owned());
            ways.push((
                way,
                Params {
                    host,
                    port: port
                        .parse()
                        .map_err(|_| Error::new(format!("port {port:?} is not a number")))?,
                    database: var(database).unwrap_or_else(|| user.clone()),
                    user,
                    password,
                },
            ));
        }
    }
    if let Some(url) = var("DATABASE_URL").or_else(|| var("POSTGRES_URL")) {
        ways.push(("url", parse_url(&url)?));
    }
    Ok(ways)
}

/// The first way an app would read its environment.
pub fn from_env(resolved: &Resolved, prefix: &str) -> Result<Option<Params>> {
    Ok(ways_from_env(resolved, prefix)?
        .into_iter()
        .next()
        .map(|(_, params)| params))
}

/// The app's reading of `$SERVICE_BINDING_ROOT/<binding>`.
pub fn from_files(resolved: &Resolved, binding: &str) -> Result<Option<Params>> {
    let Some(root) = resolved.var("SERVICE_BINDING_ROOT") else {
        return Ok(None);
    };
    let Some(files) = resolved
        .files
        .get(&format!("{}/{binding}", root.trim_end_matches('/')))
    else {
        return Ok(None);
    };
    if files.get("type").map(String::as_str) != Some("postgresql") {
        return Err(Error::new(format!(
            "binding {binding}: type file is {:?}",
            files.get("type")
        )));
    }
    let get = |entry: &str| {
        files
            .get(entry)
            .cloned()
            .ok_or_else(|| Error::new(format!("binding {binding}: no {entry} file")))
    };
    let port = files
        .get("port")
        .cloned()
        .unwrap_or_else(|| "5432".to_owned());
    Ok(Some(Params {
        host: get("host")?,
        port: port
            .parse()
            .map_err(|_| Error::new(format!("port file {port:?}")))?,
        user: get("username")?,
        password: get("password")?,
        database: get("database")?,
    }))
}

/// A `postgresql://` URL as libpq reads it.
pub fn parse_url(url: &str) -> Result<Params> {
    // libpq tolerates an empty query parameter (`?&sslmode=require`); tokio-postgres does not.
    let cleaned = url.replace("?&", "?");
    let config: tokio_postgres::Config = cleaned
        .parse()
        .map_err(|e| Error::new(format!("not a connection URL: {e}")))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return Err(Error::new("URL has no TCP host")),
    };
    let user = config
        .get_user()
        .ok_or_else(|| Error::new("URL has no user"))?
        .to_owned();
    Ok(Params {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        password: String::from_utf8_lossy(config.get_password().unwrap_or_default()).into_owned(),
        database: config
            .get_dbname()
            .map(str::to_owned)
            .unwrap_or_else(|| user.clone()),
        user,
    })
}

/// Connects with the app's user, password and database. The host and port the app read name
/// cluster Services and managed endpoints; here they all route to the local PostgreSQL, the
/// stand-in for cluster DNS. TLS to the database is not part of this check.
pub async fn connect(postgres: &Postgres, params: &Params) -> Result<(String, String)> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(postgres.port)
        .user(&params.user)
        .password(&params.password)
        .dbname(&params.database)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        Error::new(format!(
            "connecting as {} to {} (read host {}:{}): {e}",
            params.user, params.database, params.host, params.port
        ))
    })?;
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .map_err(|e| Error::new(format!("query: {e}")))?;
    Ok((row.get(0), row.get(1)))
}

/// Everything the e2e suite and the demo need, started and wired.
pub struct Environment {
    pub dbbind: Dbbind,
    pub servers: Servers,
    pub plane: ControlPlane,
}

impl Environment {
    pub fn start() -> Result<Environment> {
        let plane = ControlPlane::start()?;
        let servers = Servers::start()?;
        provision(&servers)?;
        let dbbind = Dbbind::start(&plane)?;
        dbbind.register(&plane)?;
        Ok(Environment {
            dbbind,
            servers,
            plane,
        })
    }
}
