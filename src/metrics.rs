//! Prometheus metrics (docs/design.md §6), served on the admin port's `/metrics`, and the
//! outcome of an admission request, which labels both the request counter and the log line.

use std::fmt;

use dbbind_core::decision::Decision;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label values that are also log fields: each enum's `as_str` is its only spelling.
macro_rules! label_values {
    ($($label:ty),*) => {$(
        impl fmt::Display for $label {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $label {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}

label_values!(Outcome, Webhook, EventResult);

/// How an admission request was answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted with a patch.
    Patched,
    /// Admitted as it is.
    Unchanged,
    /// Denied, with a message for the user.
    Denied,
    /// Answered with an HTTP error (400, 413, 415, 503, …): no decision was made.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Patched,
        Outcome::Unchanged,
        Outcome::Denied,
        Outcome::Error,
    ];

    pub fn of(decision: &Decision) -> Outcome {
        match decision {
            Decision::Deny { .. } => Outcome::Denied,
            allowed if allowed.is_unchanged() => Outcome::Unchanged,
            Decision::Allow { .. } => Outcome::Patched,
        }
    }

    /// The label value and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// Which webhook answered: the Pod mutation, or the check of a workload's template.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Webhook {
    /// `POST /mutate`: Pods.
    Mutate,
    /// `POST /validate`: workload templates.
    Validate,
}

impl Webhook {
    pub const ALL: [Webhook; 2] = [Webhook::Mutate, Webhook::Validate];

    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Mutate => "mutate",
            Webhook::Validate => "validate",
        }
    }
}

/// What became of an Event dbbind offered (see `events`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum EventResult {
    /// Written to the API server.
    Sent,
    /// The same message for the same owner was written within the dedup window.
    Deduplicated,
    /// The queue was full: dropped rather than delay an admission.
    Dropped,
    /// The API server refused it (e.g. no RBAC for events).
    Failed,
}

impl EventResult {
    pub const ALL: [EventResult; 4] = [
        EventResult::Sent,
        EventResult::Deduplicated,
        EventResult::Dropped,
        EventResult::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Sent => "sent",
            EventResult::Deduplicated => "deduplicated",
            EventResult::Dropped => "dropped",
            EventResult::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    result: EventResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    webhook: Webhook,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabels {
    profile: String,
}

/// Every metric dbbind exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    bindings: Family<ProfileLabels, Counter>,
    cache_objects: Gauge,
    certificate_expiry: Gauge,
    events: Family<EventLabels, Counter>,
    profiles_file_valid: Gauge,
    rotations_seen: Counter,
    rollouts: Counter,
    rollout_failures: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // The counter's exposition adds `_total`.
        registry.register(
            "dbbind_admission_requests",
            "Admission requests answered, by webhook and outcome",
            requests.clone(),
        );
        // Decisions take microseconds; a slow request is one waiting for its body or a slot.
        let duration = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "dbbind_admission_duration_seconds",
            "Time from receiving an admission request to answering it",
            duration.clone(),
        );
        let bindings = Family::<ProfileLabels, Counter>::default();
        registry.register(
            "dbbind_bindings",
            "Bindings injected into pods, by profile",
            bindings.clone(),
        );
        let cache_objects = Gauge::default();
        registry.register(
            "dbbind_secret_cache_objects",
            "Secrets in the watch cache",
            cache_objects.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "dbbind_tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate expires, in seconds since the epoch",
            certificate_expiry.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "dbbind_events",
            "Events offered for controller-made pods, by what became of them",
            events.clone(),
        );
        // 1 until a --profiles-file that does not load is seen: an alert on 0 finds a broken
        // ConfigMap that the previous profiles are hiding.
        let profiles_file_valid = Gauge::default();
        profiles_file_valid.set(1);
        registry.register(
            "dbbind_profiles_file_valid",
            "1 when --profiles-file (if any) loaded at its last change, 0 while it does not load and the previous profiles stay in effect",
            profiles_file_valid.clone(),
        );
        // Restart on rotation (0 while it is off). Counted by Secret and by workload: no
        // Secret's name or content is a label.
        let rotations_seen = Counter::default();
        registry.register(
            "dbbind_rotations_seen",
            "Changes of a cached Secret's data seen by this replica (with --restart-on-rotation)",
            rotations_seen.clone(),
        );
        let rollouts = Counter::default();
        registry.register(
            "dbbind_rollouts",
            "Workloads rolled by this replica because a Secret their pods read through env changed",
            rollouts.clone(),
        );
        let rollout_failures = Counter::default();
        registry.register(
            "dbbind_rollout_failures",
            "Rollouts this replica attempted that the API server refused or did not answer",
            rollout_failures.clone(),
        );
        for result in EventResult::ALL {
            let _ = events.get_or_create(&EventLabels { result });
        }
        // Every outcome is exported from the start, so rates work before the first denial.
        for webhook in Webhook::ALL {
            for outcome in Outcome::ALL {
                let _ = requests.get_or_create(&RequestLabels { webhook, outcome });
            }
        }
        Metrics {
            registry,
            requests,
            duration,
            bindings,
            cache_objects,
            certificate_expiry,
            events,
            profiles_file_valid,
            rotations_seen,
            rollouts,
            rollout_failures,
        }
    }

    /// Records one answered admission request.
    pub fn observe_request(&self, webhook: Webhook, outcome: Outcome, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { webhook, outcome })
            .inc();
        self.duration.observe(seconds);
    }

    pub fn observe_binding(&self, profile: &str) {
        self.bindings
            .get_or_create(&ProfileLabels {
                profile: profile.to_owned(),
            })
            .inc();
    }

    pub fn observe_event(&self, result: EventResult) {
        self.events.get_or_create(&EventLabels { result }).inc();
    }

    pub fn observe_rotations(&self, secrets: usize) {
        self.rotations_seen
            .inc_by(u64::try_from(secrets).unwrap_or(u64::MAX));
    }

    pub fn observe_rollout(&self, succeeded: bool) {
        if succeeded {
            self.rollouts.inc();
        } else {
            self.rollout_failures.inc();
        }
    }

    pub fn set_cache_objects(&self, count: usize) {
        self.cache_objects
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_profiles_file_valid(&self, valid: bool) {
        self.profiles_file_valid.set(i64::from(valid));
    }

    pub fn set_certificate_expiry(&self, not_after: i64) {
        self.certificate_expiry.set(not_after);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
