//! A webhook that records what kube-apiserver sends and admits everything: the source of the
//! AdmissionReview fixtures the router tests use (`tests/fixtures/admission/`).

use anyhow::anyhow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dbbind::server::listener::{ConnectionLimits, serve_tls};
use dbbind::tls::generate::{SubjectNames, issue_serving, new_ca};
use dbbind::tls::{CertStore, ServingCert, server_config};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::Result;

pub struct Capture {
    pub port: u16,
    pub ca_pem: String,
    reviews: Arc<Mutex<Vec<Value>>>,
    _stop: watch::Sender<bool>,
}

impl Capture {
    /// Serves on a free loopback port, on the current tokio runtime.
    pub async fn start() -> Result<Capture> {
        dbbind::tls::install_crypto_provider();
        let now = OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        let ca = new_ca("capture CA", hour, now).map_err(|e| anyhow!("{e}"))?;
        let names = SubjectNames {
            dns: vec![],
            ips: vec!["127.0.0.1".parse().map_err(|_| anyhow!("ip"))?],
        };
        let pair = issue_serving(&ca, &names, hour, now).map_err(|e| anyhow!("{e}"))?;
        let store = CertStore::new();
        store.set(
            ServingCert::from_pem(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())
                .map_err(|e| anyhow!("{e}"))?,
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
            server_config(store).map_err(|e| anyhow!("{e}"))?,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let reviews: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = axum::Router::new()
            .route("/capture", post(record))
            .with_state(Arc::clone(&reviews));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve_tls(
            listener,
            acceptor,
            app,
            ConnectionLimits::default(),
            stopped,
            Duration::from_secs(1),
        ));
        Ok(Capture {
            port,
            ca_pem: ca.cert_pem,
            reviews,
            _stop: stop,
        })
    }

    /// A MutatingWebhookConfiguration sending pod and workload requests of namespaces labelled
    /// `dbbind-e2e/capture=true` here.
    pub fn configuration(&self) -> String {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "dbbind-e2e-capture"},
            "webhooks": [{
                "name": "capture.dbbind-e2e.invalid",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 5,
                "clientConfig": {"url": format!("https://127.0.0.1:{}/capture", self.port), "caBundle": STANDARD.encode(&self.ca_pem)},
                "rules": [
                    {"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]},
                    {"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"]},
                    {"operations": ["CREATE", "UPDATE"], "apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs", "cronjobs"]},
                ],
                "namespaceSelector": {"matchLabels": {"dbbind-e2e/capture": "true"}},
            }],
        })
        .to_string()
    }

    pub fn reviews(&self) -> Vec<Value> {
        self.reviews.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn record(
    State(reviews): State<Arc<Mutex<Vec<Value>>>>,
    Json(review): Json<Value>,
) -> Json<Value> {
    let uid = review["request"]["uid"].clone();
    if let Ok(mut reviews) = reviews.lock() {
        reviews.push(review);
    }
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    }))
}

/// Every key path of a JSON value (`request.object.metadata.generateName`, array items as `[]`):
/// the shape of a review, whatever its values.
pub fn key_paths(value: &Value) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, path: String, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    out.insert(child_path.clone());
                    // managedFields' fieldsV1 keys name fields and uids: data, not shape.
                    if key != "fieldsV1" {
                        walk(child, child_path, out);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(value, String::new(), &mut out);
    out
}
