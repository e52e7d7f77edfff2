//! Helpers shared by the integration tests of dbbind-core and dbbind (fixtures, pods,
//! patches): a crate of its own, a dev-dependency only, so each test binary uses what it needs
//! and nothing is compiled twice under `#[path]`.
// Test helpers fail loudly: a fixture that does not parse is a broken test, not a case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dbbind_core::admission::mutate_pod;
use dbbind_core::decision::Decision;
use dbbind_core::profile::ProfileSet;
use dbbind_core::secret::{SecretStore, SecretView};
use k8s_openapi::api::core::v1::{EnvVar, Pod, Secret};
use serde_json::{Value, json};

/// A path from the repository's root (the workspace's), whichever crate's tests run.
pub fn repo_path(relative: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(crate_dir);
    root.join(relative)
}

/// The fixture Secrets, by file name.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_path("tests/fixtures/secrets"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

pub fn fixture_text(file: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("tests/fixtures/secrets/{file}"))).unwrap()
}

pub fn fixture_secret(file: &str) -> Secret {
    serde_yaml_ng::from_str(&fixture_text(file)).unwrap()
}

/// The profile a fixture's first line says `auto` must pick.
pub fn expected_profile(file: &str) -> String {
    let text = fixture_text(file);
    let first = text.lines().next().unwrap();
    first
        .strip_prefix("# expected profile: ")
        .unwrap_or_else(|| panic!("{file}: first line names no profile"))
        .trim()
        .to_owned()
}

pub fn store_of(secrets: &[&Secret]) -> SecretStore {
    secrets
        .iter()
        .map(|secret| SecretView::from_secret(secret, "default"))
        .collect()
}

/// A pod with these annotations and containers named as given (init containers prefixed `init:`).
pub fn pod(annotations: &[(&str, &str)], containers: &[&str]) -> Pod {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let (init, regular): (Vec<&str>, Vec<&str>) = containers
        .iter()
        .partition(|name| name.starts_with("init:"));
    let container =
        |name: &str| json!({"name": name.trim_start_matches("init:"), "image": "app:1"});
    let mut spec = json!({"containers": regular.iter().map(|n| container(n)).collect::<Vec<_>>()});
    if !init.is_empty() {
        spec["initContainers"] = init.iter().map(|n| container(n)).collect();
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "app-", "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

pub fn builtin() -> ProfileSet {
    ProfileSet::builtin()
}

/// Applies an allowed decision's patch to `pod`; panics on a denial.
pub fn apply(pod: &Pod, decision: &Decision) -> Pod {
    let Decision::Allow { patch, .. } = decision else {
        panic!("expected an allowed pod, got {decision:?}");
    };
    let mut value = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut value, &patch.0).unwrap();
    serde_json::from_value(value).unwrap()
}

pub fn patch_ops(decision: &Decision) -> usize {
    match decision {
        Decision::Allow { patch, .. } => patch.0.len(),
        Decision::Deny { denial, .. } => panic!("denied: {denial}"),
    }
}

pub fn denial(decision: &Decision) -> String {
    match decision {
        Decision::Deny { denial, .. } => denial.message().to_owned(),
        Decision::Allow { .. } => panic!("expected a denial, got {decision:?}"),
    }
}

/// The decision's warnings as the user reads them.
pub fn warnings(decision: &Decision) -> Vec<String> {
    decision
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Runs the core on a pod in `namespace`.
pub fn decide(pod: &Pod, namespace: &str, store: &SecretStore) -> Decision {
    mutate_pod(pod, namespace, store, &builtin())
}

/// A container's env as `NAME=secret:<key>` or `NAME=<literal>`, in order.
pub fn env_summary(pod: &Pod, container: &str) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let container = all.into_iter().find(|c| c.name == container).unwrap();
    container.env.iter().flatten().map(describe_env).collect()
}

pub fn describe_env(var: &EnvVar) -> String {
    match (&var.value, &var.value_from) {
        (Some(value), None) => format!("{}={value}", var.name),
        (None, Some(from)) => {
            let secret = from.secret_key_ref.as_ref().unwrap();
            let optional = if secret.optional == Some(true) {
                "?"
            } else {
                ""
            };
            format!(
                "{}=secret:{}/{}{optional}",
                var.name, secret.name, secret.key
            )
        }
        other => panic!("unexpected env shape {other:?}"),
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}
