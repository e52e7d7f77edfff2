//! Lint and the values schema: every mode lints, bad values are refused, every value is declared.

use super::*;

#[test]
fn lint_passes_in_every_mode() {
    for sets in [
        vec![],
        vec!["certificates.mode=cert-manager"],
        vec![
            "certificates.mode=secret",
            "certificates.secret.name=tls",
            "certificates.secret.caBundle=Zm9v",
        ],
        vec![
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "watchNamespaces={shop,billing}",
        ],
        vec!["rotation.enabled=true"],
        vec![
            "rotation.enabled=true",
            "watchNamespaces={shop,billing}",
            "certificates.mode=cert-manager",
        ],
        vec![
            "hostNetwork=true",
            "ports.webhook=10250",
            "extraArgs={--max-connections=2048}",
            "extraEnv[0].name=KUBERNETES_SERVICE_HOST",
            "extraEnv[0].value=10.1.2.3",
            "networkPolicy.enabled=true",
            "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/16",
            "replicaCount=1",
        ],
    ] {
        let mut args = vec![
            "lint",
            "--strict",
            "charts/dbbind",
            "--kube-version",
            "1.36.3",
        ];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let output = helm(&args);
        assert!(
            output.status.success(),
            "{sets:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

#[test]
fn the_schema_refuses_bad_values() {
    for (set, message) in [
        (
            "certificates.mode=bogus",
            "value must be one of 'self-managed', 'cert-manager', 'secret'",
        ),
        (
            "webhook.failurePolicy=Sometimes",
            "value must be one of 'Fail', 'Ignore'",
        ),
        ("webhook.timeoutSeconds=60", "maximum"),
        (
            "webhoook.timeoutSeconds=5",
            "additional properties 'webhoook' not allowed",
        ),
        ("watchNamespaces={Shop}", "does not match pattern"),
        (
            "cacheScope=everything",
            "value must be one of 'optedIn', 'cluster'",
        ),
        ("rotation.enabled=yes", "got string, want boolean"),
        ("rotation.minInterval=soon", "does not match pattern"),
        ("hostNetwork=yes", "got string, want boolean"),
        ("ports.webhook=70000", "maximum"),
        ("extraArgs={serve}", "does not match pattern"),
        ("dnsPolicy=Sometimes", "value must be one of"),
        ("webhook.workloads.timeoutSeconds=2", "minimum"),
        ("networkPolicy.webhookFrom=10.0.0.0/8", "want array"),
        (
            "test.namespaces=shop",
            "additional properties 'namespaces' not allowed",
        ),
    ] {
        let error = render(&[set]).unwrap_err();
        assert!(error.contains(message), "{set}: {error}");
    }
}

/// Every leaf of values.yaml has a place in values.schema.json.
#[test]
fn every_value_is_in_the_schema() {
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("charts/dbbind/values.yaml")).unwrap(),
    )
    .unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/dbbind/values.schema.json")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(repo_root().join("charts/dbbind/README.md")).unwrap();
    fn walk(
        value: &Value,
        schema: &Value,
        path: String,
        readme: &str,
        seen: &mut BTreeSet<String>,
    ) {
        let Value::Object(map) = value else { return };
        for (key, child) in map {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let child_schema = &schema["properties"][key];
            assert!(
                child_schema.is_object(),
                "{child_path} is not in values.schema.json"
            );
            // Documented at this level, or with its children.
            assert!(
                readme.contains(&format!("`{child_path}")),
                "{child_path} is not in the chart README"
            );
            seen.insert(child_path.clone());
            if child_schema["properties"].is_object() {
                walk(child, child_schema, child_path, readme, seen);
            }
        }
    }
    let mut seen = BTreeSet::new();
    walk(&values, &schema, String::new(), &readme, &mut seen);
    assert!(seen.len() > 30, "{seen:?}");
}
