//! TLS to the database (docs/design.md §9): CA and client certificate as files, their paths in
//! the variables and URLs, verify-full by default, and what is denied or warned.

use dbbind_core::decision::Decision;
use dbbind_core::profile::ProfileSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::{Value, json};

use crate::support::*;

const NAMESPACE: &str = "shop";

fn secret(name: &str, secret_type: &str, labels: Value, keys: &[&str]) -> Secret {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| ((*key).to_owned(), json!("bWFya2Vy")))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "type": secret_type, "data": data,
    }))
    .unwrap()
}

/// A generic hand-made Secret, without TLS keys.
fn generic() -> Secret {
    secret(
        "orders-db",
        "Opaque",
        json!({}),
        &["host", "port", "database", "username", "password"],
    )
}

fn tls_secret(name: &str) -> Secret {
    secret(
        name,
        "kubernetes.io/tls",
        json!({}),
        &["tls.crt", "tls.key"],
    )
}

fn run(annotations: &[(&str, &str)], secrets: &[&Secret]) -> (Pod, Decision) {
    let pod = pod(annotations, &["app"]);
    let decision = decide(&pod, NAMESPACE, &store_of(secrets));
    (pod, decision)
}

/// The binding volume's sources, as JSON.
fn sources(pod: &Pod) -> Vec<Value> {
    let volume = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dbbind-db")
        .expect("the binding's volume");
    to_json(&volume.projected.as_ref().unwrap().sources)
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_ca_from_a_secret_is_a_file_its_path_in_every_set_and_verify_full_by_default() {
    let ca = secret("db-ca", "Opaque", json!({}), &["ca.crt", "ca.key"]);
    let (pod, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/ca", "secret:db-ca"),
            ("dbbind.io/env", "postgres,libpq,database-url,jdbc"),
        ],
        &[&generic(), &ca],
    );
    let patched = apply(&pod, &decision);
    let env = env_summary(&patched, "app");
    for expected in [
        "SERVICE_BINDING_ROOT=/bindings",
        "POSTGRES_SSLMODE=verify-full",
        "POSTGRES_SSLROOTCERT=/bindings/db/ca.crt",
        "PGSSLMODE=verify-full",
        "PGSSLROOTCERT=/bindings/db/ca.crt",
        "DATABASE_URL=postgresql://$(POSTGRES_USER)@$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)?sslmode=$(POSTGRES_SSLMODE)&sslrootcert=/bindings/db/ca.crt",
        "POSTGRES_JDBC_URL=jdbc:postgresql://$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)?sslmode=$(POSTGRES_SSLMODE)&sslrootcert=/bindings/db/ca.crt",
    ] {
        assert!(env.contains(&expected.to_owned()), "{expected} in {env:#?}");
    }
    // Only ca.crt, from its Secret: never ca.key, and no field entries without dbbind.io/files.
    assert_eq!(
        sources(&patched),
        [json!({"secret": {"name": "db-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}})]
    );
    let mount = to_json(&patched.spec.as_ref().unwrap().containers[0].volume_mounts);
    assert_eq!(
        mount,
        json!([{"name": "dbbind-db", "mountPath": "/bindings/db", "readOnly": true}])
    );
    assert!(warnings(&decision).iter().all(|w| !w.contains("sslmode")));
    // Run again on its own output: nothing to add.
    let again = decide(&patched, NAMESPACE, &store_of(&[&generic(), &ca]));
    assert_eq!(patch_ops(&again), 0);
}

#[test]
fn a_ca_from_a_configmap_and_a_container_root_of_its_own() {
    let mut pod = pod(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/ca", "configmap:rds-ca-bundle/global-bundle.pem"),
            ("dbbind.io/sslmode", "verify-ca"),
        ],
        &["app"],
    );
    pod.spec.as_mut().unwrap().containers[0].env = Some(vec![
        serde_json::from_value(json!({"name": "SERVICE_BINDING_ROOT", "value": "/etc/db"}))
            .unwrap(),
    ]);
    let decision = decide(&pod, NAMESPACE, &store_of(&[&generic()]));
    let patched = apply(&pod, &decision);
    let env = env_summary(&patched, "app");
    assert!(env.contains(&"POSTGRES_SSLROOTCERT=/etc/db/db/ca.crt".to_owned()));
    // The annotation's sslmode wins over the default.
    assert!(env.contains(&"POSTGRES_SSLMODE=verify-ca".to_owned()));
    assert_eq!(
        sources(&patched),
        [
            json!({"configMap": {"name": "rds-ca-bundle", "items": [{"key": "global-bundle.pem", "path": "ca.crt"}]}})
        ]
    );
}

#[test]
fn a_client_certificate_is_projected_with_mode_0600_and_its_paths_set() {
    let (pod, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/client-cert", "orders-client"),
            ("dbbind.io/env", "libpq"),
        ],
        &[&generic(), &tls_secret("orders-client")],
    );
    let patched = apply(&pod, &decision);
    let env = env_summary(&patched, "app");
    assert!(env.contains(&"PGSSLCERT=/bindings/db/tls.crt".to_owned()));
    assert!(env.contains(&"PGSSLKEY=/bindings/db/tls.key".to_owned()));
    // No CA: no sslmode is made up.
    assert!(!env.iter().any(|v| v.starts_with("PGSSLMODE")), "{env:?}");
    assert_eq!(
        sources(&patched),
        [json!({"secret": {"name": "orders-client", "items": [
            {"key": "tls.crt", "path": "tls.crt"},
            {"key": "tls.key", "path": "tls.key", "mode": 0o600},
        ]}})]
    );
}

#[test]
fn a_non_root_container_without_fs_group_is_told_to_set_one() {
    let annotations = [
        ("dbbind.io/secret", "orders-db"),
        ("dbbind.io/client-cert", "orders-client"),
    ];
    let secrets = store_of(&[&generic(), &tls_secret("orders-client")]);
    let with = |security: Value| {
        let mut pod = pod(&annotations, &["app"]);
        pod.spec.as_mut().unwrap().security_context = serde_json::from_value(security).unwrap();
        warnings(&decide(&pod, NAMESPACE, &secrets))
    };
    let told = with(json!({"runAsUser": 1000}));
    assert!(
        told.iter()
            .any(|w| w.contains("runs as user 1000")
                && w.contains("set spec.securityContext.fsGroup")),
        "{told:?}"
    );
    let told = with(json!({"runAsNonRoot": true}));
    assert!(
        told.iter().any(|w| w.contains("must run as non-root")),
        "{told:?}"
    );
    for fine in [
        json!({"runAsUser": 1000, "fsGroup": 2000}),
        json!({}),
        json!({"runAsUser": 0}),
    ] {
        let said = with(fine.clone());
        assert!(
            said.iter().all(|w| !w.contains("fsGroup")),
            "{fine}: {said:?}"
        );
    }
}

#[test]
fn cnpg_binds_its_operators_ca_secret_only_when_it_exists_and_never_its_private_key() {
    let app = secret(
        "pg-main-app",
        "kubernetes.io/basic-auth",
        json!({"cnpg.io/cluster": "pg-main"}),
        &["host", "port", "dbname", "username", "password", "uri"],
    );
    let ca = secret(
        "pg-main-ca",
        "Opaque",
        json!({"cnpg.io/cluster": "pg-main"}),
        &["ca.crt", "ca.key"],
    );
    let (pod, decision) = run(&[("dbbind.io/secret", "pg-main-app")], &[&app, &ca]);
    let patched = apply(&pod, &decision);
    assert_eq!(
        sources(&patched),
        [json!({"secret": {"name": "pg-main-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}})]
    );
    let env = env_summary(&patched, "app");
    assert!(env.contains(&"POSTGRES_SSLMODE=verify-full".to_owned()));

    // Without the operator's CA Secret (certificates of the user's own), nothing is bound.
    let (pod, decision) = run(&[("dbbind.io/secret", "pg-main-app")], &[&app]);
    let patched = apply(&pod, &decision);
    assert!(patched.spec.unwrap().volumes.is_none());
}

#[test]
fn crunchy_binds_the_ca_of_its_cluster_cert_secret() {
    let user = secret(
        "hippo-pguser-rhino",
        "Opaque",
        json!({"postgres-operator.crunchydata.com/cluster": "hippo",
            "postgres-operator.crunchydata.com/role": "pguser"}),
        &["host", "port", "dbname", "user", "password", "uri"],
    );
    let cert = secret(
        "hippo-cluster-cert",
        "Opaque",
        json!({}),
        &["ca.crt", "tls.crt", "tls.key"],
    );
    let (pod, decision) = run(
        &[("dbbind.io/secret", "hippo-pguser-rhino")],
        &[&user, &cert],
    );
    assert_eq!(
        sources(&apply(&pod, &decision)),
        [
            json!({"secret": {"name": "hippo-cluster-cert", "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
        ]
    );
}

#[test]
fn the_bound_secrets_own_keys_and_the_annotation_wins_over_them() {
    let bound = secret(
        "orders-db",
        "Opaque",
        json!({}),
        &[
            "host", "username", "password", "ca.crt", "tls.crt", "tls.key",
        ],
    );
    let (pod, decision) = run(&[("dbbind.io/secret", "orders-db")], &[&bound]);
    assert_eq!(
        sources(&apply(&pod, &decision)),
        [json!({"secret": {"name": "orders-db", "items": [
            {"key": "ca.crt", "path": "ca.crt"},
            {"key": "tls.crt", "path": "tls.crt"},
            {"key": "tls.key", "path": "tls.key", "mode": 0o600},
        ]}})]
    );
    let (pod, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/ca", "configmap:corp-ca"),
        ],
        &[&bound],
    );
    let sources = sources(&apply(&pod, &decision));
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert_eq!(
        sources[0],
        json!({"configMap": {"name": "corp-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
    );
    // The bound Secret still gives the client certificate, but not its own CA.
    let items = sources[1]["secret"]["items"].as_array().unwrap();
    assert!(
        items.iter().all(|item| item["path"] != "ca.crt"),
        "{items:?}"
    );
}

#[test]
fn half_a_client_certificate_in_the_bound_secret_is_a_warning() {
    let bound = secret(
        "orders-db",
        "Opaque",
        json!({}),
        &["host", "username", "password", "tls.crt"],
    );
    let (_, decision) = run(&[("dbbind.io/secret", "orders-db")], &[&bound]);
    let said = warnings(&decision);
    assert!(
        said.iter()
            .any(|w| w.contains("\"tls.crt\" but not the other half")),
        "{said:?}"
    );
}

#[test]
fn denials_name_what_is_wrong() {
    let ca = secret("db-ca", "Opaque", json!({}), &["ca.key"]);
    let (_, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/ca", "secret:db-ca"),
        ],
        &[&generic(), &ca],
    );
    assert_eq!(
        denial(&decision),
        "dbbind: annotation \"dbbind.io/ca\" names key \"ca.crt\" of Secret \"db-ca\", which it does not have; keys present: [ca.key]"
    );
    let opaque = secret(
        "orders-client",
        "Opaque",
        json!({}),
        &["tls.crt", "tls.key"],
    );
    let (_, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/client-cert", "orders-client"),
        ],
        &[&generic(), &opaque],
    );
    let said = denial(&decision);
    assert!(
        said.contains("of type \"Opaque\"") && said.contains("kubernetes.io/tls"),
        "{said}"
    );
    for (value, problem) in [
        ("db-ca", "is not a CA source"),
        ("vault:db-ca", "is not a CA source kind"),
        ("secret:Bad_Name", "is not a valid object name"),
        ("secret:db-ca/bad key", "is not a valid key"),
    ] {
        let (_, decision) = run(
            &[("dbbind.io/secret", "orders-db"), ("dbbind.io/ca", value)],
            &[&generic()],
        );
        let said = denial(&decision);
        assert!(
            said.starts_with("dbbind: annotation \"dbbind.io/ca\":") && said.contains(problem),
            "{value}: {said}"
        );
    }
}

#[test]
fn warnings_for_missing_objects_and_verify_full_without_a_ca() {
    let (_, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/ca", "secret:db-ca"),
            ("dbbind.io/client-cert", "orders-client"),
        ],
        &[&generic()],
    );
    let said = warnings(&decision);
    for name in ["db-ca", "orders-client"] {
        assert!(
            said.iter()
                .any(|w| w.contains(&format!("Secret \"{name}\" not found"))),
            "{said:?}"
        );
    }
    let (_, decision) = run(
        &[
            ("dbbind.io/secret", "orders-db"),
            ("dbbind.io/sslmode", "verify-full"),
        ],
        &[&generic()],
    );
    let said = warnings(&decision);
    assert!(
        said.iter()
            .any(|w| w.contains("sslmode verify-full with no CA bound")
                && w.contains("dbbind.io/ca")),
        "{said:?}"
    );
}

#[test]
fn a_profile_file_states_tls_knowledge_and_its_checks() {
    let good = "profiles:\n- name: acme\n  fields:\n    host: {keys: [server]}\n    user: {keys: [login]}\n    password: {keys: [pw]}\n  endpoints:\n    clusterLabel: acme.example/cluster\n    rw: '{cluster}-rw'\n  tls:\n    caKeys: [root.pem]\n    caSecret: {name: '{cluster}-ca', key: ca.pem}\n";
    let profiles = ProfileSet::with_overlay(good, "test.yaml").unwrap();
    let tls = &profiles.get("acme").unwrap().tls;
    assert_eq!(tls.ca_keys, ["root.pem"]);
    let without_cluster = good.replace(
        "  endpoints:\n    clusterLabel: acme.example/cluster\n    rw: '{cluster}-rw'\n",
        "",
    );
    let error = ProfileSet::with_overlay(&without_cluster, "test.yaml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("tls.caSecret"), "{error}");
    let bad_key = good.replace("root.pem", "bad key");
    let error = ProfileSet::with_overlay(&bad_key, "test.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"bad key\" is not a valid Secret key"),
        "{error}"
    );
}
