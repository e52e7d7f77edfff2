//! Kyverno's admission controller as a process beside the harness's API server, run out of
//! cluster as Kyverno's DEVELOPMENT.md describes ("Debugging local code"): its CRDs from the
//! module's `config/crds`, its namespace and configuration ConfigMaps, and `cmd/kyverno` with
//! `--kubeconfig` and `--serverIP`, so it registers its webhooks by URL on 127.0.0.1. Built by
//! `scripts/kyverno`; used by the side-by-side benchmark only.

use anyhow::anyhow;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Result;
use crate::cluster::ControlPlane;
use crate::process::Daemon;
use crate::tools::{free_port, repo_root};
use crate::webhook::rss_kib;

pub struct Kyverno {
    process: Daemon,
    /// From start until the policy's mutating webhook was registered.
    pub ready_after: Duration,
}

/// The module directory and the binary, built when missing.
fn build() -> Result<(PathBuf, PathBuf)> {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/kyverno"))
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = stdout.lines();
    match (output.status.success(), lines.next(), lines.next()) {
        (true, Some(module), Some(binary)) => Ok((module.into(), binary.into())),
        _ => Err(anyhow!(
            "scripts/kyverno failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

fn kubectl(plane: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Result<String> {
    Ok(plane.kubectl_run(args, stdin)?.stdout)
}

impl Kyverno {
    /// Installs the CRDs and configuration, starts the controller, applies
    /// `e2e/bench/kyverno-policy.yaml` and waits until Kyverno has registered a mutating
    /// webhook for it.
    pub fn start(plane: &ControlPlane) -> Result<Kyverno> {
        let (module, binary) = build()?;
        for group in ["kyverno", "policies.kyverno.io", "policyreport", "reports"] {
            let dir = module.join("config/crds").join(group);
            let dir = dir.to_string_lossy();
            kubectl(plane, &["apply", "--server-side", "-f", &dir], None)?;
        }
        kubectl(
            plane,
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
            None,
        )?;
        kubectl(plane, &["create", "namespace", "kyverno"], None)?;
        for config in ["kyverno", "kyverno-metrics"] {
            kubectl(
                plane,
                &["create", "configmap", config, "-n", "kyverno"],
                None,
            )?;
        }
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
            .arg(format!("--serverIP=127.0.0.1:{port}"))
            .arg(format!("--webhookServerPort={port}"))
            .arg(format!("--metricsPort={}", free_port()?))
            .arg("--controllerRuntimeMetricsAddress=0")
            .arg("--backgroundServiceAccountName=system:serviceaccount:kyverno:kyverno-background-controller")
            .arg("--reportsServiceAccountName=system:serviceaccount:kyverno:kyverno-reports-controller")
            .arg("--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca")
            .arg("--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair")
            .env("KYVERNO_NAMESPACE", "kyverno")
            .env("KYVERNO_SERVICEACCOUNT_NAME", "kyverno-admission-controller")
            .env("KYVERNO_DEPLOYMENT", "dummy")
            .env("KYVERNO_POD_NAME", "dummy")
            .env("INIT_CONFIG", "kyverno")
            .env("METRICS_CONFIG", "kyverno-metrics");
        let started = Instant::now();
        let mut process = Daemon::start("kyverno", command, plane.dir.path())?;
        let policy = std::fs::read_to_string(repo_root().join("e2e/bench/kyverno-policy.yaml"))?;
        // The CRD's validating webhook belongs to Kyverno: apply once it answers.
        loop {
            process.check_running()?;
            if plane
                .kubectl_outcome(&["apply", "-f", "-"], Some(&policy))
                .is_ok_and(|o| o.success)
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(180) {
                return Err(anyhow!(
                    "Kyverno did not accept the policy:\n{}",
                    process.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let kyverno = loop {
            process.check_running()?;
            let url = Self::url_in(plane).unwrap_or_default();
            if !url.is_empty() {
                break Kyverno {
                    process,
                    ready_after: started.elapsed(),
                };
            }
            if started.elapsed() > Duration::from_secs(240) {
                return Err(anyhow!(
                    "Kyverno registered no mutating webhook for Pods:\n{}",
                    process.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        Ok(kyverno)
    }

    /// The URL of the mutating webhook Kyverno registered for the policy's Pods.
    pub fn mutate_url(&self, plane: &ControlPlane) -> Result<String> {
        Self::url_in(plane)
    }

    fn url_in(plane: &ControlPlane) -> Result<String> {
        let text = kubectl(
            plane,
            &["get", "mutatingwebhookconfigurations", "-o", "json"],
            None,
        )?;
        let list: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{e}"))?;
        let url = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|config| {
                config["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with("kyverno-resource-mutating"))
            })
            .flat_map(|config| config["webhooks"].as_array().cloned().unwrap_or_default())
            .find(|webhook| {
                webhook["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        rule["resources"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|resource| resource == "pods")
                    })
            })
            .and_then(|webhook| webhook["clientConfig"]["url"].as_str().map(str::to_owned));
        url.ok_or_else(|| anyhow!("no Kyverno mutating webhook for pods yet"))
    }

    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(
            self.process
                .pid()
                .ok_or_else(|| anyhow!("Kyverno is not running"))?,
        )
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
