//! dbbind stopped: SIGTERM drains, then opted-in pods fail closed.

use super::*;

/// With the chart uninstalled, dbbind as a process beside the cluster (registered by URL through
/// `webhook-config/`'s configurations), so its exit status and whole log can be read: after
/// SIGTERM it drains and exits 0; then opted-in pods fail closed, other namespaces and plain
/// pods are unaffected, and Deployments still apply (the workload check fails open).
pub async fn stopped(environment: &mut Environment) -> Result<()> {
    let mut dbbind = Dbbind::start(&environment.plane)?;
    dbbind.register(&environment.plane)?;
    // The API server sees the new registration within a moment: a pod bound through it.
    let started = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("through-process-{attempt}");
        kubectl(
            environment,
            &["apply", "-n", "e2e-checks", "-f", "-"],
            &pod(&name, &[("dbbind.io/secret", "orders-db-conn")]),
        )?;
        let created = get_pod(environment, "e2e-checks", &name)?;
        if created["metadata"]["annotations"]["dbbind.io/status"] == "injected" {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(anyhow!("the process's registration never bound a pod"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = dbbind.terminate()?;
    if !status.success() {
        return Err(anyhow!(
            "dbbind exited with {status} after SIGTERM:\n{}",
            dbbind.log()
        ));
    }
    let log = dbbind.log();
    for line in [
        "SIGTERM received",
        "shutting down: readiness is false, draining",
        "in-flight requests finished",
    ] {
        if !log.contains(line) {
            return Err(anyhow!("dbbind's log lacks {line:?}:\n{log}"));
        }
    }
    let refused = environment.plane.kubectl_outcome(
        &["apply", "-n", "e2e-checks", "-f", "-"],
        Some(&pod(
            "while-down",
            &[("dbbind.io/secret", "orders-db-conn")],
        )),
    )?;
    if refused.success
        || !refused
            .stderr
            .contains("failed calling webhook \"bind.dbbind.io\"")
    {
        return Err(anyhow!(
            "expected the webhook failure; stderr: {}",
            refused.stderr
        ));
    }
    kubectl(
        environment,
        &["apply", "-n", "e2e-unlabelled", "-f", "-"],
        &pod("elsewhere", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("plain-while-down", &[]),
    )?;
    // The workload check fails open: applying a Deployment still works.
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &deployment(
            "applied-while-down",
            &[("dbbind.io/secret", "orders-db-conn")],
        ),
    )?;
    Ok(())
}
