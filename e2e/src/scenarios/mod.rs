//! The examples, run for real: each is applied into its own opted-in namespace, the Pod its
//! Deployment's ReplicaSet creates is compared with `dbbind render`'s golden output, and its
//! environment (resolved like the kubelet does) is used to connect to PostgreSQL.

use anyhow::anyhow;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use dbbind::tls::generate::{PemPair, new_ca};

use crate::Result;
use crate::app::{self, Mode, Way};
use crate::cluster::ControlPlane;
use crate::forward::Forwarder;
use crate::network::PodNetwork;
use crate::node::Node;
use crate::pgbouncer::PgBouncer;
use crate::postgres::{Account, Postgres};
use crate::release::Release;
use crate::tools::repo_root;
use crate::workload::{self, Expected};

mod run;
pub use run::*;

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
    /// Host names of the operator's pooler, mapped to the suite's PgBouncer in front of the
    /// shared server.
    pub pooled_hosts: &'static [&'static str],
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
    /// PgBouncer in front of `shared`, for the scenarios that go through a pooler.
    pub pooler: PgBouncer,
    /// The CA of both servers' certificates; the app image trusts it (libpq's default
    /// `~/.postgresql/root.crt`), as a company image trusts its databases' CA.
    pub ca: PemPair,
    _forwarders: Vec<Forwarder>,
}

/// Where pods reach each server: a loopback address of its own, on the ports the examples'
/// Secrets name, forwarded to the server's free port (see [`crate::forward`]).
pub const SHARED_ADDRESS: &str = "127.9.0.1";

pub const EMBEDDED_ADDRESS: &str = "127.9.0.2";

/// Where pods reach the suite's PgBouncer (in front of the shared server), on port 5432.
pub const POOLER_ADDRESS: &str = "127.9.0.3";

/// PostgreSQL's port, the CockroachDB broker's, and the one Aiven gave the example's service.
const PORTS: [u16; 3] = [5432, 26257, 12691];

impl Servers {
    pub fn start() -> Result<Servers> {
        let now = time::OffsetDateTime::now_utc();
        let ca = new_ca("dbbind e2e database CA", Duration::from_secs(86_400), now)
            .map_err(|e| anyhow!("{e}"))?;
        let hosts = |server: Server| -> Vec<&str> {
            SCENARIOS
                .iter()
                .filter(|scenario| scenario.server == server)
                .flat_map(|scenario| scenario.hosts.iter().copied())
                .collect()
        };
        let shared = Postgres::start(&ca, &hosts(Server::Shared))?;
        let embedded = Postgres::start(&ca, &hosts(Server::Embedded))?;
        let pooler = PgBouncer::start(shared.port, &pooled_users()?)?;
        let mut forwarders = Vec::new();
        let listen = format!("{POOLER_ADDRESS}:5432")
            .parse()
            .map_err(|_| anyhow!("address"))?;
        let target = format!("127.0.0.1:{}", pooler.port)
            .parse()
            .map_err(|_| anyhow!("address"))?;
        forwarders.push(Forwarder::start(listen, target)?);
        for (address, server) in [(SHARED_ADDRESS, &shared), (EMBEDDED_ADDRESS, &embedded)] {
            for port in PORTS {
                let listen = format!("{address}:{port}")
                    .parse()
                    .map_err(|_| anyhow!("address"))?;
                let target = format!("127.0.0.1:{}", server.port)
                    .parse()
                    .map_err(|_| anyhow!("address"))?;
                forwarders.push(Forwarder::start(listen, target)?);
            }
        }
        Ok(Servers {
            shared,
            embedded,
            pooler,
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
        pooled_hosts: &[],
    },
    Scenario {
        name: "aiven",
        deployment: "orders-reporting",
        bindings: &[("", "db", "avnadmin", "defaultdb")],
        server: Server::Shared,
        hosts: &["pg-orders-acme.a.aivencloud.com"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "bitnami-embedded",
        deployment: "myapp-api",
        bindings: &[("", "db", "app", "appdb")],
        server: Server::Embedded,
        hosts: &["myapp-postgresql"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "bitnami-ha",
        deployment: "ledger-api",
        bindings: &[("", "db", "ledger", "ledger")],
        server: Server::Embedded,
        hosts: &["ledger-postgresql-ha-pgpool"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "cnpg",
        deployment: "pg-main-client",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
        hosts: &["pg-main-rw", "pg-main-rw.shop"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "edb",
        deployment: "inventory-api",
        bindings: &[("", "db", "inventory", "inventory")],
        server: Server::Shared,
        hosts: &["inventory-db-rw", "inventory-db-rw.shop"],
        pooled_hosts: &[],
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
        pooled_hosts: &[],
    },
    Scenario {
        name: "crossplane",
        deployment: "orders-reporting",
        bindings: &[("", "db", "masteruser", "orders")],
        server: Server::Shared,
        hosts: &["orders.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"],
        pooled_hosts: &[],
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
        pooled_hosts: &[],
    },
    Scenario {
        name: "eso-database-url",
        deployment: "myshop-api",
        bindings: &[("", "db", "myshop_admin", "myshop")],
        server: Server::Shared,
        hosts: &["myshop-prod.abcdef.ap-northeast-2.rds.amazonaws.com"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "eso-rds-extract",
        deployment: "orders-worker",
        bindings: &[("", "db", "postgres", "orders")],
        server: Server::Shared,
        hosts: &["orders.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "external-generic",
        deployment: "orders",
        bindings: &[("", "db", "orders_app", "orders")],
        server: Server::Shared,
        hosts: &["pg-prod-01.db.internal.example.com"],
        pooled_hosts: &[],
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
        pooled_hosts: &[],
    },
    Scenario {
        name: "kubeblocks",
        deployment: "catalog",
        bindings: &[("", "db", "catalog", "postgres")],
        server: Server::Shared,
        hosts: &["catalog-pg-postgresql"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "percona",
        deployment: "storefront",
        bindings: &[("", "db", "shop", "shop")],
        server: Server::Shared,
        hosts: &["cluster1-primary.pgo.svc"],
        pooled_hosts: &["cluster1-pgbouncer.pgo.svc"],
    },
    Scenario {
        name: "servicebinding",
        deployment: "catalog",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
        hosts: &["pg-main-rw.shop.svc"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "spring-boot",
        deployment: "orders-spring",
        bindings: &[("", "db", "app", "app")],
        server: Server::Shared,
        hosts: &["pg-main-rw", "pg-main-rw.shop"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "vault-database",
        deployment: "billing",
        bindings: &[("", "db", "v-kubernetes-billing-r-7Hq2LmXw3Pz9", "billing")],
        server: Server::Shared,
        hosts: &["billing-db.internal.example.com"],
        pooled_hosts: &[],
    },
    Scenario {
        name: "zalando",
        deployment: "foo-service",
        bindings: &[("", "db", "foo_user", "foo")],
        server: Server::Shared,
        hosts: &["acid-minimal-cluster"],
        pooled_hosts: &[],
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
        .ok_or_else(|| anyhow!("examples/{name}.yaml has no Secret"))
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
        .map_err(|e| anyhow!("base64: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The password of a `postgresql://` URL, as libpq reads it.
fn url_password(url: &str) -> Result<String> {
    // libpq tolerates an empty query parameter (`?&sslmode=require`); tokio-postgres does not.
    let config: tokio_postgres::Config = url
        .replace("?&", "?")
        .parse()
        .map_err(|e| anyhow!("not a connection URL: {e}"))?;
    Ok(String::from_utf8_lossy(config.get_password().unwrap_or_default()).into_owned())
}

/// Creates the database accounts the examples' Secrets describe. The passwords come from the
/// Secrets as written in `examples/`, independently of what dbbind injects.
/// The users of the scenarios that go through the pooler, with their Secrets' passwords.
fn pooled_users() -> Result<Vec<(String, String)>> {
    let mut users = Vec::new();
    for scenario in SCENARIOS.iter().filter(|s| !s.pooled_hosts.is_empty()) {
        let password = scenario_password(scenario)?;
        for (_, _, user, _) in scenario.bindings {
            users.push(((*user).to_owned(), password.clone()));
        }
    }
    Ok(users)
}

/// The password of a scenario's Secret: its `password` key, else a `…PASSWORD` key (Aiven's
/// `POSTGRESQL_PASSWORD`), else the one in its URL.
fn scenario_password(scenario: &Scenario) -> Result<String> {
    let secret = example_secret(scenario.name)?;
    let key = |wanted: &dyn Fn(&str) -> bool| {
        secret
            .iter()
            .find(|(k, _)| wanted(k))
            .map(|(_, v)| v.clone())
    };
    if let Some(password) = key(&|k| k == "password").or_else(|| key(&|k| k.ends_with("PASSWORD")))
    {
        return Ok(password);
    }
    let url = key(&|k| k == "DATABASE_URL").unwrap_or_default();
    if url.is_empty() {
        return Err(anyhow!(
            "examples/{}.yaml: its Secret has no password key and no DATABASE_URL",
            scenario.name
        ));
    }
    url_password(&url)
}

pub fn provision(servers: &Servers) -> Result<()> {
    for scenario in SCENARIOS {
        let password = scenario_password(scenario)?;
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
    plane.kubectl_run(&["apply", "-f", "-"], Some(&manifest))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_a_scenario_and_every_scenario_an_example() {
        let mut examples: Vec<String> = std::fs::read_dir(repo_root().join("examples"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".yaml").map(str::to_owned))
            .collect();
        examples.sort();
        let mut scenarios: Vec<String> = SCENARIOS.iter().map(|s| s.name.to_owned()).collect();
        scenarios.sort();
        assert_eq!(scenarios, examples);
    }
}
