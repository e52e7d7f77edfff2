//! The Helm chart, offline: lint, the objects each certificate mode renders, the values schema,
//! the RBAC and webhook rules, and what is kept in step with the chart (the plain manifests in
//! webhook-config/, the README's install commands). One module per theme.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_step;
mod lint;
mod modes;
mod real_clusters;
mod scope;
mod workload_kinds;

use std::collections::BTreeSet;
use std::process::Command;

use dbbind_e2e::tools::{k8s_bin_dir, repo_root};
use serde_json::{Value, json};

pub fn helm(args: &[&str]) -> std::process::Output {
    Command::new(k8s_bin_dir().unwrap().join("helm"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

/// `helm template` with these `--set` values: the objects, or helm's error.
pub fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
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

pub fn yaml_documents(text: &str) -> Vec<Value> {
    dbbind_e2e::yaml_documents(text).unwrap()
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

pub fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}
