//! The Helm chart, offline: lint, the objects each certificate mode renders, the values schema,
//! and the plain manifests in webhook-config/ kept in step with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

use dbbind_e2e::tools::{k8s_bin_dir, repo_root};
use serde_json::{Value, json};

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(k8s_bin_dir().unwrap().join("helm"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

/// `helm template` with these `--set` values: the objects, or helm's error.
fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec![
        "template",
        "dbbind",
        "charts/dbbind",
        "--namespace",
        "dbbind",
        "--kube-version",
        "1.36.3",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = helm(&args);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(yaml_documents(&String::from_utf8_lossy(&output.stdout)))
}

fn yaml_documents(text: &str) -> Vec<Value> {
    dbbind_e2e::yaml_documents(text).unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}

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
fn the_default_install_is_self_managed_and_locked_down() {
    let objects = render(&[]).unwrap();
    let (hooks, objects): (Vec<Value>, Vec<Value>) = objects
        .into_iter()
        .partition(|o| o["metadata"]["annotations"]["helm.sh/hook"].is_string());
    // No Secret: dbbind creates its certificate Secret itself (a templated one would be
    // emptied by the next upgrade's three-way merge).
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration"
        ]
    );
    // The test and the uninstall's unregister, each with its own account and least RBAC.
    let hook_names: Vec<(String, String)> = hooks
        .iter()
        .map(|o| {
            (
                o["metadata"]["annotations"]["helm.sh/hook"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
            )
        })
        .collect();
    for (hook, name) in [
        ("test", "Pod/dbbind-test"),
        ("test", "ServiceAccount/dbbind-test"),
        ("test", "ClusterRole/dbbind-test"),
        ("test", "ClusterRoleBinding/dbbind-test"),
        ("pre-delete", "Job/dbbind-unregister"),
        ("pre-delete", "ServiceAccount/dbbind-unregister"),
        ("pre-delete", "ClusterRole/dbbind-unregister"),
        ("pre-delete", "ClusterRoleBinding/dbbind-unregister"),
    ] {
        assert!(
            hook_names.contains(&(hook.to_owned(), name.to_owned())),
            "{hook} {name}: {hook_names:?}"
        );
    }
    assert_eq!(hooks.len(), 8, "{hook_names:?}");
    assert_eq!(
        find(&hooks, "ClusterRole", "dbbind-unregister")["rules"],
        json!([
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"], "resourceNames": ["dbbind"], "verbs": ["delete"]},
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "resourceNames": ["dbbind-workloads"], "verbs": ["delete"]},
        ])
    );
    assert_eq!(
        find(&hooks, "Job", "dbbind-unregister")["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["unregister"])
    );
    assert_eq!(
        find(&hooks, "Pod", "dbbind-test")["spec"]["containers"][0]["args"],
        json!(["selftest"])
    );
    let deployment = find(&objects, "Deployment", "dbbind");
    let pod = &deployment["spec"]["template"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        pod["metadata"]["labels"]
    );
    assert_eq!(
        find(&objects, "Service", "dbbind")["spec"]["selector"],
        pod["metadata"]["labels"]
    );
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "dbbind")["spec"]["selector"]["matchLabels"],
        pod["metadata"]["labels"]
    );
    assert_eq!(
        pod["spec"]["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/livez", "port": "admin"})
    );
    assert_eq!(
        pod["spec"]["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let env: Vec<(String, Value)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].clone()))
        .collect();
    assert!(
        env.contains(&("DBBIND_REQUEST_TIMEOUT".to_owned(), json!("3s"))),
        "below the shorter webhook timeout, the workload check's 5s: {env:?}"
    );
    assert!(env.contains(&("DBBIND_WEBHOOK_CONFIG_NAME".to_owned(), json!("dbbind"))));
    assert!(env.contains(&(
        "DBBIND_VALIDATING_WEBHOOK_CONFIG_NAME".to_owned(),
        json!("dbbind-workloads")
    )));
    assert!(env.contains(&("DBBIND_CERT_SECRET_NAME".to_owned(), json!("dbbind-tls"))));

    let webhook = &find(&objects, "MutatingWebhookConfiguration", "dbbind")["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(webhook["timeoutSeconds"], 10);
    assert_eq!(webhook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(
        webhook["clientConfig"]["service"],
        json!({"name": "dbbind", "namespace": "dbbind", "path": "/mutate", "port": 443})
    );
    assert_eq!(
        webhook["rules"],
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
    );
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"],
        json!([
            {"key": "dbbind.io/inject", "operator": "In", "values": ["enabled"]},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "dbbind"]},
        ])
    );
    assert_eq!(
        webhook["matchConditions"][0]["expression"],
        "has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('dbbind.io/'))"
    );

    // The workload check: the same namespaces, Ignore, one entry per template path.
    let workloads = &find(
        &objects,
        "ValidatingWebhookConfiguration",
        "dbbind-workloads",
    )["webhooks"];
    assert_eq!(workloads.as_array().unwrap().len(), 2);
    for (index, (rules, template)) in [
        (
            json!([
                {"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "scope": "Namespaced"},
                {"operations": ["CREATE", "UPDATE"], "apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs"], "scope": "Namespaced"},
            ]),
            "object.spec.template",
        ),
        (
            json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["cronjobs"], "scope": "Namespaced"}]),
            "object.spec.jobTemplate.spec.template",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let check = &workloads[index];
        assert_eq!(check["failurePolicy"], "Ignore");
        assert_eq!(check["sideEffects"], "None");
        assert_eq!(check["timeoutSeconds"], 5);
        assert_eq!(check["rules"], rules);
        assert_eq!(check["clientConfig"]["service"]["path"], "/validate");
        assert_eq!(check["namespaceSelector"], webhook["namespaceSelector"]);
        assert_eq!(
            check["matchConditions"][0]["expression"],
            format!("has({template}.metadata) && has({template}.metadata.annotations) && {template}.metadata.annotations.exists(k, k.startsWith('dbbind.io/'))")
        );
    }

    // Least privilege: read Secrets, list which namespaces opted in; its own certificate
    // Secret and webhooks by name only.
    let rules = |kind: &str, name: &str| find(&objects, kind, name)["rules"].clone();
    assert_eq!(
        rules("ClusterRole", "dbbind-secrets"),
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
        ])
    );
    assert_eq!(
        rules("ClusterRole", "dbbind-events"),
        json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}])
    );
    assert_eq!(
        rules("Role", "dbbind-certificates"),
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["dbbind-tls"], "verbs": ["get", "update"]}
        ])
    );
    assert_eq!(
        rules("ClusterRole", "dbbind-webhook"),
        json!([
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"], "resourceNames": ["dbbind"], "verbs": ["get", "update"]},
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "resourceNames": ["dbbind-workloads"], "verbs": ["get", "update"]},
        ])
    );

    // Without the workload check: no configuration, no RBAC for it, nothing to keep current.
    let without = render(&["webhook.workloads.enabled=false"]).unwrap();
    assert!(
        without
            .iter()
            .all(|o| o["kind"] != "ValidatingWebhookConfiguration")
    );
    assert_eq!(
        find(&without, "ClusterRole", "dbbind-webhook")["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let env =
        &find(&without, "Deployment", "dbbind")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "DBBIND_VALIDATING_WEBHOOK_CONFIG_NAME", "value": ""})),
        "{env}"
    );
}

#[test]
fn cert_manager_mode_issues_a_certificate_and_injects_its_ca() {
    let objects = render(&["certificates.mode=cert-manager"]).unwrap();
    for (kind, name) in [
        ("MutatingWebhookConfiguration", "dbbind"),
        ("ValidatingWebhookConfiguration", "dbbind-workloads"),
    ] {
        assert_eq!(
            find(&objects, kind, name)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "dbbind/dbbind",
            "{kind}"
        );
    }
    let certificate = find(&objects, "Certificate", "dbbind");
    assert_eq!(certificate["spec"]["secretName"], "dbbind-tls");
    assert_eq!(
        certificate["spec"]["dnsNames"],
        json!([
            "dbbind",
            "dbbind.dbbind",
            "dbbind.dbbind.svc",
            "dbbind.dbbind.svc.cluster.local"
        ])
    );
    assert_eq!(
        certificate["spec"]["issuerRef"],
        json!({"name": "dbbind-ca", "kind": "Issuer"})
    );
    assert_eq!(
        find(&objects, "Certificate", "dbbind-ca")["spec"]["isCA"],
        true
    );
    let pod = &find(&objects, "Deployment", "dbbind")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "dbbind-tls");
    assert!(
        objects.iter().all(|o| o["kind"] != "Role"),
        "no certificate RBAC when cert-manager writes them"
    );

    let given = render(&[
        "certificates.mode=cert-manager",
        "certificates.certManager.issuerRef.name=corp-ca",
        "certificates.certManager.issuerRef.kind=ClusterIssuer",
    ])
    .unwrap();
    assert_eq!(
        find(&given, "Certificate", "dbbind")["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer"})
    );
    assert!(given.iter().all(|o| o["kind"] != "Issuer"));
}

#[test]
fn secret_mode_needs_a_secret_and_its_ca() {
    let error = render(&["certificates.mode=secret"]).unwrap_err();
    assert!(
        error.contains("is required with certificates.mode=secret"),
        "{error}"
    );
    let error = render(&["certificates.mode=secret", "certificates.secret.name=tls"]).unwrap_err();
    assert!(
        error.contains("certificates.secret.caBundle is required"),
        "{error}"
    );
    let objects = render(&[
        "certificates.mode=secret",
        "certificates.secret.name=tls",
        "certificates.secret.caBundle=Zm9v",
    ])
    .unwrap();
    assert_eq!(
        find(&objects, "MutatingWebhookConfiguration", "dbbind")["webhooks"][0]["clientConfig"]["caBundle"],
        "Zm9v"
    );
    for check in find(
        &objects,
        "ValidatingWebhookConfiguration",
        "dbbind-workloads",
    )["webhooks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(check["clientConfig"]["caBundle"], "Zm9v");
    }
    assert_eq!(
        find(&objects, "Deployment", "dbbind")["spec"]["template"]["spec"]["volumes"][0]["secret"]
            ["secretName"],
        "tls"
    );
}

#[test]
fn custom_profiles_become_a_profiles_file_dbbind_loads() {
    let values_file = tempfile::NamedTempFile::new().unwrap();
    let values = values_file.path().to_owned();
    std::fs::write(&values, "profiles:\n- name: acme\n  description: ACME operator\n  detect:\n  - owner: {group: db.acme.example, kind: Database}\n  fields:\n    host: {keys: [server]}\n    user: {keys: [login]}\n    password: {keys: [secret]}\n").unwrap();
    let output = helm(&[
        "template",
        "dbbind",
        "charts/dbbind",
        "-n",
        "dbbind",
        "--kube-version",
        "1.36.3",
        "-f",
        values.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let objects = yaml_documents(&String::from_utf8_lossy(&output.stdout));
    let file = find(&objects, "ConfigMap", "dbbind-profiles")["data"]["profiles.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let profiles_file = tempfile::NamedTempFile::new().unwrap();
    let path = profiles_file.path().to_owned();
    std::fs::write(&path, file).unwrap();
    let loaded = dbbind::profiles::load(Some(&path)).unwrap();
    assert_eq!(loaded.names()[0], "acme");
    let pod = &find(&objects, "Deployment", "dbbind")["spec"]["template"];
    assert!(pod["metadata"]["annotations"]["checksum/profiles"].is_string());
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        "dbbind-profiles"
    );
}

#[test]
fn watched_namespaces_get_roles_instead_of_a_cluster_role() {
    let objects = render(&["watchNamespaces={shop,billing}"]).unwrap();
    for cluster_wide in ["dbbind-secrets", "dbbind-events"] {
        assert!(
            !objects
                .iter()
                .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == cluster_wide)
        );
    }
    for namespace in ["shop", "billing"] {
        let role = |name: &str| {
            objects
                .iter()
                .find(|o| {
                    o["kind"] == "Role"
                        && o["metadata"]["namespace"] == namespace
                        && o["metadata"]["name"] == name
                })
                .unwrap()
        };
        assert_eq!(
            role("dbbind-secrets")["rules"][0]["verbs"],
            json!(["get", "list", "watch"])
        );
        assert_eq!(
            role("dbbind-events")["rules"][0]["verbs"],
            json!(["create", "patch"])
        );
    }
}

/// `rotation.enabled` turns the controller on and adds what it needs, nothing more: pods read,
/// ReplicaSets got, the three workload kinds patched (cluster-wide, or in each watched
/// namespace), and the one Lease in the release namespace. Off by default: none of it.
#[test]
fn rotation_adds_its_flag_and_least_privilege_rbac() {
    let env_of = |objects: &[Value]| {
        find(objects, "Deployment", "dbbind")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let off = render(&[]).unwrap();
    assert!(!env_of(&off).contains_key("DBBIND_RESTART_ON_ROTATION"));
    assert!(!off.iter().any(|o| {
        o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-rotation") || n.ends_with("-leader"))
    }));

    let workload_rules = json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "patch"]},
    ]);
    let on = render(&["rotation.enabled=true", "certificates.mode=cert-manager"]).unwrap();
    let env = env_of(&on);
    assert_eq!(env["DBBIND_RESTART_ON_ROTATION"], json!("true"));
    assert_eq!(env["DBBIND_ROTATION_MIN_INTERVAL"], json!("1m"));
    assert_eq!(env["DBBIND_ROTATION_LEASE_NAME"], json!("dbbind-rotation"));
    assert!(
        env.contains_key("DBBIND_NAMESPACE"),
        "the Lease's namespace"
    );
    assert_eq!(
        find(&on, "ClusterRole", "dbbind-rotation")["rules"],
        workload_rules
    );
    let leader = find(&on, "Role", "dbbind-leader");
    assert_eq!(leader["metadata"]["namespace"], "dbbind");
    assert_eq!(
        leader["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["dbbind-rotation"],
             "verbs": ["get", "list", "watch", "update", "patch"]},
        ])
    );
    let binding = find(&on, "RoleBinding", "dbbind-leader");
    assert_eq!(binding["roleRef"]["name"], "dbbind-leader");

    let scoped = render(&["rotation.enabled=true", "watchNamespaces={shop,billing}"]).unwrap();
    assert!(
        !scoped
            .iter()
            .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "dbbind-rotation")
    );
    for namespace in ["shop", "billing"] {
        let role = scoped
            .iter()
            .find(|o| {
                o["kind"] == "Role"
                    && o["metadata"]["namespace"] == namespace
                    && o["metadata"]["name"] == "dbbind-rotation"
            })
            .unwrap();
        assert_eq!(role["rules"], workload_rules);
    }
}

/// By default the cache follows the opted-in namespaces (the webhook's own label), which
/// needs list/watch on namespaces; `cacheScope=cluster` and a fixed list need neither.
#[test]
fn the_cache_follows_opted_in_namespaces_unless_told_otherwise() {
    let selector_and_rules = |sets: &[&str]| {
        let objects = render(sets).unwrap();
        let env = find(&objects, "Deployment", "dbbind")["spec"]["template"]["spec"]["containers"]
            [0]["env"]
            .clone();
        let selector = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "DBBIND_NAMESPACE_SELECTOR")
            .map(|e| e["value"].clone());
        // dbbind's own roles: the test hook lists namespaces to find an opted-in one.
        let watches_namespaces = objects.iter().any(|o| {
            o["kind"] == "ClusterRole"
                && o["metadata"]["annotations"]["helm.sh/hook"].is_null()
                && o["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| rule["resources"] == json!(["namespaces"]))
        });
        (selector, watches_namespaces)
    };
    assert_eq!(
        selector_and_rules(&[]),
        (Some(json!("dbbind.io/inject=enabled")), true)
    );
    assert_eq!(selector_and_rules(&["cacheScope=cluster"]), (None, false));
    assert_eq!(
        selector_and_rules(&["watchNamespaces={shop}"]),
        (None, false)
    );
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

/// webhook-config/ holds the chart's objects (certificates.mode=secret, release dbbind in
/// namespace dbbind) as plain manifests; only Helm's bookkeeping labels and the caBundle differ.
#[test]
fn the_plain_manifests_are_in_step_with_the_chart() {
    let chart = render(&[
        "certificates.mode=secret",
        "certificates.secret.name=dbbind-tls",
        "certificates.secret.caBundle=PLACEHOLDER",
    ])
    .unwrap();
    let dir = repo_root().join("webhook-config");
    let kustomization: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    // Helm's hooks (the test, the uninstall's unregister) are Helm's own; plain manifests have
    // no install or uninstall to hook into.
    let chart: Vec<Value> = chart
        .into_iter()
        .filter(|object| object["metadata"]["annotations"]["helm.sh/hook"].is_null())
        .collect();
    let mut plain = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        plain.extend(yaml_documents(
            &std::fs::read_to_string(dir.join(file.as_str().unwrap())).unwrap(),
        ));
    }
    let normalize = |object: &Value| {
        let mut object = object.clone();
        object["metadata"].as_object_mut().unwrap().remove("labels");
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        for webhook in object["webhooks"].as_array_mut().into_iter().flatten() {
            webhook["clientConfig"]
                .as_object_mut()
                .unwrap()
                .remove("caBundle");
        }
        object
    };
    for object in &chart {
        let (kind, name) = (
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap(),
        );
        let counterpart = plain
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
        let counterpart =
            counterpart.unwrap_or_else(|| panic!("webhook-config/ lacks {kind} {name}"));
        assert_eq!(
            normalize(counterpart),
            normalize(object),
            "{kind} {name} differs from the chart"
        );
    }
    assert_eq!(
        plain.len(),
        chart.len() + 1,
        "the chart's objects and the Namespace"
    );
}

fn pod_spec(objects: &[Value]) -> Value {
    find(objects, "Deployment", "dbbind")["spec"]["template"]["spec"].clone()
}

fn env_value(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].clone())
}

/// Values real clusters need, as cert-manager's and Kyverno's charts have them: the host
/// network with ports of one's choosing, DNS policy, more flags and environment, security
/// contexts, and where the NetworkPolicy admits from.
#[test]
fn values_real_clusters_need() {
    // The host network (EKS with a CNI of its own, GKE private clusters' port 10250).
    let host = pod_spec(
        &render(&[
            "hostNetwork=true",
            "ports.webhook=10250",
            "ports.admin=10251",
        ])
        .unwrap(),
    );
    assert_eq!(host["hostNetwork"], true);
    assert_eq!(host["dnsPolicy"], "ClusterFirstWithHostNet");
    let container = &host["containers"][0];
    assert_eq!(
        env_value(container, "DBBIND_LISTEN"),
        Some(json!("0.0.0.0:10250"))
    );
    assert_eq!(
        env_value(container, "DBBIND_ADMIN_LISTEN"),
        Some(json!("0.0.0.0:10251"))
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "webhook", "containerPort": 10250}, {"name": "admin", "containerPort": 10251}])
    );
    // The Service still answers on 443 and sends to the named port.
    let objects = render(&["hostNetwork=true", "ports.webhook=10250"]).unwrap();
    assert_eq!(
        find(&objects, "Service", "dbbind")["spec"]["ports"][0],
        json!({"name": "webhook", "port": 443, "targetPort": "webhook"})
    );
    let default = pod_spec(&render(&[]).unwrap());
    assert!(default["hostNetwork"].is_null() && default["dnsPolicy"].is_null());
    assert_eq!(
        pod_spec(&render(&["dnsPolicy=Default"]).unwrap())["dnsPolicy"],
        "Default"
    );

    // More flags and environment: for serve, and (the environment) for the hooks too, which
    // reach the API server the same way.
    let objects = render(&[
        "extraArgs={--max-connections=2048}",
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST",
        "extraEnv[0].value=10.1.2.3",
    ])
    .unwrap();
    let container = &pod_spec(&objects)["containers"][0];
    assert_eq!(
        container["args"],
        json!(["serve", "--max-connections=2048"])
    );
    assert_eq!(
        env_value(container, "KUBERNETES_SERVICE_HOST"),
        Some(json!("10.1.2.3"))
    );
    let job =
        &find(&objects, "Job", "dbbind-unregister")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(job, "KUBERNETES_SERVICE_HOST"),
        Some(json!("10.1.2.3"))
    );
    let test = &find(&objects, "Pod", "dbbind-test")["spec"]["containers"][0];
    assert_eq!(
        env_value(test, "KUBERNETES_SERVICE_HOST"),
        Some(json!("10.1.2.3"))
    );

    // Security contexts are values, with the locked-down defaults.
    let spec = pod_spec(
        &render(&[
            "podSecurityContext.runAsUser=1001",
            "podSecurityContext.fsGroup=1001",
            "securityContext.readOnlyRootFilesystem=false",
            "priorityClassName=system-cluster-critical",
        ])
        .unwrap(),
    );
    assert_eq!(spec["securityContext"]["runAsUser"], 1001);
    assert_eq!(spec["securityContext"]["fsGroup"], 1001);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        false
    );
    assert_eq!(
        spec["containers"][0]["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");

    // The NetworkPolicy admits the webhook and admin ports from the sources given, each.
    let objects = render(&[
        "networkPolicy.enabled=true",
        "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/16",
        "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ])
    .unwrap();
    assert_eq!(
        find(&objects, "NetworkPolicy", "dbbind")["spec"]["ingress"],
        json!([
            {"ports": [{"port": "webhook", "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]},
            {"ports": [{"port": "admin", "protocol": "TCP"}], "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        ])
    );
    let open = render(&["networkPolicy.enabled=true"]).unwrap();
    let ingress = &find(&open, "NetworkPolicy", "dbbind")["spec"]["ingress"];
    assert!(ingress[0]["from"].is_null() && ingress[1]["from"].is_null());

    // An umbrella chart's global values are accepted.
    render(&["global.imageRegistry=registry.example.com"]).unwrap();
}

/// The PodDisruptionBudget is rendered only when one replica can still be evicted: a single
/// replica never blocks a node drain.
#[test]
fn the_pdb_is_rendered_only_when_a_drain_can_satisfy_it() {
    let pdbs = |sets: &[&str]| {
        render(sets)
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .count()
    };
    assert_eq!(pdbs(&[]), 1);
    assert_eq!(pdbs(&["replicaCount=1"]), 0);
    assert_eq!(
        pdbs(&["replicaCount=3", "podDisruptionBudget.minAvailable=3"]),
        0
    );
    assert_eq!(
        pdbs(&["replicaCount=3", "podDisruptionBudget.minAvailable=2"]),
        1
    );
    assert_eq!(
        pdbs(&["replicaCount=1", "podDisruptionBudget.minAvailable=50%"]),
        0
    );
    assert_eq!(
        pdbs(&["replicaCount=2", "podDisruptionBudget.minAvailable=50%"]),
        1
    );
    assert_eq!(pdbs(&["podDisruptionBudget.enabled=false"]), 0);
}

/// dbbind's request deadline stays below every webhook's timeout: two seconds less than the
/// shorter one, whichever that is.
#[test]
fn the_request_deadline_is_below_every_webhook_timeout() {
    let deadline = |sets: &[&str]| {
        env_value(
            &pod_spec(&render(sets).unwrap())["containers"][0],
            "DBBIND_REQUEST_TIMEOUT",
        )
    };
    assert_eq!(deadline(&[]), Some(json!("3s")));
    assert_eq!(
        deadline(&["webhook.workloads.timeoutSeconds=15"]),
        Some(json!("8s"))
    );
    assert_eq!(
        deadline(&[
            "webhook.timeoutSeconds=4",
            "webhook.workloads.timeoutSeconds=30"
        ]),
        Some(json!("2s"))
    );
    assert_eq!(
        deadline(&["webhook.workloads.enabled=false"]),
        Some(json!("8s"))
    );
    for sets in [
        vec![],
        vec![
            "webhook.timeoutSeconds=3",
            "webhook.workloads.timeoutSeconds=3",
        ],
    ] {
        let objects = render(&sets).unwrap();
        let seconds: u64 = env_value(
            &pod_spec(&objects)["containers"][0],
            "DBBIND_REQUEST_TIMEOUT",
        )
        .unwrap()
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
        let mutating = &find(&objects, "MutatingWebhookConfiguration", "dbbind")["webhooks"];
        let validating = &find(
            &objects,
            "ValidatingWebhookConfiguration",
            "dbbind-workloads",
        )["webhooks"];
        for webhook in mutating
            .as_array()
            .unwrap()
            .iter()
            .chain(validating.as_array().unwrap())
        {
            let timeout = webhook["timeoutSeconds"].as_u64().unwrap();
            assert!(
                seconds < timeout,
                "{sets:?}: deadline {seconds}s, {} timeout {timeout}s",
                webhook["name"]
            );
        }
    }
}

/// The README's install path is the suite's: the image tag it builds is the one the chart pulls
/// (its appVersion) and the node's image carries, and its `helm install` line is the one the
/// suite runs (which adds only where the API server is, for its kube-proxy-free network).
#[test]
fn the_readmes_install_commands_are_what_the_suite_runs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let version = dbbind_e2e::tools::chart_app_version().unwrap();
    let build = format!("docker build -t dbbind:{version} .");
    assert!(readme.contains(&build), "README lacks `{build}`");
    let install = format!("helm {}", dbbind_e2e::release::INSTALL.join(" "));
    assert!(readme.contains(&install), "README lacks `{install}`");
    for line in [
        "kubectl create namespace shop",
        "kubectl label namespace shop dbbind.io/inject=enabled",
    ] {
        assert!(readme.contains(line), "README lacks `{line}`");
    }
    let objects = render(&[]).unwrap();
    let image = find(&objects, "Deployment", "dbbind")["spec"]["template"]["spec"]["containers"][0]
        ["image"]
        .clone();
    assert_eq!(image, format!("dbbind:{version}"));
    assert_eq!(
        dbbind_e2e::image::dbbind_images(&version)[0],
        format!("docker.io/library/dbbind:{version}"),
        "the node's image is what containerd makes of the chart's reference"
    );
}
