//! Prometheus metrics (DESIGN §6), served on the admin port's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabels {
    profile: String,
}

/// Every metric dbbind exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    bindings: Family<ProfileLabels, Counter>,
    cache_objects: Gauge,
    certificate_expiry: Gauge,
}

/// Outcomes of an admission request, as the `outcome` label.
pub const OUTCOMES: [&str; 4] = ["patched", "unchanged", "denied", "error"];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<OutcomeLabels, Counter>::default();
        // The counter's exposition adds `_total`.
        registry.register(
            "dbbind_admission_requests",
            "Admission requests answered, by outcome",
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
        // Every outcome is exported from the start, so rates work before the first denial.
        for outcome in OUTCOMES {
            let _ = requests.get_or_create(&OutcomeLabels { outcome });
        }
        Metrics {
            registry,
            requests,
            duration,
            bindings,
            cache_objects,
            certificate_expiry,
        }
    }

    /// Records one answered admission request.
    pub fn observe_request(&self, outcome: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
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

    pub fn set_cache_objects(&self, count: usize) {
        self.cache_objects
            .set(i64::try_from(count).unwrap_or(i64::MAX));
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
