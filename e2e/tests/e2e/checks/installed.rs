//! dbbind as users install it (docs/design.md §11): the chart's two replicas on the node,
//! serving through their Service, checked where a platform team would look. Their worst
//! minutes are in `under_load`.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use dbbind_e2e::Result;
use dbbind_e2e::network::KUBERNETES_SERVICE_IP;
use dbbind_e2e::release::{self, Release, Replica};
use dbbind_e2e::scenarios::{self, Environment};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;

use super::kubectl;

pub(super) fn object(environment: &Environment, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let output = kubectl(environment, &args, "")?;
    Ok(serde_json::from_str(&output.stdout)?)
}

/// The chart's replicas, read as a platform team would: running under runc as 65532 with a
/// read-only root, on pod addresses; the webhooks registered by Service with a caBundle the pods
/// wrote; the certificate Secret made by the pods under the chart's RBAC; the Service's
/// endpoints; the safety net on the Service range; and `helm test`.
pub async fn serves_from_its_own_pods(environment: &mut Environment) -> Result<()> {
    let client = environment.plane.client().await?;
    let replicas = Release::wait_replicas(&client, 2).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), release::NAMESPACE);
    let subnet = environment
        .network
        .subnet
        .trim_end_matches("0/24")
        .to_owned();
    for replica in &replicas {
        let pod = pods.get(&replica.name).await?;
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.host_network == Some(true) || !replica.ip.starts_with(&subnet) {
            return Err(anyhow!(
                "{} is not on the pod network ({}): {}",
                replica.name,
                environment.network.subnet,
                replica.ip
            ));
        }
        let pid = container_pid(environment, &pod)?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        if cmdline != b"/dbbind\0serve\0" {
            return Err(anyhow!(
                "{}'s process is not the image's /dbbind serve: {:?}",
                replica.name,
                String::from_utf8_lossy(&cmdline)
            ));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        for id in ["Uid:", "Gid:"] {
            let ids: Vec<&str> = status
                .lines()
                .find(|line| line.starts_with(id))
                .map(|line| line.split_whitespace().skip(1).collect())
                .unwrap_or_default();
            if ids != ["65532"; 4] {
                return Err(anyhow!(
                    "{} runs with {id} {ids:?}, not 65532",
                    replica.name
                ));
            }
        }
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root = mounts
            .lines()
            .find(|line| line.split_whitespace().nth(4) == Some("/"))
            .and_then(|line| line.split_whitespace().nth(5))
            .unwrap_or_default();
        if !root.split(',').any(|option| option == "ro") {
            return Err(anyhow!(
                "{}'s root filesystem is mounted {root:?}, not read-only",
                replica.name
            ));
        }
    }

    // Registered by Service, trusting the CA the pods keep in their certificate Secret.
    let secret = object(
        environment,
        &["get", "secret", "dbbind-tls", "-n", release::NAMESPACE],
    )?;
    let bundle = secret["data"]["ca-bundle.crt"].as_str().unwrap_or_default();
    if secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "dbbind"
        || !secret["metadata"]["annotations"]["meta.helm.sh/release-name"].is_null()
        || bundle.is_empty()
    {
        return Err(anyhow!(
            "the certificate Secret was not made by dbbind's pods: {}",
            secret["metadata"]
        ));
    }
    for (kind, name) in [
        ("mutatingwebhookconfiguration", "dbbind"),
        ("validatingwebhookconfiguration", "dbbind-workloads"),
    ] {
        let config = object(environment, &["get", kind, name])?;
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            let client_config = &webhook["clientConfig"];
            if client_config["service"]["name"] != "dbbind"
                || client_config["service"]["namespace"] != "dbbind"
                || client_config["service"]["port"] != 443
                || !client_config["url"].is_null()
                || client_config["caBundle"] != bundle
            {
                return Err(anyhow!(
                    "{kind} {name}'s {} is not registered by Service with the pods' CA: {client_config}",
                    webhook["name"]
                ));
            }
        }
    }

    // The Service's endpoints are the two pods.
    let mut addresses = ready_endpoints(environment)?;
    addresses.sort();
    let mut ips: Vec<String> = replicas.iter().map(|r| r.ip.clone()).collect();
    ips.sort();
    if addresses != ips {
        return Err(anyhow!(
            "the Service's ready endpoints {addresses:?} are not the replicas {ips:?}"
        ));
    }

    // Nothing is routed to a ClusterIP here: a connection to one fails at once on the machine.
    let service = object(
        environment,
        &["get", "service", "dbbind", "-n", release::NAMESPACE],
    )?;
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap_or_default();
    for address in [cluster_ip, KUBERNETES_SERVICE_IP] {
        let started = Instant::now();
        let connected = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect((address, 443)),
        )
        .await;
        let failed_at_once =
            matches!(&connected, Ok(Err(error)) if error.raw_os_error() == Some(113));
        if !failed_at_once || started.elapsed() > Duration::from_secs(1) {
            return Err(anyhow!(
                "a connection to ClusterIP {address}:443 did not fail at once with no route to host: {connected:?} after {:?}",
                started.elapsed()
            ));
        }
    }

    // The chart's own test: a dry-run Pod through the API server comes back bound (its Secret
    // need not exist).
    scenarios::opted_in_namespace(&environment.plane, "e2e-helm-test")?;
    helm_test_binds(environment, "after the install")
}

/// `helm test`: the chart's test Pod reports a dry-run Pod bound.
pub(super) fn helm_test_binds(environment: &Environment, when: &str) -> Result<()> {
    let tested = environment
        .dbbind
        .test(&environment.plane, &environment.node)?;
    if tested.contains("dbbind bound a Pod") {
        Ok(())
    } else {
        Err(anyhow!(
            "helm test {when} did not report a binding:\n{tested}"
        ))
    }
}

/// The host pid of a pod's dbbind container, from runc's state.
pub(super) fn container_pid(environment: &Environment, pod: &Pod) -> Result<u32> {
    let id = pod
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|c| c.name == release::CONTAINER))
        .and_then(|status| status.container_id.clone())
        .ok_or_else(|| anyhow!("the dbbind container has no id yet"))?;
    environment
        .node
        .container_pid(id.trim_start_matches("containerd://"))
}

/// The replicas' pod names, sorted.
pub(super) fn names(replicas: &[Replica]) -> Vec<String> {
    let mut names: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names
}

/// The Service's ready endpoint addresses.
pub(super) fn ready_endpoints(environment: &Environment) -> Result<Vec<String>> {
    let slices = object(
        environment,
        &[
            "get",
            "endpointslices",
            "-n",
            release::NAMESPACE,
            "-l",
            "kubernetes.io/service-name=dbbind",
        ],
    )?;
    Ok(slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|endpoint| endpoint["conditions"]["ready"] == true)
        .filter_map(|endpoint| endpoint["addresses"][0].as_str().map(str::to_owned))
        .collect())
}

/// A replica's resident memory, in MiB.
pub(super) async fn rss_mib(environment: &Environment, replica: &Replica) -> Result<u64> {
    let client = environment.plane.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, release::NAMESPACE);
    let pid = container_pid(environment, &pods.get(&replica.name).await?)?;
    Ok(dbbind_e2e::webhook::rss_kib(pid)? / 1024)
}

/// The certificate Secret's CA and serving certificate, and both caBundles.
pub(super) fn certificates(environment: &Environment) -> Result<Vec<String>> {
    let secret = object(
        environment,
        &["get", "secret", "dbbind-tls", "-n", release::NAMESPACE],
    )?;
    let mut seen: Vec<String> = ["ca.crt", "tls.crt", "ca-bundle.crt"]
        .iter()
        .map(|key| secret["data"][key].as_str().unwrap_or_default().to_owned())
        .collect();
    for (kind, name) in [
        ("mutatingwebhookconfiguration", "dbbind"),
        ("validatingwebhookconfiguration", "dbbind-workloads"),
    ] {
        let config = object(environment, &["get", kind, name])?;
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            seen.push(
                webhook["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    Ok(seen)
}

/// A GitOps tool's way with the same release: `helm template` with the release's values,
/// `kubectl apply`. The certificates and caBundles stay as `before`, no replica is replaced, and
/// every field the chart renders is live as rendered (dbbind changes nothing of it; the
/// caBundles it keeps are not rendered).
pub(super) async fn gitops_apply_changes_nothing(
    environment: &Environment,
    before: &[String],
) -> Result<()> {
    // The same release rendered and applied as a GitOps tool does.
    let values = environment.dbbind.helm(&[
        "get",
        "values",
        release::RELEASE,
        "-n",
        release::NAMESPACE,
        "-o",
        "json",
    ])?;
    let values_file = tempfile::NamedTempFile::new()?;
    std::fs::write(values_file.path(), &values.stdout)?;
    let rendered = environment.dbbind.helm(&[
        "template",
        release::RELEASE,
        "charts/dbbind",
        "--namespace",
        release::NAMESPACE,
        "--no-hooks",
        // What a GitOps tool passes: the cluster's version (the chart requires 1.30 or later).
        "--kube-version",
        "1.36.3",
        "-f",
        &values_file.path().display().to_string(),
    ])?;
    if !rendered.success {
        return Err(anyhow!("helm template: {}", rendered.stderr));
    }
    // Not the Deployment's generation: kubectl's last-applied annotation alone bumps it.
    let client = environment.plane.client().await?;
    let pods_before = names(&Release::replicas(&client).await?);
    kubectl(
        environment,
        &["apply", "-n", release::NAMESPACE, "-f", "-"],
        &rendered.stdout,
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if certificates(environment)? != before {
        return Err(anyhow!(
            "kubectl apply of the rendered release changed the certificates or a caBundle"
        ));
    }
    let pods_after = names(&Release::replicas(&client).await?);
    if pods_after != pods_before {
        return Err(anyhow!(
            "kubectl apply of the rendered release rolled dbbind: {pods_before:?} -> {pods_after:?}"
        ));
    }
    for rendered_object in dbbind_e2e::yaml_documents(&rendered.stdout)? {
        let kind = rendered_object["kind"].as_str().unwrap_or_default();
        let name = rendered_object["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        let mut args = vec!["get", kind, name];
        if rendered_object["metadata"]["namespace"].is_string() {
            args.extend(["-n", release::NAMESPACE]);
        }
        let live = object(environment, &args)?;
        if let Some(path) = first_difference(&rendered_object, &live, String::new()) {
            return Err(anyhow!(
                "{kind} {name}: live {path} is not what the chart renders"
            ));
        }
    }
    Ok(())
}

/// The first path where `rendered` has a value `live` does not (lists by index, numbers and
/// strings compared as text, as the API server may normalise either).
fn first_difference(rendered: &Value, live: &Value, path: String) -> Option<String> {
    match rendered {
        Value::Object(fields) => fields.iter().find_map(|(key, value)| {
            first_difference(value, &live[key.as_str()], format!("{path}/{key}"))
        }),
        Value::Array(items) => {
            let live_items = live.as_array()?;
            if live_items.len() != items.len() {
                return Some(path);
            }
            items
                .iter()
                .zip(live_items)
                .enumerate()
                .find_map(|(index, (r, l))| first_difference(r, l, format!("{path}/{index}")))
        }
        Value::Null => None,
        scalar => {
            let text = |value: &Value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (text(scalar) != text(live)).then_some(path)
        }
    }
}
