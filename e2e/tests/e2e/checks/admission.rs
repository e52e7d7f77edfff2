//! What the Pod webhook leaves alone, and what kubectl shows: namespaces and pods that do not ask, warnings and denials, workload templates checked at apply, server-side dry runs.

use super::*;

pub async fn unlabelled_namespace(environment: &mut Environment) -> Result<()> {
    kubectl(environment, &["create", "namespace", "e2e-unlabelled"], "")?;
    apply_secret(environment, "external-generic", "e2e-unlabelled", None)?;
    let client = environment.plane.client().await?;
    let before = Release::requests_total(&client).await?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-unlabelled", "-f", "-"],
        &pod("asks", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    untouched(&get_pod(environment, "e2e-unlabelled", "asks")?)?;
    if Release::requests_total(&client).await? != before {
        return Err(anyhow!(
            "the namespaceSelector let an unlabelled namespace's pod through"
        ));
    }
    Ok(())
}

pub async fn opted_out_pod(environment: &mut Environment) -> Result<()> {
    scenarios::opted_in_namespace(&environment.plane, "e2e-checks")?;
    apply_secret(environment, "external-generic", "e2e-checks", None)?;
    // The pod carries dbbind.io/ annotations, so matchConditions send it to dbbind: untouched
    // must be dbbind's answer, not the webhook being skipped.
    let client = environment.plane.client().await?;
    let before = Release::requests_total(&client).await?;
    let manifest = pod(
        "opted-out",
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/inject", "false"),
        ],
    );
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &manifest,
    )?;
    untouched(&get_pod(environment, "e2e-checks", "opted-out")?)?;
    let after = Release::requests_total(&client).await?;
    if after <= before {
        return Err(anyhow!(
            "dbbind's request counter stayed at {before}: the opted-out pod never reached dbbind"
        ));
    }
    Ok(())
}

pub async fn plain_pod(environment: &mut Environment) -> Result<()> {
    let client = environment.plane.client().await?;
    let before = Release::requests_total(&client).await?;
    kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("plain", &[("team", "shop")]),
    )?;
    untouched(&get_pod(environment, "e2e-checks", "plain")?)?;
    let after = Release::requests_total(&client).await?;
    if after != before {
        return Err(anyhow!(
            "dbbind's request counter moved from {before} to {after}: matchConditions did not filter"
        ));
    }
    Ok(())
}

pub async fn kubectl_messages(environment: &mut Environment) -> Result<()> {
    let applied = kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &pod("warned", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    let warning = "Warning: dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out";
    if !applied.stderr.contains(warning) {
        return Err(anyhow!(
            "kubectl did not show the warning; stderr: {}",
            applied.stderr
        ));
    }
    let denied = environment.plane.kubectl_outcome(
        &["apply", "-n", "e2e-checks", "-f", "-"],
        Some(&pod(
            "denied",
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/port", "abc"),
            ],
        )),
    )?;
    let message = "admission webhook \"bind.dbbind.io\" denied the request: dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)";
    if denied.success || !denied.stderr.contains(message) {
        return Err(anyhow!("expected the denial; stderr: {}", denied.stderr));
    }
    Ok(())
}

/// What a user sees at `kubectl apply` of a Deployment: its template's mistakes deny it (and
/// nothing is created), a Secret that is not there yet is a warning.
pub async fn workload_templates(environment: &mut Environment) -> Result<()> {
    let typo = deployment(
        "orders2",
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/profile", "cnpgg"),
        ],
    );
    let message = "admission webhook \"workloads.dbbind.io\" denied the request: dbbind: annotation \"dbbind.io/profile\": unknown profile \"cnpgg\"";
    for dry_run in [true, false] {
        let mut args = vec!["apply", "-n", "e2e-checks", "-f", "-"];
        if dry_run {
            args.push("--dry-run=server");
        }
        let denied = environment.plane.kubectl_outcome(&args, Some(&typo))?;
        if denied.success || !denied.stderr.contains(message) {
            return Err(anyhow!(
                "expected the denial (dry run: {dry_run}); stderr: {}",
                denied.stderr
            ));
        }
    }
    let left = environment
        .plane
        .kubectl_outcome(&["get", "deployment", "orders2", "-n", "e2e-checks"], None)?;
    if left.success || !left.stderr.contains("NotFound") {
        return Err(anyhow!("the denied Deployment was created"));
    }

    let warned = kubectl(
        environment,
        &["apply", "-n", "e2e-checks", "-f", "-"],
        &deployment(
            "orders-later",
            &[
                ("dbbind.io/secret", "applied-later"),
                ("dbbind.io/profile", "generic"),
            ],
        ),
    )?;
    let warning = "Warning: dbbind: Secret \"applied-later\" not found in namespace \"e2e-checks\"; the pod refers to it through profile \"generic\" and starts once it exists";
    if !warned.stderr.contains(warning) || !warned.stdout.contains("created") {
        return Err(anyhow!(
            "expected the Deployment created with the warning; stdout: {}; stderr: {}",
            warned.stdout,
            warned.stderr
        ));
    }
    // The template is stored as applied: the check never patches.
    let stored = kubectl(
        environment,
        &[
            "get",
            "deployment",
            "orders-later",
            "-n",
            "e2e-checks",
            "-o",
            "json",
        ],
        "",
    )?;
    let stored: Value = serde_json::from_str(&stored.stdout).map_err(|e| anyhow!("{e}"))?;
    let template = &stored["spec"]["template"];
    if template["metadata"]["annotations"]
        .get("dbbind.io/status")
        .is_some()
        || template["spec"]["containers"][0].get("env").is_some()
    {
        return Err(anyhow!("the template was changed: {template}"));
    }
    kubectl(
        environment,
        &["delete", "deployment", "orders-later", "-n", "e2e-checks"],
        "",
    )?;
    Ok(())
}

pub async fn dry_run(environment: &mut Environment) -> Result<()> {
    let created = kubectl(
        environment,
        &[
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-n",
            "e2e-checks",
            "-f",
            "-",
        ],
        &pod("dry", &[("dbbind.io/secret", "orders-db-conn")]),
    )?;
    let pod: Value = serde_json::from_str(&created.stdout).map_err(|e| anyhow!("{e}"))?;
    if pod["spec"]["containers"][0]["env"][0]["name"] != "POSTGRES_HOST" {
        return Err(anyhow!("the dry run was not patched: {pod}"));
    }
    let left = environment
        .plane
        .kubectl_outcome(&["get", "pod", "dry", "-n", "e2e-checks"], None)?;
    if left.success || !left.stderr.contains("NotFound") {
        return Err(anyhow!("the dry run left a pod behind"));
    }
    Ok(())
}
