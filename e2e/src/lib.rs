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
pub mod postgres;
pub mod process;
pub mod release;
pub mod scenarios;
pub mod tools;
pub mod webhook;
pub mod workload;

use std::fmt;

/// A harness failure, with a message that says what to look at.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Error {
        Error(format!("Kubernetes API: {error}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error(format!("JSON: {error}"))
    }
}

impl From<serde_yaml_ng::Error> for Error {
    fn from(error: serde_yaml_ng::Error) -> Error {
        Error(format!("YAML: {error}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error(format!("I/O: {error}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The documents of a YAML stream (a manifest, `helm template` output) as JSON values, empty
/// documents left out.
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)
            .map_err(|e| Error::new(format!("YAML: {e}")))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}
