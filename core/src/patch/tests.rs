use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::binding::{BindingRequest, EnvSets, ResolvedBinding, ValueSource};
use crate::field::Field;

fn binding(fields: &[(Field, ValueSource)], env: EnvSets, files: bool) -> ResolvedBinding {
    ResolvedBinding {
        request: BindingRequest {
            alias: None,
            secret: "db-secret".to_owned(),
            profile: None,
            literals: BTreeMap::new(),
            keys: BTreeMap::new(),
            env,
            files,
        },
        profile: "generic".to_owned(),
        fields: fields.iter().cloned().collect(),
    }
}

fn key(name: &str) -> ValueSource {
    ValueSource::SecretKey {
        key: name.to_owned(),
        optional: false,
    }
}

fn patched(
    pod: serde_json::Value,
    bindings: &[ResolvedBinding],
) -> (serde_json::Value, Vec<String>) {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let mut warnings = Vec::new();
    let patch = build_patch(&typed, bindings, None, OnConflict::Keep, &mut warnings).unwrap();
    let mut value = pod;
    json_patch::patch(&mut value, &patch.0).unwrap();
    (value, warnings.into_iter().map(String::from).collect())
}

fn bare_pod() -> serde_json::Value {
    json!({"metadata": {}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}})
}

#[test]
fn database_url_is_composed_without_missing_parts() {
    let only = EnvSets {
        postgres: true,
        libpq: false,
        database_url: true,
    };
    let b = binding(
        &[
            (Field::Host, key("h")),
            (Field::User, key("u")),
            (Field::Password, key("p")),
        ],
        only,
        false,
    );
    let (pod, warnings) = patched(bare_pod(), &[b]);
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    assert_eq!(
        env.last().unwrap()["value"],
        "postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@$(POSTGRES_HOST)/"
    );
    assert!(
        warnings[0].contains("does not percent-encode"),
        "{warnings:?}"
    );
}

#[test]
fn literal_values_escape_variable_references() {
    let b = binding(
        &[
            (Field::Host, ValueSource::Literal("a$(B)".to_owned())),
            (Field::User, key("u")),
            (Field::Password, key("p")),
        ],
        EnvSets::default(),
        false,
    );
    let (pod, _) = patched(bare_pod(), &[b]);
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "a$$(B)");
}

#[test]
fn files_split_required_and_optional_keys_and_carry_literals_by_annotation() {
    let b = binding(
        &[
            (Field::Host, key("host")),
            (Field::Port, ValueSource::Literal("5432".to_owned())),
            (
                Field::Database,
                ValueSource::SecretKey {
                    key: "dbname".to_owned(),
                    optional: true,
                },
            ),
            (Field::User, key("username")),
            (Field::Password, key("password")),
        ],
        EnvSets {
            postgres: false,
            libpq: false,
            database_url: false,
        },
        true,
    );
    let (pod, _) = patched(bare_pod(), &[b]);
    let sources = pod["spec"]["volumes"][0]["projected"]["sources"]
        .as_array()
        .unwrap();
    assert_eq!(sources.len(), 3);
    assert_eq!(sources[0]["secret"]["items"].as_array().unwrap().len(), 3);
    assert_eq!(sources[0]["secret"].get("optional"), None);
    assert_eq!(sources[1]["secret"]["optional"], true);
    assert_eq!(
        sources[1]["secret"]["items"][0],
        json!({"key": "dbname", "path": "database"})
    );
    let paths: Vec<&str> = sources[2]["downwardAPI"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["port", "provider", "type"]);
    assert_eq!(
        pod["metadata"]["annotations"]["dbbind.io/value.db.port"],
        "5432"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["dbbind.io/value.db.type"],
        "postgresql"
    );
    // With env "none", the only variable is where the files are.
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        json!([{"name": "SERVICE_BINDING_ROOT", "value": "/bindings"}])
    );
}

#[test]
fn a_binding_with_only_literals_projects_no_secret_source() {
    // A secret source without items would project every key of the Secret.
    let b = binding(
        &[(Field::Host, ValueSource::Literal("h".to_owned()))],
        EnvSets::default(),
        true,
    );
    let (pod, _) = patched(bare_pod(), &[b]);
    let sources = pod["spec"]["volumes"][0]["projected"]["sources"]
        .as_array()
        .unwrap();
    assert_eq!(sources.len(), 1);
    assert!(sources[0].get("secret").is_none());
}

#[test]
fn the_containers_own_binding_root_decides_the_mount_path() {
    let pod = json!({"metadata": {}, "spec": {"containers": [{
        "name": "app", "image": "app:1",
        "env": [{"name": "SERVICE_BINDING_ROOT", "value": "/var/run/bindings/"}],
    }]}});
    let b = binding(&[(Field::Host, key("host"))], EnvSets::default(), true);
    let (pod, _) = patched(pod, &[b]);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        "/var/run/bindings/db"
    );
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["POSTGRES_HOST", "SERVICE_BINDING_ROOT"]);
}

#[test]
fn a_mount_at_the_binding_path_under_keep_is_left_with_a_warning() {
    let pod = json!({"metadata": {}, "spec": {"containers": [{
        "name": "app", "image": "app:1",
        "volumeMounts": [{"name": "mine", "mountPath": "/bindings/db"}],
    }], "volumes": [{"name": "mine", "emptyDir": {}}]}});
    let b = binding(&[(Field::Host, key("host"))], EnvSets::default(), true);
    let (pod, warnings) = patched(pod, &[b]);
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        warnings,
        [
            "dbbind: container \"app\" already mounts volume mine at /bindings/db; kept its own definition (dbbind.io/on-conflict: keep)"
        ]
    );
}
