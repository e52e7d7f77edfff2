//! The admin listener (plain HTTP): `/livez`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::tls::CertStore;

/// Whether dbbind should receive admission requests: the certificate is loaded, the listener
/// is bound, the Secret cache has synced, and no shutdown has begun.
pub struct Readiness {
    certs: Arc<CertStore>,
    cache_synced: Box<dyn Fn() -> bool + Send + Sync>,
    listener_bound: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn new(
        certs: Arc<CertStore>,
        cache_synced: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Readiness {
        Readiness {
            certs,
            cache_synced: Box::new(cache_synced),
            listener_bound: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn set_listener_bound(&self) {
        self.listener_bound.store(true, Ordering::Release);
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// What keeps dbbind from being ready; empty when ready.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut problems = Vec::new();
        if self.shutting_down.load(Ordering::Acquire) {
            problems.push("shutting down");
        }
        if !self.certs.is_loaded() {
            problems.push("no serving certificate loaded");
        }
        if !self.listener_bound.load(Ordering::Acquire) {
            problems.push("admission listener not bound");
        }
        if !(self.cache_synced)() {
            problems.push("Secret cache not synced");
        }
        problems
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness, metrics })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let problems = state.readiness.problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join(", ")),
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
