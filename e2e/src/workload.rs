//! Workloads on the real node: Deployments made to run the suite's app image (see
//! [`crate::app`]) on the host's network, and waits for what the node and the database report:
//! the pod Running, a container's waiting reason, a line in its log, the connections
//! PostgreSQL sees.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::Result;
use crate::app::{self, Mode, Way};
use crate::cluster::ControlPlane;
use crate::image::APP_IMAGE;
use crate::node::Node;
use crate::postgres::Postgres;

/// How long a pod may take to be scheduled and started: images are local, so this is the
/// kubelet's sync period with room for a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Puts a pod template's spec on the host's network, with `hosts` resolving to `address` (the
/// stand-in for cluster DNS), and a short grace period so tear-down is quick.
pub fn on_host_network(spec: &mut Value, address: &str, hosts: &[&str]) {
    spec["hostNetwork"] = json!(true);
    spec["dnsPolicy"] = json!("ClusterFirstWithHostNet");
    spec["terminationGracePeriodSeconds"] = json!(1);
    spec["hostAliases"] = json!([{"ip": address, "hostnames": hosts}]);
}

/// Makes a container run `script` in the app image. Its declared ports, probes and args go:
/// the checks listen on nothing, and on the host's network ports would be host ports, which
/// would not let the suite's pods share one node. Its env and mounts stay as written.
pub fn run_script(container: &mut Value, script: String) {
    container["image"] = json!(APP_IMAGE);
    container["imagePullPolicy"] = json!("Never");
    container["command"] = json!(["/bin/sh", "-c", script]);
    if let Some(container) = container.as_object_mut() {
        for field in ["args", "ports", "readinessProbe", "livenessProbe"] {
            container.remove(field);
        }
    }
}

/// A Deployment of one container `app` that reads its binding in each of `ways` and holds the
/// connections open, labelled `<name>/app/<binding>/<way>`. `pod_spec` is merged into the pod
/// spec (a securityContext, say).
pub fn app_deployment(
    name: &str,
    annotations: &Value,
    ways: &[Way],
    address: &str,
    hosts: &[&str],
    pod_spec: Value,
) -> Value {
    let mut container = json!({"name": "app"});
    run_script(&mut container, app::script(name, "app", ways, Mode::Hold));
    let mut spec = json!({"containers": [container]});
    on_host_network(&mut spec, address, hosts);
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), pod_spec) {
        spec.extend(extra);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": spec,
            },
        },
    })
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
            return Err(anyhow!(
                "no pod app={label} in {namespace} after 60s (check the ReplicaSet's events)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The namespace's workloads and events, for a failure message.
pub fn diagnose(plane: &ControlPlane, namespace: &str) -> String {
    let show = |args: &[&str]| {
        plane
            .kubectl_outcome(args, None)
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

/// The waiting reasons and messages of a pod's containers: `app: CreateContainerConfigError …`.
fn waiting(pod: &Pod) -> Vec<(String, String, String)> {
    let status = pod.status.clone().unwrap_or_default();
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            Some((
                c.name.clone(),
                waiting.reason.clone().unwrap_or_default(),
                waiting.message.clone().unwrap_or_default(),
            ))
        })
        .collect()
}

/// Waits until the pod runs; a pod the kubelet cannot start fails with its reason and logs.
pub async fn wait_running(
    plane: &ControlPlane,
    node: &Node,
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let pod = pods.get(name).await?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let containers_ready = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|all| {
                all.iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            });
        if phase == "Running" && containers_ready {
            return Ok(phase);
        }
        if phase == "Failed" || started.elapsed() > START_TIMEOUT {
            let spec = pod.spec.clone().unwrap_or_default();
            let logs: Vec<String> = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.name,
                        node.container_log(namespace, name, &c.name)
                    )
                })
                .collect();
            return Err(anyhow!(
                "pod {namespace}/{name} is {phase}, not Running: {:?}\n{}\nkubelet:\n{}\n{}",
                waiting(&pod),
                logs.join("\n"),
                node.kubelet_log_tail(15),
                diagnose(plane, namespace)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the kubelet reports container `container` of the pod waiting for `reason`;
/// returns the kubelet's message, as `kubectl describe pod` shows it.
pub async fn wait_waiting(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    container: &str,
    reason: &str,
) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let pod = pods.get(name).await?;
        let states = waiting(&pod);
        if let Some((_, _, message)) = states
            .iter()
            .find(|(c, r, _)| c == container && r == reason)
        {
            return Ok(message.clone());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(anyhow!(
                "container {container} of {namespace}/{name} never waited for {reason}; its states: {states:?}, status: {:?}",
                pod.status.and_then(|s| s.phase)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the container's log says `text`.
pub async fn wait_for_log(
    node: &Node,
    namespace: &str,
    pod: &str,
    container: &str,
    text: &str,
) -> Result<()> {
    wait_for_log_times(node, namespace, pod, container, text, 1).await
}

/// Waits until the container has logged `text` at least `times` times.
pub async fn wait_for_log_times(
    node: &Node,
    namespace: &str,
    pod: &str,
    container: &str,
    text: &str,
    times: usize,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let log = node.container_log(namespace, pod, container);
        if log.matches(text).count() >= times {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(anyhow!(
                "container {container} never logged {text:?} {times} times:\n{log}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One connection PostgreSQL must show: its `application_name`, and who it must be.
#[derive(Clone, Debug)]
pub struct Expected {
    pub label: String,
    pub user: String,
    pub database: String,
}

/// What PostgreSQL showed for an expected connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub user: String,
    pub database: String,
    pub tls: bool,
    /// The subject of the client certificate the connection presented; empty without one.
    pub client_dn: String,
}

/// Waits until PostgreSQL shows a connection under every expected label, then checks each is
/// the expected user on the expected database; returns what it saw, in the same order. `log`
/// gives the app's log for a failure message.
pub async fn wait_for_connections(
    postgres: &Postgres,
    expected: &[Expected],
    log: impl Fn() -> String,
) -> Result<Vec<Seen>> {
    let started = Instant::now();
    loop {
        let rows = postgres.sql(
            "SELECT a.application_name, a.usename, a.datname, s.ssl, coalesce(s.client_dn, '') FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE '%/%'",
        )?;
        let rows_split: Vec<Vec<&str>> = rows.lines().map(|row| row.split('|').collect()).collect();
        let found: Vec<Option<Seen>> = expected
            .iter()
            .map(|want| {
                rows_split
                    .iter()
                    .find(|row| row.len() == 5 && row[0] == want.label)
                    .map(|row| Seen {
                        user: row[1].to_owned(),
                        database: row[2].to_owned(),
                        tls: row[3] == "t",
                        client_dn: row[4].to_owned(),
                    })
            })
            .collect();
        if found.iter().all(Option::is_some) {
            let seen: Vec<Seen> = found.into_iter().flatten().collect();
            for (want, got) in expected.iter().zip(&seen) {
                if (got.user.as_str(), got.database.as_str())
                    != (want.user.as_str(), want.database.as_str())
                {
                    return Err(anyhow!(
                        "{}: PostgreSQL saw {} on {}, expected {} on {}",
                        want.label,
                        got.user,
                        got.database,
                        want.user,
                        want.database
                    ));
                }
            }
            return Ok(seen);
        }
        if started.elapsed() > Duration::from_secs(45) {
            let missing: Vec<&str> = expected
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(want, _)| want.label.as_str())
                .collect();
            return Err(anyhow!(
                "PostgreSQL never saw {missing:?}; it saw:\n{rows}\nthe app's log:\n{}",
                log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pod as sent, as far as dbbind could have changed it: no annotation dbbind writes, no
/// variable in any container or init container (the test pods define none), no dbbind volume
/// or mount.
pub fn untouched(pod: &Value) -> Result<()> {
    let annotations = pod["metadata"]["annotations"].as_object();
    let written = annotations
        .into_iter()
        .flatten()
        .any(|(key, _)| dbbind_core::keys::is_written_by_dbbind(key));
    let is_dbbind = |item: &Value| {
        item["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("dbbind"))
    };
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten());
    let mut changed = written
        || pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(is_dbbind);
    for container in containers {
        let mounts = container["volumeMounts"].as_array().into_iter().flatten();
        changed |= container.get("env").is_some()
            || container.get("envFrom").is_some()
            || mounts.into_iter().any(is_dbbind);
    }
    if changed {
        return Err(anyhow!("the pod was changed: {pod}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent() -> Value {
        json!({
            "metadata": {"annotations": {"dbbind.io/secret": "db", "team": "shop"}},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "app"}],
                "containers": [{"name": "app", "image": "app",
                    "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run"}]}],
                "volumes": [{"name": "kube-api-access-x"}],
            },
        })
    }

    #[test]
    fn a_pod_as_sent_is_untouched_and_any_trace_of_dbbind_is_not() {
        untouched(&sent()).unwrap();
        let mut status = sent();
        status["metadata"]["annotations"]["dbbind.io/status"] = json!("injected");
        let mut init_env = sent();
        init_env["spec"]["initContainers"][0]["env"] = json!([{"name": "PGHOST", "value": "h"}]);
        let mut second = sent();
        second["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "envFrom": [{"secretRef": {"name": "db"}}]}));
        let mut volume = sent();
        volume["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "dbbind-db"}));
        for changed in [status, init_env, second, volume] {
            assert!(untouched(&changed).is_err(), "{changed}");
        }
    }
}
