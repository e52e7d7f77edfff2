//! What each certificate mode renders, and custom profiles.

use super::*;

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
