//! Restart on credential rotation on the real node (docs/design.md §10), turned on as users
//! turn it on — `helm upgrade --set rotation.enabled=true` — so the chart's two replicas run the
//! controller under the chart's own RBAC. A password changes in PostgreSQL and in the Secret,
//! and
//! - the Deployment that opted in and reads it through env is rolled once: a new pod starts
//!   and connects with the new password, the old pod is gone, one `SecretRotated` Event, one
//!   rollout counted across both replicas;
//! - the Deployment that did not opt in keeps its pod;
//! - the files-only Deployment (opted in, warned at `kubectl apply` that no restart is needed)
//!   keeps its pod, which reads the new password from the file the kubelet updated and
//!   connects with it;
//! - the opted-in Job keeps its pod and gets a `RotationNotRestartable` Event instead.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use dbbind_e2e::Result;
use dbbind_e2e::app::{self, Mode, Way};
use dbbind_e2e::postgres::Account;
use dbbind_e2e::release::Release;
use dbbind_e2e::scenarios::{self, Environment, SHARED_ADDRESS};
use dbbind_e2e::workload;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use super::kubectl;
use super::node::{GENERIC_HOST, apply_and_wait_for_pod, apply_app, connected};

const NAMESPACE: &str = "e2e-rotation";
const USER: &str = "rotating_user";
const DATABASE: &str = "rotating";
const OLD_PASSWORD: &str = "Old7Rotating3Pass";
const NEW_PASSWORD: &str = "New9Rotated5Pass";

fn secret(password: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rotating-db"},
        "stringData": {"host": GENERIC_HOST, "port": "5432", "database": DATABASE,
            "username": USER, "password": password}})
    .to_string()
}

pub async fn restart_on_rotation(environment: &mut Environment) -> Result<()> {
    environment.dbbind.upgrade(
        &environment.plane,
        &environment.node,
        &["--set", "rotation.enabled=true"],
    )?;
    let client = environment.plane.client().await?;
    Release::wait_replicas(&client, 2).await?;
    check(environment).await?;
    let logs = Release::logs(&environment.node);
    if logs.contains(OLD_PASSWORD) || logs.contains(NEW_PASSWORD) {
        return Err(anyhow!("a dbbind replica logged a password"));
    }
    Ok(())
}

async fn check(environment: &mut Environment) -> Result<()> {
    scenarios::opted_in_namespace(&environment.plane, NAMESPACE)?;
    let shared = &environment.servers.shared;
    shared.add_account(&Account {
        user: USER,
        password: OLD_PASSWORD,
        database: DATABASE,
    })?;
    kubectl(
        environment,
        &["apply", "-n", NAMESPACE, "-f", "-"],
        &secret(OLD_PASSWORD),
    )?;
    let env_binding = json!({"dbbind.io/secret": "rotating-db", "dbbind.io/profile": "generic"});
    let mut opted_in = env_binding.clone();
    opted_in["dbbind.io/restart-on-rotation"] = json!("true");
    let login = (USER, DATABASE);
    let (rolled_pod, _) = apply_app(
        environment,
        NAMESPACE,
        "rolled",
        opted_in,
        &["postgres"],
        json!({}),
    )
    .await?;
    let (kept_pod, _) = apply_app(
        environment,
        NAMESPACE,
        "kept",
        env_binding,
        &["postgres"],
        json!({}),
    )
    .await?;
    let job_pod = apply_job(environment).await?;
    let (files_pod, files_warnings) = apply_files_app(environment).await?;
    if !files_warnings.contains("binds by files only") {
        return Err(anyhow!(
            "kubectl apply did not say a files-only binding needs no restart: {files_warnings}"
        ));
    }
    for (app, pod) in [("rolled", &rolled_pod), ("kept", &kept_pod)] {
        connected(environment, NAMESPACE, app, pod, &["postgres"], login).await?;
    }
    let client = environment.plane.client().await?;
    workload::wait_running(
        &environment.plane,
        &environment.node,
        &client,
        NAMESPACE,
        &files_pod,
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let generation = |deployment: &Deployment| deployment.metadata.generation.unwrap_or_default();
    let kept_generation = generation(&deployments.get("kept").await?);
    let rolled_generation = generation(&deployments.get("rolled").await?);

    // The rotation: PostgreSQL first (the running pods keep their sessions), then the Secret.
    let rotated_at = shared.sql("SELECT now()")?;
    shared.add_account(&Account {
        user: USER,
        password: NEW_PASSWORD,
        database: DATABASE,
    })?;
    kubectl(
        environment,
        &["apply", "-n", NAMESPACE, "-f", "-"],
        &secret(NEW_PASSWORD),
    )?;

    // The opted-in Deployment rolls: a new pod connects after the rotation (so with the new
    // password: the old one no longer logs in), and the old pod goes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let label = Way {
        binding: "db".to_owned(),
        prefix: String::new(),
        kind: "postgres",
    }
    .label("rolled", "app");
    let started = Instant::now();
    loop {
        let names: Vec<String> = pods
            .list(&ListParams::default().labels("app=rolled"))
            .await?
            .items
            .into_iter()
            .filter_map(|pod| pod.metadata.name)
            .collect();
        let fresh = shared.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{label}' AND usename = '{USER}' AND backend_start > '{rotated_at}'"
        ))?;
        if !names.contains(&rolled_pod) && names.len() == 1 && fresh != "0" {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!(
                "the opted-in Deployment was not rolled onto the new password within 120 s: pods {names:?}, new connections {fresh}\n{}\ndbbind's replicas:\n{}",
                workload::diagnose(&environment.plane, NAMESPACE),
                Release::logs(&environment.node)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rolled = deployments.get("rolled").await?;
    let restarted_at = rolled
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|metadata| metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get("dbbind.io/restartedAt").cloned());
    if restarted_at.is_none() {
        return Err(anyhow!(
            "the rolled Deployment has no dbbind.io/restartedAt"
        ));
    }

    // The files-only pod reads the new password from the file the kubelet updated, in place
    // (on its next sync of the pod: within about a minute).
    let started = Instant::now();
    while !environment
        .node
        .container_log(NAMESPACE, &files_pod, "app")
        .contains("PASSWORD FILE CHANGED")
    {
        if started.elapsed() > Duration::from_secs(150) {
            return Err(anyhow!(
                "the files-only pod never saw the new password file:\n{}",
                environment.node.container_log(NAMESPACE, &files_pod, "app")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let files_label = files_way().label("files", "app");
    workload::wait_for_connections(
        shared,
        &[workload::Expected {
            label: files_label,
            user: USER.to_owned(),
            database: DATABASE.to_owned(),
        }],
        || environment.node.container_log(NAMESPACE, &files_pod, "app"),
    )
    .await?;

    // Give a second rollout, if any were coming, time to show.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (app, pod) in [
        ("kept", &kept_pod),
        ("files", &files_pod),
        ("job", &job_pod),
    ] {
        let now = pods.get(pod).await?;
        let restarts: i32 = now
            .status
            .and_then(|status| status.container_statuses)
            .into_iter()
            .flatten()
            .map(|status| status.restart_count)
            .sum();
        if now.metadata.deletion_timestamp.is_some() || restarts != 0 {
            return Err(anyhow!("{app}'s pod was restarted or is being deleted"));
        }
    }
    let kept = deployments.get("kept").await?;
    if generation(&kept) != kept_generation {
        return Err(anyhow!("the Deployment that did not opt in was changed"));
    }
    if generation(&deployments.get("rolled").await?) != rolled_generation + 1 {
        return Err(anyhow!(
            "the rolled Deployment's generation went from {rolled_generation} to {}: not exactly one rollout",
            generation(&deployments.get("rolled").await?)
        ));
    }
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let rolled_sets = replica_sets
        .list(&ListParams::default().labels("app=rolled"))
        .await?
        .items
        .len();
    if rolled_sets != 2 {
        return Err(anyhow!(
            "{rolled_sets} ReplicaSets for the rolled Deployment, not 2"
        ));
    }
    let replicas = Release::replicas(&client).await?;
    let mut rollouts = 0;
    let mut seen = Vec::new();
    for replica in &replicas {
        rollouts += replica.metric_sum("dbbind_rollouts_total ")?;
        seen.push(replica.metric_sum("dbbind_rotations_seen_total ")?);
    }
    if rollouts != 1 || seen.len() != 2 || seen.contains(&0) {
        return Err(anyhow!(
            "{rollouts} rollouts across the two replicas (rotations seen: {seen:?}); expected one rollout, both replicas seeing the rotation"
        ));
    }
    let events_of = |reason: &str| -> Result<Vec<serde_json::Value>> {
        let selector = format!("reason={reason}");
        let events = kubectl(
            environment,
            &[
                "get",
                "events",
                "-n",
                NAMESPACE,
                "--field-selector",
                &selector,
                "-o",
                "json",
            ],
            "",
        )?;
        let events: serde_json::Value = serde_json::from_str(&events.stdout)?;
        Ok(events["items"].as_array().cloned().unwrap_or_default())
    };
    let not_restartable = events_of("RotationNotRestartable")?;
    if not_restartable.len() != 1
        || not_restartable[0]["involvedObject"]["kind"] != "Job"
        || not_restartable[0]["involvedObject"]["name"] != "job"
    {
        return Err(anyhow!(
            "expected one RotationNotRestartable Event, on the Job: {not_restartable:?}"
        ));
    }
    let items = events_of("SecretRotated")?;
    let about_rolled = items
        .iter()
        .filter(|event| event["involvedObject"]["name"] == "rolled")
        .count();
    let names_the_secret = items.iter().all(|event| {
        event["message"]
            .as_str()
            .is_some_and(|message| message.contains("Secret rotating-db changed"))
    });
    if about_rolled != 1 || items.len() != 1 || !names_the_secret {
        return Err(anyhow!(
            "expected one SecretRotated Event, on the rolled Deployment, naming the Secret: {items:?}"
        ));
    }
    Ok(())
}

/// A Job of the app reading the binding through env, opted in, its pod holding its
/// connection: dbbind cannot roll it.
async fn apply_job(environment: &Environment) -> Result<String> {
    let annotations = json!({"dbbind.io/secret": "rotating-db", "dbbind.io/profile": "generic",
        "dbbind.io/restart-on-rotation": "true"});
    let ways = [Way {
        binding: "db".to_owned(),
        prefix: String::new(),
        kind: "postgres",
    }];
    let deployment = workload::app_deployment(
        "job",
        &annotations,
        &ways,
        SHARED_ADDRESS,
        &[GENERIC_HOST],
        json!({"restartPolicy": "Never"}),
    );
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job"},
        "spec": {"backoffLimit": 0, "template": deployment["spec"]["template"]}});
    let (name, _) = apply_and_wait_for_pod(environment, NAMESPACE, "job", &job).await?;
    let client = environment.plane.client().await?;
    workload::wait_running(
        &environment.plane,
        &environment.node,
        &client,
        NAMESPACE,
        &name,
    )
    .await?;
    Ok(name)
}

fn files_way() -> Way {
    Way {
        binding: "db".to_owned(),
        prefix: String::new(),
        kind: "files",
    }
}

/// A Deployment binding by files only, opted in: its container waits until the password file
/// changes, then connects with the files' contents and holds the connection.
async fn apply_files_app(environment: &Environment) -> Result<(String, String)> {
    let annotations = json!({"dbbind.io/secret": "rotating-db", "dbbind.io/profile": "generic",
        "dbbind.io/env": "none", "dbbind.io/files": "true",
        "dbbind.io/restart-on-rotation": "true"});
    let ways = [files_way()];
    let mut deployment = workload::app_deployment(
        "files",
        &annotations,
        &ways,
        SHARED_ADDRESS,
        &[GENERIC_HOST],
        json!({}),
    );
    let wait_for_change = "d=\"$SERVICE_BINDING_ROOT/db\"\nfirst=\"$(cat \"$d/password\")\"\n\
        while [ \"$(cat \"$d/password\")\" = \"$first\" ]; do sleep 1; done\n\
        echo \"PASSWORD FILE CHANGED\"\n";
    let script = format!(
        "{wait_for_change}{}",
        app::script("files", "app", &ways, Mode::Hold)
    );
    workload::run_script(
        &mut deployment["spec"]["template"]["spec"]["containers"][0],
        script,
    );
    apply_and_wait_for_pod(environment, NAMESPACE, "files", &deployment).await
}
