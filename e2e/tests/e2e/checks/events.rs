//! Warnings of controller-made pods as Events on their owners.

use super::*;

/// The warning a ReplicaSet's pod got shows on the ReplicaSet (`kubectl describe rs`); a dry
/// run records nothing.
pub async fn owner_events(environment: &mut Environment) -> Result<()> {
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &deployment("evented", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    let client = environment.plane.client().await?;
    let made = workload::wait_for_pod(&client, "e2e-checks", "evented").await?;
    let owner = made
        .metadata
        .owner_references
        .as_ref()
        .and_then(|owners| owners.first())
        .ok_or_else(|| anyhow!("the pod has no owner"))?;
    let warning = "dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out";
    let started = std::time::Instant::now();
    loop {
        let described = kubectl(
            environment,
            &["describe", "replicaset", &owner.name, "-n", "e2e-checks"],
            "",
        )?;
        if described.stdout.contains("BindingWarning") && described.stdout.contains(warning) {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(anyhow!(
                "no BindingWarning on ReplicaSet {}:\n{}",
                owner.name,
                described.stdout
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A dry run of a pod the same ReplicaSet owns, with a warning of its own: no Event.
    let mut dry: Value = serde_json::from_str(&pod(
        "dry-evented",
        &[
            ("dbbind.io/secret", "dry-only"),
            ("dbbind.io/profile", "generic"),
        ],
    ))
    .map_err(|e| anyhow!("{e}"))?;
    dry["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner.name, "uid": owner.uid,
    }]);
    let created = kubectl(
        environment,
        &["create", "--dry-run=server", "-n", "e2e-checks", "-f", "-"],
        &dry.to_string(),
    )?;
    if !created.stderr.contains("\"dry-only\" not found") {
        return Err(anyhow!("the dry run got no warning: {}", created.stderr));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = kubectl(
        environment,
        &["get", "events", "-n", "e2e-checks", "-o", "json"],
        "",
    )?;
    if events.stdout.contains("dry-only") {
        return Err(anyhow!("a dry run recorded an Event"));
    }
    kubectl(
        environment,
        &["delete", "deployment", "evented", "-n", "e2e-checks"],
        "",
    )?;
    Ok(())
}
