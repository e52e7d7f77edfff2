//! What dbbind may read and change: watched namespaces, rotation's RBAC, the cache's scope.

use super::*;

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
