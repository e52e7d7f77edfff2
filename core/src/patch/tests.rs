use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::binding::{BindingRequest, ResolvedBinding, ValueSource};
use crate::env_set::{EnvSet, EnvSets};
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
            endpoint: None,
            pooler: None,
            ca: None,
            client_cert: None,
        },
        profile: "generic".to_owned(),
        fields: fields.iter().cloned().collect(),
        tls: Vec::new(),
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

fn names_and_values(pod: &serde_json::Value) -> Vec<(String, String)> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| {
            let value = match var.get("value") {
                Some(value) => value.as_str().unwrap().to_owned(),
                None => format!(
                    "<{}>",
                    var["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap()
                ),
            };
            (var["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[test]
fn database_url_is_composed_without_the_password_which_gets_pgpassword() {
    let sets = EnvSets::from_iter([EnvSet::Postgres, EnvSet::DatabaseUrl]);
    let b = binding(
        &[
            (Field::Host, key("h")),
            (Field::User, key("u")),
            (Field::Password, key("p")),
        ],
        sets,
        false,
    );
    let (pod, warnings) = patched(bare_pod(), &[b]);
    let env = names_and_values(&pod);
    assert_eq!(
        &env[3..],
        [
            pair(
                "DATABASE_URL",
                "postgresql://$(POSTGRES_USER)@$(POSTGRES_HOST)/"
            ),
            pair("PGPASSWORD", "<p>"),
        ]
    );
    assert!(warnings[0].contains("without the password"), "{warnings:?}");
    assert!(warnings[0].contains("Prisma"), "{warnings:?}");
}

fn full_binding(sets: EnvSets) -> ResolvedBinding {
    binding(
        &[
            (Field::Host, key("host")),
            (Field::Port, ValueSource::Literal("5432".to_owned())),
            (Field::Database, key("dbname")),
            (Field::User, key("user")),
            (Field::Password, key("password")),
            (Field::Sslmode, ValueSource::Literal("require".to_owned())),
        ],
        sets,
        false,
    )
}

#[test]
fn framework_sets_compose_from_references_and_keep_the_password_apart() {
    let sets = EnvSets::from_iter([
        EnvSet::Postgres,
        EnvSet::Spring,
        EnvSet::Quarkus,
        EnvSet::Jdbc,
        EnvSet::Dotnet,
    ]);
    let (pod, warnings) = patched(bare_pod(), &[full_binding(sets)]);
    let env = names_and_values(&pod);
    let jdbc = "jdbc:postgresql://$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)?sslmode=$(POSTGRES_SSLMODE)";
    assert_eq!(
        &env[6..],
        [
            pair("SPRING_DATASOURCE_URL", jdbc),
            pair("SPRING_DATASOURCE_USERNAME", "<user>"),
            pair("SPRING_DATASOURCE_PASSWORD", "<password>"),
            pair("QUARKUS_DATASOURCE_DB_KIND", "postgresql"),
            pair("QUARKUS_DATASOURCE_JDBC_URL", jdbc),
            pair("QUARKUS_DATASOURCE_USERNAME", "<user>"),
            pair("QUARKUS_DATASOURCE_PASSWORD", "<password>"),
            pair("POSTGRES_JDBC_URL", jdbc),
            pair(
                "ConnectionStrings__Default",
                "Host=$(POSTGRES_HOST);Port=$(POSTGRES_PORT);Database=$(POSTGRES_DB);Username=$(POSTGRES_USER)"
            ),
            pair("PGPASSWORD", "<password>"),
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // No composed value names the password.
    assert!(env.iter().all(|(_, value)| !value.contains("PASSWORD)")));
}

#[test]
fn without_the_postgres_or_libpq_set_composed_strings_refer_to_helper_variables() {
    let sets = EnvSets::from_iter([EnvSet::Jdbc]);
    let (pod, _) = patched(bare_pod(), &[full_binding(sets)]);
    assert_eq!(
        names_and_values(&pod),
        [
            pair("DBBIND_DB_HOST", "<host>"),
            pair("DBBIND_DB_PORT", "5432"),
            pair("DBBIND_DB_DATABASE", "<dbname>"),
            pair("DBBIND_DB_USER", "<user>"),
            pair("DBBIND_DB_SSLMODE", "require"),
            pair(
                "POSTGRES_JDBC_URL",
                "jdbc:postgresql://$(DBBIND_DB_HOST):$(DBBIND_DB_PORT)/$(DBBIND_DB_DATABASE)?sslmode=$(DBBIND_DB_SSLMODE)"
            ),
        ]
    );
}

#[test]
fn the_libpq_set_and_database_url_share_one_pgpassword() {
    let sets = EnvSets::from_iter([EnvSet::Libpq, EnvSet::DatabaseUrl]);
    let (pod, _) = patched(bare_pod(), &[full_binding(sets)]);
    let env = names_and_values(&pod);
    assert_eq!(
        env.iter().filter(|(name, _)| name == "PGPASSWORD").count(),
        1
    );
    assert_eq!(
        env.last().unwrap(),
        &pair(
            "DATABASE_URL",
            "postgresql://$(PGUSER)@$(PGHOST):$(PGPORT)/$(PGDATABASE)?sslmode=$(PGSSLMODE)"
        )
    );
}

#[test]
fn a_named_binding_prefixes_its_sets_and_names_its_connection_string() {
    let mut b = full_binding(EnvSets::from_iter([EnvSet::Spring, EnvSet::Dotnet]));
    b.request.alias = Some("read-replica".to_owned());
    let (pod, _) = patched(bare_pod(), &[b]);
    let names: Vec<String> = names_and_values(&pod).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"DBBIND_READ_REPLICA_HOST".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"READ_REPLICA_SPRING_DATASOURCE_URL".to_owned()));
    assert!(names.contains(&"ConnectionStrings__read_replica".to_owned()));
    assert!(names.contains(&"READ_REPLICA_PGPASSWORD".to_owned()));
}

#[test]
fn reinvocation_of_framework_sets_adds_nothing() {
    let sets = EnvSets::from_iter([EnvSet::Spring, EnvSet::DatabaseUrl, EnvSet::Dotnet]);
    let b = full_binding(sets);
    let (once, _) = patched(bare_pod(), std::slice::from_ref(&b));
    let typed: Pod = serde_json::from_value(once).unwrap();
    let mut warnings = Vec::new();
    let again = build_patch(&typed, &[b], None, OnConflict::Keep, &mut warnings).unwrap();
    assert!(again.0.is_empty(), "{:?}", again.0);
}

#[test]
fn literal_values_escape_variable_references() {
    let b = binding(
        &[
            (Field::Host, ValueSource::Literal("a$(B)".to_owned())),
            (Field::User, key("u")),
            (Field::Password, key("p")),
        ],
        EnvSets::postgres_only(),
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
        EnvSets::NONE,
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
        EnvSets::postgres_only(),
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
    let b = binding(
        &[(Field::Host, key("host"))],
        EnvSets::postgres_only(),
        true,
    );
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
    let b = binding(
        &[(Field::Host, key("host"))],
        EnvSets::postgres_only(),
        true,
    );
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
