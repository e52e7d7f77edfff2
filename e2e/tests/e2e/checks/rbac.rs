//! The chart's rotation RBAC, asked of the API server.

use super::*;

/// The RBAC `rotation.enabled` adds, applied to the API server and asked with `kubectl auth
/// can-i --as` the chart's service account: every call the rotation controller makes is
/// allowed (list pods, get ReplicaSets, patch the three workload kinds, create Events, take and
/// renew its Lease), and neighbouring ones are not (delete or update workloads, another Lease,
/// a Lease elsewhere, writing Secrets).
pub async fn rotation_rbac(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-rbac";
    kubectl(environment, &["create", "namespace", namespace], "")?;
    let rendered = helm(
        environment,
        &[
            "template",
            "rbac",
            "charts/dbbind",
            "--namespace",
            namespace,
            "--kube-version",
            "1.36.3",
            "--set",
            "rotation.enabled=true",
        ],
    )?;
    for object in dbbind_e2e::yaml_documents(&rendered)? {
        let kind = object["kind"].as_str().unwrap_or_default();
        if [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ]
        .contains(&kind)
        {
            kubectl(
                environment,
                &["apply", "-n", namespace, "-f", "-"],
                &object.to_string(),
            )?;
        }
    }
    let account = format!("--as=system:serviceaccount:{namespace}:rbac-dbbind");
    let workloads = "e2e-rotation";
    let asks: [(&str, &str, &str, bool); 14] = [
        ("list", "pods", workloads, true),
        ("get", "replicasets.apps", workloads, true),
        ("patch", "deployments.apps", workloads, true),
        ("patch", "statefulsets.apps", workloads, true),
        ("patch", "daemonsets.apps", workloads, true),
        ("create", "events.events.k8s.io", workloads, true),
        ("create", "leases.coordination.k8s.io", namespace, true),
        (
            "get",
            "leases.coordination.k8s.io/rbac-dbbind-rotation",
            namespace,
            true,
        ),
        (
            "patch",
            "leases.coordination.k8s.io/rbac-dbbind-rotation",
            namespace,
            true,
        ),
        (
            "patch",
            "leases.coordination.k8s.io/another-lease",
            namespace,
            false,
        ),
        ("create", "leases.coordination.k8s.io", workloads, false),
        ("delete", "pods", workloads, false),
        ("update", "deployments.apps", workloads, false),
        ("patch", "secrets", workloads, false),
    ];
    let mut wrong = Vec::new();
    for (verb, resource, in_namespace, expected) in asks {
        let answer = environment.plane.kubectl_outcome(
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                in_namespace,
                &account,
            ],
            None,
        )?;
        let allowed = answer.stdout.trim() == "yes";
        if allowed != expected {
            wrong.push(format!(
                "{verb} {resource} in {in_namespace}: {} ({})",
                answer.stdout.trim(),
                answer.stderr.trim()
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("the chart's rotation RBAC is wrong: {wrong:?}"))
    }
}
