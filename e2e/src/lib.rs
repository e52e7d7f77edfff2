//! dbbind's end-to-end harness. It starts, on free loopback ports and with a PKI of its own,
//! Debian's etcd, the pinned upstream kube-apiserver and kube-controller-manager (built by
//! `scripts/k8s-tools`), a real node (containerd from `scripts/node-tools`, Debian's runc, the
//! kubelet and kube-scheduler), Debian's PostgreSQL, and `dbbind serve`; registers the webhook
//! the way `webhook-config/` does, with a URL client config; and runs the examples' pods on the
//! node, where an unmodified psql connects with what the kubelet gave the container.
//!
//! Everything it starts stops when its handle is dropped.

pub mod app;
pub mod capture;
pub mod cluster;
pub mod forward;
pub mod image;
pub mod kyverno;
pub mod load;
pub mod network;
pub mod node;
pub mod pgbouncer;
pub mod poll;
pub mod postgres;
pub mod process;
pub mod release;
pub mod scenarios;
pub mod tools;
pub mod trials;
pub mod webhook;
pub mod workload;

use anyhow::anyhow;
/// A harness failure, with a message that says what to look at and, through `anyhow`'s
/// context, what it was doing (`{:#}` prints the chain).
pub use anyhow::{Error, Result};

/// The documents of a YAML stream (a manifest, `helm template` output) as JSON values, empty
/// documents left out.
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(document).map_err(|e| anyhow!("YAML: {e}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}
