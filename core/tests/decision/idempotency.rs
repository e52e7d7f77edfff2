//! The webhook runs again on its own output (`reinvocationPolicy: IfNeeded`): nothing changes,
//! and a container added in between is bound.

use dbbind_core::decision::Decision;
use dbbind_core::manifest::{Source, render};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::support::*;

fn examples() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo_path("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path.display().to_string(), text)
        })
        .collect();
    files.sort();
    // Every example, and so every scenario (tests/cli checks each has its golden render).
    assert!(!files.is_empty());
    files
}

/// Renders an example; returns its patched pod template as a Pod, and the store it used.
fn first_pass(name: &str, text: &str) -> (Pod, dbbind_core::secret::SecretStore) {
    let rendered = render(&Source { name, text }, &[], None, &builtin()).unwrap();
    assert_eq!(rendered.len(), 1);
    assert!(
        matches!(rendered[0].decision, Decision::Allow { .. }),
        "{name}"
    );
    let template = rendered[0].document["spec"]["template"].clone();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": template["metadata"], "spec": template["spec"],
    }))
    .unwrap();
    let secrets: Vec<k8s_openapi::api::core::v1::Secret> =
        serde_yaml_ng::Deserializer::from_str(text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .filter(|doc: &Value| doc["kind"] == "Secret")
            .map(|doc| serde_json::from_value(doc).unwrap())
            .collect();
    (pod, store_of(&secrets.iter().collect::<Vec<_>>()))
}

#[test]
fn every_example_is_unchanged_by_a_second_pass() {
    for (name, text) in examples() {
        let (pod, store) = first_pass(&name, &text);
        let again = decide(&pod, "default", &store);
        assert_eq!(patch_ops(&again), 0, "{name}: {again:?}");
    }
}

#[test]
fn a_container_added_after_the_first_pass_is_bound_on_the_second() {
    for (name, text) in examples() {
        let (pod, store) = first_pass(&name, &text);
        if pod
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("dbbind.io/containers")
        {
            continue; // a named selection does not cover a newcomer
        }
        let mut value = to_json(&pod);
        value["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "late", "image": "sidecar:1"}));
        let grown: Pod = serde_json::from_value(value).unwrap();

        let second = decide(&grown, "default", &store);
        let bound = apply(&grown, &second);
        // `app` may have entries of its own after the injected ones.
        let late = env_summary(&bound, "late");
        let app = env_summary(&bound, "app");
        assert_eq!(
            late,
            app[..late.len()],
            "{name}: the newcomer gets what app got"
        );
        let env_none = pod
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get("dbbind.io/env");
        if env_none.is_none_or(|e| e != "none") {
            assert!(!late.is_empty(), "{name}");
        }
        let spec = bound.spec.as_ref().unwrap();
        let mounts = |c: &str| {
            spec.containers
                .iter()
                .find(|x| x.name == c)
                .unwrap()
                .volume_mounts
                .clone()
        };
        assert_eq!(mounts("late"), mounts("app"), "{name}");
        assert_eq!(
            patch_ops(&decide(&bound, "default", &store)),
            0,
            "{name}: third pass"
        );
    }
}

#[test]
fn injected_variables_go_before_the_containers_own_and_existing_arrays_are_extended() {
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"annotations": {"dbbind.io/secret": "orders-db-conn", "dbbind.io/files": "true"}},
        "spec": {
            "containers": [{
                "name": "app", "image": "app:1",
                "env": [{"name": "TARGET", "value": "$(POSTGRES_HOST):$(POSTGRES_PORT)"}],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            }],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
    }))
    .unwrap();
    let decision = decide(&pod, "shop", &store);
    let Decision::Allow { patch, .. } = &decision else {
        panic!()
    };
    // Arrays that exist are extended element by element, never replaced.
    for op in &patch.0 {
        let path = op.path().to_string();
        assert!(
            path != "/spec/volumes"
                && path != "/spec/containers/0/env"
                && path != "/metadata/annotations",
            "{path}"
        );
    }
    let bound = apply(&pod, &decision);
    let env = env_summary(&bound, "app");
    assert_eq!(env.first().unwrap(), "SERVICE_BINDING_ROOT=/bindings");
    assert_eq!(
        env.last().unwrap(),
        "TARGET=$(POSTGRES_HOST):$(POSTGRES_PORT)"
    );
    let spec = bound.spec.as_ref().unwrap();
    let mounts: Vec<&str> = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, ["/cache", "/bindings/db"]);
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["cache", "dbbind-db"]);
    assert_eq!(patch_ops(&decide(&bound, "shop", &store)), 0);
}

#[test]
fn annotation_keys_are_escaped_in_json_pointers() {
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let pod = pod(&[("dbbind.io/secret", "orders-db-conn")], &["app"]);
    let Decision::Allow { patch, .. } = decide(&pod, "shop", &store) else {
        panic!()
    };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert!(
        paths.contains(&"/metadata/annotations/dbbind.io~1status".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/metadata/annotations/dbbind.io~1bindings".to_owned()),
        "{paths:?}"
    );
}

#[test]
fn a_stale_status_annotation_is_replaced_not_duplicated() {
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let pod = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/bindings", "db=old/generic"),
        ],
        &["app"],
    );
    let bound = apply(&pod, &decide(&pod, "shop", &store));
    let annotations = bound.metadata.annotations.unwrap();
    assert_eq!(
        annotations["dbbind.io/bindings"],
        "db=orders-db-conn/generic"
    );
    assert_eq!(annotations["dbbind.io/status"], "injected");
}

#[test]
fn init_containers_are_bound_first_and_selection_limits_the_targets() {
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let all = pod(
        &[("dbbind.io/secret", "orders-db-conn")],
        &["init:migrate", "app", "proxy"],
    );
    let bound = apply(&all, &decide(&all, "shop", &store));
    for container in ["migrate", "app", "proxy"] {
        assert_eq!(env_summary(&bound, container).len(), 5, "{container}");
    }
    let some = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/containers", "migrate, app"),
        ],
        &["init:migrate", "app", "proxy"],
    );
    let bound = apply(&some, &decide(&some, "shop", &store));
    assert_eq!(env_summary(&bound, "migrate").len(), 5);
    assert_eq!(env_summary(&bound, "app").len(), 5);
    assert!(env_summary(&bound, "proxy").is_empty());
}
