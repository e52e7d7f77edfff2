//! dbbind as a platform team installs it: the chart, by `helm install`, onto the node, serving
//! as pods behind its Service. The image is the one the node has (see [`crate::image`]), under
//! the name the chart pulls by default; the only values set are the ones this test bed's network
//! needs (see [`Release::network_values`]), each one that real clusters without kube-proxy set
//! too. Helpers read what the replicas report: their metrics (through each pod's address on the
//! bridge) and their logs (the kubelet's files).

use anyhow::anyhow;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use crate::Result;
use crate::cluster::{ControlPlane, KubectlOutput};
use crate::node::Node;
use crate::tools;

/// `helm install dbbind charts/dbbind --namespace dbbind`, as the README says.
pub const RELEASE: &str = "dbbind";
pub const NAMESPACE: &str = "dbbind";
/// The replicas' labels (the chart's selector labels).
pub const SELECTOR: &str = "app.kubernetes.io/name=dbbind,app.kubernetes.io/instance=dbbind";
/// dbbind's container in its pods.
pub const CONTAINER: &str = "dbbind";
/// The admin port (`ports.admin`): metrics, readiness.
pub const ADMIN_PORT: u16 = 9090;

/// `helm install …` as the README writes it; the suite adds only [`Release::network_values`].
pub const INSTALL: &[&str] = &[
    "install",
    RELEASE,
    "charts/dbbind",
    "--namespace",
    NAMESPACE,
    "--create-namespace",
    "--wait",
];

/// An installed release of the chart.
pub struct Release {
    /// The values given to `helm install`, as `--set-json` arguments.
    pub values: Vec<String>,
    kubeconfig: std::path::PathBuf,
}

/// One of dbbind's pods.
#[derive(Clone, Debug)]
pub struct Replica {
    pub name: String,
    pub ip: String,
}

impl Release {
    /// What this test bed's network needs and nothing else: where dbbind's pods reach the API
    /// server. There is no kube-proxy here (see [`crate::network`]), so the `kubernetes`
    /// Service's ClusterIP the kubelet hands every pod leads nowhere; kube-proxy-free clusters
    /// give their components the API server's address the same way.
    pub fn network_values(plane: &ControlPlane) -> Result<Vec<String>> {
        let (host, port) = plane.address()?;
        Ok(vec![
            "--set-json".to_owned(),
            format!(
                r#"extraEnv=[{{"name":"KUBERNETES_SERVICE_HOST","value":"{host}"}},{{"name":"KUBERNETES_SERVICE_PORT","value":"{port}"}}]"#
            ),
        ])
    }

    /// `helm install dbbind charts/dbbind --namespace dbbind --create-namespace --wait`, with
    /// [`Release::network_values`] and `more` values; fails with Helm's error and what the
    /// release's pods and events show.
    pub fn install(plane: &ControlPlane, node: &Node, more: &[&str]) -> Result<Release> {
        let mut values = Release::network_values(plane)?;
        values.extend(more.iter().map(|value| (*value).to_owned()));
        let release = Release {
            values,
            kubeconfig: plane.kubeconfig.clone(),
        };
        let mut args = INSTALL.to_vec();
        args.extend(["--timeout", "3m"]);
        args.extend(release.values.iter().map(String::as_str));
        release.helm_checked(&args, plane, node)?;
        Ok(release)
    }

    /// Runs helm against the cluster, from the repository root: (success, stdout, stderr).
    pub fn helm(&self, args: &[&str]) -> Result<KubectlOutput> {
        let output = Command::new(tools::k8s_bin_dir()?.join("helm"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .current_dir(tools::repo_root())
            .output()?;
        Ok(KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// [`Release::helm`], failing with Helm's error and the release's state.
    pub fn helm_checked(&self, args: &[&str], plane: &ControlPlane, node: &Node) -> Result<String> {
        let output = self.helm(args)?;
        if output.success {
            return Ok(output.stdout);
        }
        Err(anyhow!(
            "helm {}: {}\n{}\nkubelet:\n{}",
            args.join(" "),
            output.stderr,
            crate::workload::diagnose(plane, NAMESPACE),
            node.kubelet_log_tail(20)
        ))
    }

    /// `helm upgrade dbbind charts/dbbind --reuse-values --wait` with `more` values.
    pub fn upgrade(&self, plane: &ControlPlane, node: &Node, more: &[&str]) -> Result<String> {
        let mut args = vec![
            "upgrade",
            RELEASE,
            "charts/dbbind",
            "--namespace",
            NAMESPACE,
            "--reuse-values",
            "--wait",
            "--timeout",
            "3m",
        ];
        args.extend(more);
        self.helm_checked(&args, plane, node)
    }

    /// `helm test dbbind`: the chart's test hook (`dbbind selftest`), with its output.
    pub fn test(&self, plane: &ControlPlane, node: &Node) -> Result<String> {
        self.helm_checked(
            &[
                "test",
                RELEASE,
                "--namespace",
                NAMESPACE,
                "--logs",
                "--timeout",
                "2m",
            ],
            plane,
            node,
        )
    }

    /// The replicas that are running and ready, with their pod addresses.
    pub async fn replicas(client: &kube::Client) -> Result<Vec<Replica>> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let listed = pods.list(&ListParams::default().labels(SELECTOR)).await?;
        Ok(listed
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none() && ready(pod))
            .filter_map(|pod| {
                Some(Replica {
                    name: pod.metadata.name?,
                    ip: pod.status?.pod_ip?,
                })
            })
            .collect())
    }

    /// Waits until `count` replicas are running and ready.
    pub async fn wait_replicas(client: &kube::Client, count: usize) -> Result<Vec<Replica>> {
        let started = Instant::now();
        loop {
            let replicas = Release::replicas(client).await?;
            if replicas.len() == count {
                return Ok(replicas);
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(anyhow!(
                    "{} of {count} dbbind replicas ready after 120 s",
                    replicas.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The sum over the ready replicas of a metric's samples whose line starts with `prefix`
    /// (a name, or a name and the start of its labels).
    pub async fn metric_sum(client: &kube::Client, prefix: &str) -> Result<u64> {
        let mut sum = 0;
        for replica in Release::replicas(client).await? {
            sum += replica.metric_sum(prefix)?;
        }
        Ok(sum)
    }

    /// The Pod webhook's `dbbind_admission_requests_total`, over outcomes and replicas.
    pub async fn requests_total(client: &kube::Client) -> Result<u64> {
        Release::metric_sum(
            client,
            "dbbind_admission_requests_total{webhook=\"mutate\",",
        )
        .await
    }

    /// Every dbbind container's log on the node, present and past pods alike (until the
    /// kubelet removes a deleted pod's logs).
    pub fn logs(node: &Node) -> String {
        node.namespace_logs(NAMESPACE, CONTAINER)
    }
}

impl Replica {
    /// A plain-HTTP GET on the replica's admin port, at its pod address: (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        crate::webhook::admin_get(&self.ip, ADMIN_PORT, path)
    }

    /// The sum of this replica's samples whose line starts with `prefix`.
    pub fn metric_sum(&self, prefix: &str) -> Result<u64> {
        let (_, metrics) = self.admin_get("/metrics")?;
        Ok(metrics
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as u64)
            .sum())
    }
}

/// Whether every container of the pod is ready.
fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .is_some_and(|all| !all.is_empty() && all.iter().all(|c| c.ready))
}
