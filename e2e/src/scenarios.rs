//! The examples, run for real: each is applied into its own opted-in namespace, the Pod its
//! Deployment's ReplicaSet creates is compared with `dbbind render`'s golden output, and its
//! environment (resolved like the kubelet does) is used to connect to PostgreSQL.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use dbbind::tls::generate::{PemPair, new_ca};

use crate::app::{self, Mode, Way};
use crate::cluster::ControlPlane;
use crate::forward::Forwarder;
use crate::network::PodNetwork;
use crate::node::Node;
use crate::postgres::{Account, Postgres};
use crate::release::Release;
use crate::tools::repo_root;
use crate::workload::{self, Expected};
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
    /// The database host names its pods read, mapped to the server's loopback address by
    /// `hostAliases` (the stand-in for cluster DNS).
    pub hosts: &'static [&'static str],
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
    /// The CA of both servers' certificates; the app image trusts it (libpq's default
    /// `~/.postgresql/root.crt`), as a company image trusts its databases' CA.
    pub ca: PemPair,
    _forwarders: Vec<Forwarder>,
}

/// Where pods reach each server: a loopback address of its own, on the ports the examples'
/// Secrets name, forwarded to the server's free port (see [`crate::forward`]).
pub const SHARED_ADDRESS: &str = "127.9.0.1";
pub const EMBEDDED_ADDRESS: &str = "127.9.0.2";
/// PostgreSQL's port, and the CockroachDB broker's.
const PORTS: [u16; 2] = [5432, 26257];

impl Servers {
    pub fn start() -> Result<Servers> {
        let now = time::OffsetDateTime::now_utc();
        let ca = new_ca("dbbind e2e database CA", Duration::from_secs(86_400), now)
            .map_err(|e| Error::new(e.to_string()))?;
        let hosts = |server: Server| -> Vec<&str> {
            SCENARIOS
                .iter()
                .filter(|scenario| scenario.server == server)
                .flat_map(|scenario| scenario.hosts.iter().copied())
                .collect()
        };
        let shared = Postgres::start(&ca, &hosts(Server::Shared))?;
        let embedded = Postgres::start(&ca, &hosts(Server::Embedded))?;
        let mut forwarders = Vec::new();
        for (address, server) in [(SHARED_ADDRESS, &shared), (EMBEDDED_ADDRESS, &embedded)] {
            for port in PORTS {
                let listen = format!("{address}:{port}")
                    .parse()
                    .map_err(|_| Error::new("address"))?;
                let target = format!("127.0.0.1:{}", server.port)
                    .parse()
                    .map_err(|_| Error::new("address"))?;
                forwarders.push(Forwarder::start(listen, target)?);
            }
        }
        Ok(Servers {
            shared,
            embedded,
            ca,
            _forwarders: forwarders,
        })
    }

    pub fn get(&self, server: Server) -> &Postgres {
        match server {
            Server::Shared => &self.shared,
            Server::Embedded => &self.embedded,
        }
    }

    pub fn address(server: Server) -> &'static str {
        match server {
            Server::Shared => SHARED_ADDRESS,
            Server::Embedded => EMBEDDED_ADDRESS,
        }
    }
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "a8s",
        deployment: "sample-app",
        bindings: &[("", "db", "a9s2f4c1e8b7d6a5", "demo")],
        server: Server::Shared,
        hosts: &["sample-pg-cluster-master.default.svc.cluster.local"],
    },
    Scenario {
        name: "bitnami-embedded",
        deployment: "myapp-api",
        bindings: &[("", "db", "app", "appdb")],
        server: Server::Embedded,
        hosts: &["myapp-postgresql"],
    },
    Scenario {
        name: "cnpg",
        deployment: "pg-main-client",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
        hosts: &["pg-main-rw", "pg-main-rw.shop"],
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
        hosts: &["cockroachdb-public.crdb.svc.cluster.local"],
    },
    Scenario {
        name: "crossplane",
        deployment: "orders-reporting",
        bindings: &[("", "db", "masteruser", "orders")],
        server: Server::Shared,
        hosts: &["orders.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"],
    },
    Scenario {
        name: "crunchy",
        deployment: "hippo-app",
        bindings: &[
            ("", "db", "hippo", "hippo"),
            ("POOLER_", "pooler", "hippo", "hippo"),
        ],
        server: Server::Shared,
        hosts: &[
            "hippo-primary.postgres-operator.svc",
            "hippo-pgbouncer.postgres-operator.svc",
        ],
    },
    Scenario {
        name: "eso-database-url",
        deployment: "myshop-api",
        bindings: &[("", "db", "myshop_admin", "myshop")],
        server: Server::Shared,
        hosts: &["myshop-prod.abcdef.ap-northeast-2.rds.amazonaws.com"],
    },
    Scenario {
        name: "eso-rds-extract",
        deployment: "orders-worker",
        bindings: &[("", "db", "postgres", "orders")],
        server: Server::Shared,
        hosts: &["orders.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"],
    },
    Scenario {
        name: "external-generic",
        deployment: "orders",
        bindings: &[("", "db", "orders_app", "orders")],
        server: Server::Shared,
        hosts: &["pg-prod-01.db.internal.example.com"],
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
        hosts: &["a7c1e9d0-4f2b-4c55-9d0e-2b6f8a1c3d4e.postgres.database.azure.com"],
    },
    Scenario {
        name: "servicebinding",
        deployment: "catalog",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
        hosts: &["pg-main-rw.shop.svc"],
    },
    Scenario {
        name: "spring-boot",
        deployment: "orders-spring",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
        hosts: &["pg-main-rw", "pg-main-rw.shop"],
    },
    Scenario {
        name: "zalando",
        deployment: "foo-service",
        bindings: &[("", "db", "foo_user", "foo")],
        server: Server::Shared,
        hosts: &["acid-minimal-cluster"],
    },
];

/// Connection URLs real provisioners write that the drivers refuse, with the message both give.
/// The Open Service Broker for Azure writes `…/db?&sslmode=require`: libpq 15 (psql, psycopg,
/// the `pg` gem) stops at the empty parameter, and pgx v5, which follows libpq's rules, does
/// too, and so does psycopg (libpq inside); node-postgres reads it, and so does Django, whose
/// dj-database-url parses the URL itself. dbbind hands the key through as it is; the suite
/// asserts what each driver makes of it.
pub const URLS_REFUSED: &[(&str, &str)] = &[(
    "osba",
    "missing key/value separator \"=\" in URI query parameter",
)];

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
        .map(|(k, v)| Ok((k.clone(), decode(v.as_str().unwrap_or_default())?)))
        .collect()
}

/// A Secret's `data` value.
pub fn decode(text: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Error::new(format!("base64: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The password of a `postgresql://` URL, as libpq reads it.
fn url_password(url: &str) -> Result<String> {
    // libpq tolerates an empty query parameter (`?&sslmode=require`); tokio-postgres does not.
    let config: tokio_postgres::Config = url
        .replace("?&", "?")
        .parse()
        .map_err(|e| Error::new(format!("not a connection URL: {e}")))?;
    Ok(String::from_utf8_lossy(config.get_password().unwrap_or_default()).into_owned())
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
                url_password(&url)?
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

/// What a scenario showed, for the demo's report.
pub struct Report {
    pub pod: String,
    /// The pod's phase on the node (`Running`).
    pub phase: String,
    /// The app container's binding variables as it saw them, passwords masked.
    pub variables: Vec<String>,
    /// The binding files as it saw them: mode, owner, path.
    pub files: Vec<String>,
    /// Per binding and way of reading it, what PostgreSQL says:
    /// `psql read db through postgres: PostgreSQL saw app on app (TLS)`.
    pub connections: Vec<String>,
}

/// Runs one scenario end to end on the real node: the example applied as written, but with the
/// suite's app image and checks, `hostNetwork` and `hostAliases`; its pod compared with the
/// golden render, then Running, and every way its app container reads the binding proven by
/// the database itself.
pub async fn run(
    environment: &Environment,
    client: &kube::Client,
    scenario: &Scenario,
) -> Result<Report> {
    let plane = &environment.plane;
    let postgres = environment.servers.get(scenario.server);
    let namespace = format!("e2e-{}", scenario.name);
    opted_in_namespace(plane, &namespace)?;
    let golden = golden_template(scenario)?;
    let mut documents =
        crate::yaml_documents(&std::fs::read_to_string(example_path(scenario.name))?)?;
    let mut app_ways = Vec::new();
    for document in &mut documents {
        if document["kind"] == "Deployment" {
            app_ways = for_the_node(document, scenario, &golden)?;
        }
        if document["kind"] == "Secret" {
            trust_the_suites_ca(document, &environment.servers.ca.cert_pem);
        }
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": documents});
    let applied = plane.kubectl_run(
        &["apply", "-n", &namespace, "-f", "-"],
        Some(&list.to_string()),
    )?;
    if !applied.success {
        return Err(Error::new(format!(
            "kubectl apply failed: {}",
            applied.stderr
        )));
    }
    let pod = match workload::wait_for_pod(client, &namespace, scenario.deployment).await {
        Ok(pod) => pod,
        Err(error) => {
            return Err(Error::new(format!(
                "{error}\n{}",
                workload::diagnose(plane, &namespace)
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
    compare_with_golden(&pod, &golden)?;
    let node = &environment.node;
    let phase = workload::wait_running(plane, node, client, &namespace, &name).await?;

    // A URL the drivers refuse: psql, pgx and psycopg must say so, and are then not expected
    // among the connections.
    let refused = URLS_REFUSED
        .iter()
        .find(|(name, _)| *name == scenario.name)
        .map(|(_, message)| *message);
    if let Some(message) = refused {
        for said in [
            format!("failed to parse as URL ({message}"),
            format!("psycopg: error: {message}"),
        ] {
            workload::wait_for_log(node, &namespace, &name, "app", &said).await?;
        }
        // psql's "error: …" too, so twice with psycopg's. Not "psql: error: …": psql writes its
        // name apart, and the ways run at once, so another way's line can land in between.
        let said = format!("error: {message}");
        workload::wait_for_log_times(node, &namespace, &name, "app", &said, 2).await?;
    }
    let connecting: Vec<&Way> = app_ways
        .iter()
        .filter(|way| refused.is_none() || !matches!(way.kind, "url" | "pgx-url" | "psycopg-url"))
        .collect();
    // The database's own word: who is connected, under each way's label.
    let expected: Vec<Expected> = connecting
        .iter()
        .map(|way| {
            let (_, _, user, database) = scenario
                .bindings
                .iter()
                .find(|(_, binding, _, _)| *binding == way.binding)
                .copied()
                .unwrap_or_default();
            Expected {
                label: way.label(scenario.name, "app"),
                user: user.to_owned(),
                database: database.to_owned(),
            }
        })
        .collect();
    let log = || node.container_log(&namespace, &name, "app");
    let seen = workload::wait_for_connections(postgres, &expected, log).await?;
    let mut connections: Vec<String> = connecting
        .iter()
        .zip(&seen)
        .map(|(way, seen)| {
            let tls = if seen.tls { " (TLS)" } else { "" };
            let (driver, set) = way.driver_and_set();
            format!(
                "{driver} read {} through {set}: PostgreSQL saw {} on {}{tls}",
                way.binding, seen.user, seen.database
            )
        })
        .collect();
    if let Some(message) = refused {
        connections.push(format!(
            "psql, pgx and psycopg refused the Secret's URL: {message}"
        ));
    }
    let (variables, files) = app::received(&log());
    // Composed strings reach the container expanded by the kubelet, and never hold a password.
    for variable in &variables {
        if let Some((name, value)) = variable.split_once('=')
            && name.ends_with("_URL")
            && (value.contains("$(") || value.contains("PASSWORD"))
        {
            return Err(Error::new(format!(
                "{name} reached the container unexpanded or with a password reference: {value}"
            )));
        }
    }
    Ok(Report {
        pod: format!("{namespace}/{name}"),
        phase,
        variables,
        files,
        connections,
    })
}

/// An example Secret's CA (`ca.crt`) is a placeholder: here it becomes the CA of the suite's
/// database servers, so the app verifies the server against what the Secret says.
fn trust_the_suites_ca(secret: &mut Value, ca_pem: &str) {
    use base64::Engine as _;
    if let Some(data) = secret["data"].as_object_mut()
        && data.contains_key("ca.crt")
    {
        let encoded = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        data.insert("ca.crt".to_owned(), Value::String(encoded));
    }
}

/// The ways a container of the golden render reads each binding: the variable sets it has,
/// and the binding's files when it mounts them.
fn ways_of(container: &Value, scenario: &Scenario) -> Vec<Way> {
    let names_in = |field: &str| -> Vec<&str> {
        container[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["name"].as_str())
            .collect()
    };
    let (names, mounts) = (names_in("env"), names_in("volumeMounts"));
    let mut ways = Vec::new();
    for (prefix, binding, _, _) in scenario.bindings {
        let has = |name: &str| names.contains(&format!("{prefix}{name}").as_str());
        let mut kinds = Vec::new();
        if has("POSTGRES_HOST") {
            kinds.push("postgres");
        }
        if prefix.is_empty() && has("PGHOST") {
            kinds.push("libpq");
        }
        if has("DATABASE_URL") || has("POSTGRES_URL") {
            kinds.push("url");
        }
        if has("SPRING_DATASOURCE_URL") {
            kinds.push("spring");
        }
        if has("QUARKUS_DATASOURCE_JDBC_URL") {
            kinds.push("pgjdbc-quarkus");
        }
        if has("POSTGRES_JDBC_URL") {
            kinds.push("pgjdbc-jdbc");
        }
        if mounts.contains(&format!("dbbind-{binding}").as_str()) {
            kinds.push("files");
        }
        ways.extend(kinds.into_iter().map(|kind| Way {
            binding: (*binding).to_owned(),
            prefix: (*prefix).to_owned(),
            kind,
        }));
    }
    ways
}

/// Makes the example's Deployment run here: every container runs the app image (the app
/// container its checks, init containers a one-shot connection, sidecars a sleep), on the
/// host's network with the scenario's database hosts aliased to its server. The annotations,
/// env and volumes stay as written. Returns the app container's ways.
fn for_the_node(deployment: &mut Value, scenario: &Scenario, golden: &Value) -> Result<Vec<Way>> {
    let spec = &mut deployment["spec"]["template"]["spec"];
    workload::on_host_network(spec, Servers::address(scenario.server), scenario.hosts);
    let golden_container = |list: &str, name: &Value| -> Value {
        golden["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == *name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut app_ways = Vec::new();
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            let ways = ways_of(&golden_container(list, &container["name"]), scenario);
            let script = match (list, name.as_str()) {
                ("initContainers", _) => {
                    let ways: Vec<Way> = ways.into_iter().filter(Way::through_psql).collect();
                    app::script(scenario.name, &name, &ways, Mode::Once)
                }
                (_, "app") => {
                    let ways = app::with_drivers(ways);
                    app_ways = ways.clone();
                    app::script(scenario.name, &name, &ways, Mode::Hold)
                }
                _ => "sleep 3600".to_owned(),
            };
            workload::run_script(container, script);
        }
    }
    if app_ways.is_empty() {
        return Err(Error::new(format!(
            "{}: the app container reads no binding",
            scenario.name
        )));
    }
    Ok(app_ways)
}

/// The pod template of the example's golden render (tests/golden).
fn golden_template(scenario: &Scenario) -> Result<Value> {
    let golden_path = repo_root().join(format!("tests/golden/{}.yaml", scenario.name));
    let golden: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&golden_path)?)
        .map_err(|e| Error::new(format!("{}: {e}", golden_path.display())))?;
    Ok(golden["spec"]["template"].clone())
}

/// The pod's containers, volumes and dbbind annotations are exactly what `dbbind render`
/// produced for the example (tests/golden), plus what the API server adds on its own.
fn compare_with_golden(pod: &Pod, template: &Value) -> Result<()> {
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

/// Everything the suite runs. Fields drop in order: the node's containers go first, then the
/// control plane, the pod network last.
pub struct Environment {
    pub node: Node,
    /// dbbind, installed by its chart onto the node: the webhook every scenario goes through.
    pub dbbind: Release,
    pub servers: Servers,
    pub plane: ControlPlane,
    pub network: PodNetwork,
}

impl Environment {
    /// The pod network, the control plane, PostgreSQL, the node, and dbbind installed with
    /// `helm install` (which waits for both replicas to be ready).
    pub fn start() -> Result<Environment> {
        let network = PodNetwork::create()?;
        let plane = ControlPlane::start_for_node(&network)?;
        let servers = Servers::start()?;
        provision(&servers)?;
        let node = Node::start(&plane, &network, &servers.ca.cert_pem)?;
        let dbbind = Release::install(&plane, &node, &[])?;
        Ok(Environment {
            node,
            dbbind,
            servers,
            plane,
            network,
        })
    }
}
