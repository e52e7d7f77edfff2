//! `POST /mutate` and `POST /validate`: the HTTP side of admission. It only converts — bytes to
//! an AdmissionReview, a decision to a response and Events — around the core's pure decisions
//! ([`admission::review`] for Pods, [`workload::review`] for workload templates), and enforces
//! the limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use dbbind_core::admission;
use dbbind_core::decision::Decision;
use dbbind_core::rules::RotationRestarts;
use dbbind_core::secret::SecretLookup;
use dbbind_core::workload;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use tokio::sync::Semaphore;
use tracing::field::Empty;

use super::body::{self, BodyBudget, BodyError};
use super::error::RequestError;
use super::response::{ReviewResponse, admission_response};
use crate::cache::SecretCache;
use crate::events::{EventQueue, PendingEvent, Reason, owner_of};
use crate::metrics::{Metrics, Outcome, Webhook};
use crate::profiles::SharedProfiles;

/// Limits on one admission request (flags of `dbbind serve`).
#[derive(Clone, Copy, Debug, clap::Args)]
#[command(next_help_heading = "Admission requests")]
pub struct Limits {
    /// Largest AdmissionReview body accepted, in bytes. An UPDATE review carries two objects,
    /// and pods can be large: several MiB, not the 2 MB common defaults.
    #[arg(long, env = "DBBIND_MAX_BODY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Deadline for one admission request; keep it below the webhook's timeoutSeconds, so the
    /// API server gets dbbind's answer, not its own timeout.
    #[arg(long, env = "DBBIND_REQUEST_TIMEOUT", default_value = "8s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Admission requests decided at once; more wait within their deadline.
    #[arg(
        long = "max-concurrent-requests",
        env = "DBBIND_MAX_CONCURRENT_REQUESTS",
        default_value_t = 128
    )]
    pub max_concurrent: usize,
    /// Bytes of request bodies held in memory at once, across all requests (at least
    /// --max-body-bytes); arriving bodies wait when it is spent.
    #[arg(long, env = "DBBIND_MAX_BUFFERED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_buffered_bytes: usize,
    /// Time a client has to send a request's whole body once its headers are in.
    #[arg(long, env = "DBBIND_BODY_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        crate::flags::defaults()
    }
}

/// What the handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: Arc<dyn SecretLookup + Send + Sync>,
    pub profiles: SharedProfiles,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Where warnings and denials of controller-made pods go as Events; none in tests that do
    /// not look at them.
    pub events: Option<EventQueue>,
    /// The Secret cache, when the server runs with one: an admission in a namespace whose
    /// Secrets are still being listed waits for them.
    pub cache: Option<SecretCache>,
    /// Whether `dbbind serve` restarts workloads on rotation: when it does not, an opted-in
    /// pod or template is warned that nothing will.
    pub restarts_on_rotation: bool,
    slots: Arc<Semaphore>,
    bodies: BodyBudget,
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
            events: None,
            cache: None,
            restarts_on_rotation: false,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            bodies: BodyBudget::new(limits.max_buffered_bytes.max(limits.max_body_bytes)),
        }
    }

    /// Records warnings and denials of controller-made pods as Events through `queue`.
    pub fn with_events(mut self, queue: EventQueue) -> WebhookState {
        self.events = Some(queue);
        self
    }

    /// Says whether workloads that opt in are restarted on rotation.
    pub fn with_restarts_on_rotation(mut self, enabled: bool) -> WebhookState {
        self.restarts_on_rotation = enabled;
        self
    }

    /// Makes each admission wait until its namespace's Secrets are in `cache`.
    pub fn with_cache(mut self, cache: SecretCache) -> WebhookState {
        self.cache = Some(cache);
        self
    }
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|state, request| answer(state, request, Webhook::Mutate))
                .fallback(|| async { RequestError::Method("/mutate") }),
        )
        .route(
            "/validate",
            post(|state, request| answer(state, request, Webhook::Validate))
                .fallback(|| async { RequestError::Method("/validate") }),
        )
        .fallback(|| async { RequestError::NotFound })
        .with_state(state)
}

async fn answer(State(state): State<WebhookState>, request: Request, webhook: Webhook) -> Response {
    let started = Instant::now();
    let answer = tokio::time::timeout(
        state.limits.request_timeout,
        handle(&state, request, webhook),
    )
    .await
    .unwrap_or(Err(RequestError::Deadline));
    let (outcome, response) = match answer {
        Ok((outcome, review)) => (outcome, Json(review).into_response()),
        Err(error) => (Outcome::Error, error.into_response()),
    };
    state
        .metrics
        .observe_request(webhook, outcome, started.elapsed().as_secs_f64());
    response
}

async fn handle(
    state: &WebhookState,
    request: Request,
    webhook: Webhook,
) -> Result<(Outcome, ReviewResponse), RequestError> {
    let max = state.limits.max_body_bytes;
    if !is_json(request.headers()) {
        return Err(RequestError::NotJson);
    }
    let discard_limit = max.saturating_mul(body::DISCARD_FACTOR);
    if let Some(length) = content_length(request.headers())
        && length > max
    {
        // Refused unread; a body not much larger is read and dropped so the client sees the
        // 413 (server/body.rs), a larger one is cut off.
        if length <= discard_limit {
            body::discard(request.into_body(), length).await;
        }
        return Err(RequestError::TooLarge(max));
    }
    // The body is read before a decision slot is taken, so streams whose bodies never come
    // hold no slot; they hold only what they sent, of a shared budget, until the body-read
    // deadline (server/body.rs).
    let limits = state.limits;
    let read = body::read(request.into_body(), max, &state.bodies);
    let body = match tokio::time::timeout(limits.body_read_timeout, read).await {
        Err(_) => return Err(RequestError::BodyTimeout(limits.body_read_timeout)),
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge(rest))) => {
            body::discard(rest, discard_limit).await;
            return Err(RequestError::TooLarge(max));
        }
        Ok(Err(BodyError::Unreadable)) => return Err(RequestError::Unreadable),
    };
    // Decoding and deciding are CPU work (and decoding multiplies the body's memory): at most
    // max_concurrent at once; others wait within the request's deadline.
    let _slot = state
        .slots
        .acquire()
        .await
        .map_err(|_| RequestError::ShuttingDown)?;
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(&body.bytes).map_err(|error| RequestError::not_a_review(&error))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| RequestError::NoRequest)?;
    if let (Some(cache), Some(namespace)) = (&state.cache, &request.namespace) {
        cache.wait_for(namespace).await;
    }
    decide(state, &request, webhook)
}

fn decide(
    state: &WebhookState,
    request: &AdmissionRequest<DynamicObject>,
    webhook: Webhook,
) -> Result<(Outcome, ReviewResponse), RequestError> {
    let object = request.object.as_ref().map(|object| &object.metadata);
    let name = object
        .and_then(|m| {
            m.name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| m.generate_name.clone())
        })
        .unwrap_or_default();
    let span = tracing::info_span!(
        "admission",
        %webhook,
        uid = %request.uid,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        kind = %request.kind.kind,
        name = %name,
        operation = ?request.operation,
        dry_run = request.dry_run,
        outcome = Empty,
    );
    let _entered = span.enter();
    let started = Instant::now();

    let profiles = state.profiles.current();
    let secrets = state.secrets.as_ref();
    let restarts = if state.restarts_on_rotation {
        RotationRestarts::On
    } else {
        RotationRestarts::Off
    };
    let decision = match webhook {
        Webhook::Mutate => admission::review(request, secrets, &profiles, restarts),
        Webhook::Validate => workload::review(request, secrets, &profiles, restarts),
    };
    let outcome = Outcome::of(&decision);
    span.record("outcome", outcome.as_str());
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
            tracing::info!(reason = %denial, "denied");
        }
    }
    if webhook == Webhook::Mutate
        && let Some(events) = &state.events
    {
        offer_events(events, request, &decision);
    }
    let response = admission_response(request, decision).map_err(|error| {
        tracing::error!(%error, "the admission response could not be encoded");
        RequestError::Encode
    })?;
    Ok((outcome, response))
}

/// For a Pod a controller is creating (not a dry run), each warning and a denial as an Event on
/// its owner: the user is not watching the Pod's admission, but `kubectl describe` shows the
/// owner's Events.
fn offer_events(
    events: &EventQueue,
    request: &AdmissionRequest<DynamicObject>,
    decision: &Decision,
) {
    if request.dry_run || request.operation != Operation::Create {
        return;
    }
    let Some(object) = &request.object else {
        return;
    };
    let owners = object
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    let Some(owner) = owner_of(owners) else {
        return;
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_default();
    let offer = |reason: Reason, message: &str| {
        events.offer(PendingEvent {
            namespace: namespace.clone(),
            owner: owner.clone(),
            reason,
            message: message.to_owned(),
        });
    };
    for warning in decision.warnings() {
        offer(Reason::BindingWarning, warning.message());
    }
    if let Decision::Deny { denial, .. } = decision {
        offer(Reason::BindingDenied, denial.message());
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
