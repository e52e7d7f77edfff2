//! `POST /mutate`: the HTTP side of admission. It only converts — bytes to an AdmissionReview,
//! a decision to a response — around the pure [`admission::review`], and enforces the limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use tokio::sync::Semaphore;
use tracing::field::Empty;

use super::profiles::SharedProfiles;
use crate::admission;
use crate::decision::Decision;
use crate::metrics::Metrics;
use crate::secret::SecretLookup;

/// Limits on one admission request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body accepted. An UPDATE review carries two objects, and pods can be large:
    /// several MiB, not the 2 MB common defaults.
    pub max_body_bytes: usize,
    /// Deadline from receiving the request to answering it; shorter than the webhook's
    /// `timeoutSeconds`, so the API server gets our answer, not its own timeout.
    pub request_timeout: Duration,
    /// Requests decided at once; more wait for a slot within their deadline.
    pub max_concurrent: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 6 * 1024 * 1024,
            request_timeout: Duration::from_secs(8),
            max_concurrent: 128,
        }
    }
}

/// What the handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: Arc<dyn SecretLookup + Send + Sync>,
    pub profiles: SharedProfiles,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    slots: Arc<Semaphore>,
}

impl WebhookState {
    pub fn new(
        secrets: Arc<dyn SecretLookup + Send + Sync>,
        profiles: SharedProfiles,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> WebhookState {
        WebhookState {
            secrets,
            profiles,
            metrics,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
        }
    }
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/mutate", post(mutate).fallback(wrong_method))
        .fallback(not_found)
        .with_state(state)
}

async fn wrong_method() -> Response {
    let mut response = reject(StatusCode::METHOD_NOT_ALLOWED, "dbbind: /mutate takes POST");
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

async fn not_found() -> Response {
    reject(
        StatusCode::NOT_FOUND,
        "dbbind: not found; admission reviews go to POST /mutate",
    )
}

/// A short plain-text refusal.
fn reject(status: StatusCode, reason: &str) -> Response {
    (status, format!("{reason}\n")).into_response()
}

async fn mutate(State(state): State<WebhookState>, request: Request) -> Response {
    let started = Instant::now();
    let (outcome, response) =
        match tokio::time::timeout(state.limits.request_timeout, handle(&state, request)).await {
            Ok(answer) => answer,
            Err(_) => (
                "error",
                reject(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dbbind: the request did not complete within its deadline",
                ),
            ),
        };
    state
        .metrics
        .observe_request(outcome, started.elapsed().as_secs_f64());
    response
}

async fn handle(state: &WebhookState, request: Request) -> (&'static str, Response) {
    let max = state.limits.max_body_bytes;
    if !is_json(request.headers()) {
        return (
            "error",
            reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "dbbind: the body must be an AdmissionReview as application/json",
            ),
        );
    }
    if content_length(request.headers()).is_some_and(|length| length > max) {
        return ("error", too_large(max));
    }
    // Wait for a slot (within the deadline set by the caller) before buffering the body.
    let Ok(_slot) = state.slots.acquire().await else {
        return (
            "error",
            reject(StatusCode::SERVICE_UNAVAILABLE, "dbbind: shutting down"),
        );
    };
    let body = match Limited::new(request.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return ("error", too_large(max));
        }
        Err(_) => {
            return (
                "error",
                reject(
                    StatusCode::BAD_REQUEST,
                    "dbbind: the request body could not be read",
                ),
            );
        }
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        // Position only: serde's text can quote the body, and a pod spec may hold a value.
        Err(error) => {
            let reason = format!(
                "dbbind: the body is not an AdmissionReview ({:?} error at line {} column {})",
                error.classify(),
                error.line(),
                error.column()
            );
            return ("error", reject(StatusCode::BAD_REQUEST, &reason));
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            return (
                "error",
                reject(
                    StatusCode::BAD_REQUEST,
                    "dbbind: the AdmissionReview carries no request",
                ),
            );
        }
    };
    decide(state, &request)
}

fn decide(
    state: &WebhookState,
    request: &AdmissionRequest<DynamicObject>,
) -> (&'static str, Response) {
    let object = request.object.as_ref().map(|object| &object.metadata);
    let pod = object
        .and_then(|m| {
            m.name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| m.generate_name.clone())
        })
        .unwrap_or_default();
    let span = tracing::info_span!(
        "admission",
        uid = %request.uid,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        pod = %pod,
        operation = ?request.operation,
        dry_run = request.dry_run,
        outcome = Empty,
    );
    let _entered = span.enter();
    let started = Instant::now();

    let profiles = state.profiles.current();
    let decision = admission::review(request, state.secrets.as_ref(), &profiles);
    let outcome = decision.outcome();
    span.record("outcome", outcome);
    match &decision {
        Decision::Allow {
            bindings, warnings, ..
        } => {
            for binding in bindings {
                state.metrics.observe_binding(&binding.profile);
            }
            if !bindings.is_empty() {
                let summary: Vec<String> = bindings.iter().map(ToString::to_string).collect();
                tracing::info!(
                    bindings = %summary.join(","),
                    warnings = warnings.len(),
                    micros = started.elapsed().as_micros(),
                    "admitted"
                );
            }
        }
        // Denial messages name annotations, Secrets and keys, never values.
        Decision::Deny { denial, .. } => {
            tracing::info!(code = denial.code, reason = %denial.message, "denied");
        }
    }
    match admission::response(request, decision) {
        Ok(response) => (outcome, Json(response.into_review()).into_response()),
        Err(_) => (
            "error",
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "dbbind: the patch could not be serialized",
            ),
        ),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(max: usize) -> Response {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("dbbind: the body is larger than {max} bytes"),
    )
}
