//! Faults of the real control plane, against dbbind installed as production runs it: two
//! replicas behind one address (a round-robin TCP forwarder stands for the Service), certificates
//! self-managed in a Secret, a profiles file, the webhook configurations of `webhook-config/`
//! registered with no caBundle. No node is needed: the Pods are created through the API server,
//! which calls the webhook, and are never scheduled.
//!
//! The trials run in order on one environment: the replicas racing on first start, a profiles
//! file replaced by an invalid one, the certificate Secret deleted, the API server killed and
//! restarted, etcd paused and resumed; then a canary sweep: Secrets of every example's shape
//! with marker values, bound every way (every profile, every name set, files, TLS, denials and
//! warnings, Deployments through the workload check, Events), after which not one marker byte
//! may appear in a Pod, an Event, a kubectl message, a replica's log (at trace level), its
//! metrics or its admin endpoints.

use anyhow::anyhow;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dbbind::rotation::leader::{Leadership, LeaseSettings};
use dbbind_e2e::cluster::ControlPlane;
use dbbind_e2e::forward::Forwarder;
use dbbind_e2e::poll;
use dbbind_e2e::scenarios::{example_secret_object, opted_in_namespace};
use dbbind_e2e::tools::{self, free_port};
use dbbind_e2e::trials::{self, Check, CheckFuture};
use dbbind_e2e::webhook::{
    Dbbind, connect_verified, post_review, serves_certificate_of, shipped_configuration,
};
use dbbind_e2e::{Error, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

const NAMESPACE: &str = "faults";

const GENERIC_SECRET: &str = "orders-db-conn";

const CERT_SECRET: &str = "dbbind-tls";

/// A profile of the operator's own, and a Secret of its shape.
const PROFILES: &str = "profiles:
- name: acme
  description: ACME's database operator
  detect:
  - keys: [server, login, secret]
  fields:
    host: {keys: [server]}
    user: {keys: [login]}
    password: {keys: [secret]}
    database: {fromSecretName: '^(.+)-db$'}
";

const ACME_SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: acme-db, namespace: faults}
stringData: {server: acme.db.internal, login: acme_app, secret: acme-password}
";

struct Faults {
    plane: ControlPlane,
    replicas: Vec<Dbbind>,
    profiles_file: PathBuf,
    _front: Forwarder,
}

impl Faults {
    fn start() -> Result<Faults> {
        let mut plane = ControlPlane::start()?;
        apply(
            &plane,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: dbbind}\n",
        )?;
        opted_in_namespace(&plane, NAMESPACE)?;
        let mut generic = example_secret_object("external-generic")?;
        generic["metadata"]["namespace"] = json!(NAMESPACE);
        apply(&plane, &generic.to_string())?;
        apply(&plane, ACME_SECRET)?;
        let profiles_file = plane.dir.path().join("profiles.yaml");
        std::fs::write(&profiles_file, PROFILES)?;

        // Registered as the chart does in self-managed mode: no caBundle until a replica sets it.
        let front = free_port()?;
        for (file, path) in [
            ("mutatingwebhookconfiguration.yaml", "/mutate"),
            ("validatingwebhookconfiguration.yaml", "/validate"),
        ] {
            apply(&plane, &shipped_configuration(file, front, path, None)?)?;
        }

        // Both replicas start at once and race to create the certificate Secret.
        let flags: Vec<String> = [
            "--namespace=dbbind",
            "--namespace-selector=dbbind.io/inject=enabled",
            "--extra-ip-addresses=127.0.0.1",
            "--cert-check-interval=1s",
            "--profiles-reload-interval=1s",
            // Everything any crate logs, for the canary sweep.
            "--log-level=trace",
            // Restart on rotation too, under the canary sweep's eyes (its own Lease: the
            // leader-election trial uses the default one).
            "--restart-on-rotation",
            "--rotation-lease-name=dbbind-replicas-rotation",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--profiles-file={}", profiles_file.display())])
        .collect();
        let binary = tools::dbbind()?;
        let mut replicas = Vec::new();
        for name in ["dbbind-a", "dbbind-b"] {
            replicas.push(Dbbind::spawn(&plane, &binary, name, &flags)?);
        }
        let targets = replicas
            .iter()
            .map(|replica| SocketAddr::from((Ipv4Addr::LOCALHOST, replica.listen_port)))
            .collect();
        let front =
            Forwarder::round_robin(SocketAddr::from((Ipv4Addr::LOCALHOST, front)), targets)?;
        for replica in &mut replicas {
            replica.wait_ready()?;
        }
        plane.wait_for_default_service_account(NAMESPACE)?;
        Ok(Faults {
            plane,
            replicas,
            profiles_file,
            _front: front,
        })
    }

    fn logs(&self) -> String {
        self.replicas.iter().map(Dbbind::log).collect()
    }
}

fn apply(plane: &ControlPlane, manifest: &str) -> Result<()> {
    plane.kubectl_run(&["apply", "-f", "-"], Some(manifest))?;
    Ok(())
}

mod canary;
mod certificates;
mod connections;
mod control_plane;
mod leader;
mod startup;
mod support;

use support::*;

fn main() {
    let check = |name: &str, run: fn(&mut Faults) -> CheckFuture<'_>| {
        Check::new(format!("fault::{name}"), run)
    };
    let checks = vec![
        check("replicas_race_on_first_start", |f| {
            Box::pin(startup::replicas_race_on_first_start(f))
        }),
        check("invalid_profiles_file_keeps_the_old_profiles", |f| {
            Box::pin(startup::invalid_profiles_file_keeps_the_old_profiles(f))
        }),
        check("deleted_certificate_secret_is_regenerated", |f| {
            Box::pin(certificates::deleted_certificate_secret_is_regenerated(f))
        }),
        check("api_server_restart", |f| {
            Box::pin(control_plane::api_server_restart(f))
        }),
        check("etcd_paused", |f| Box::pin(control_plane::etcd_paused(f))),
        check("idle_connections_are_shed", |f| {
            Box::pin(connections::idle_connections_are_shed(f))
        }),
        check("one_leader_and_hand_over", |f| {
            Box::pin(leader::one_leader_and_hand_over(f))
        }),
        check("canary_sweep", |f| Box::pin(canary::canary_sweep(f))),
    ];
    trials::run("faults", Faults::start, checks)
}
