//! Kubernetes Events for controller-made pods (docs/design.md §7).
//!
//! A warning on a Pod a ReplicaSet creates reaches kube-controller-manager, which drops it, and a
//! denial becomes a `FailedCreate` retried forever. So dbbind also records each warning and
//! denial as an Event on the pod's owner, where `kubectl describe rs` and `kubectl events` show
//! it.
//!
//! Events never delay or fail an admission: the request path only offers them to a bounded
//! queue ([`EventQueue::offer`], which drops and counts when the queue is full), and a
//! background task ([`EventWriter`]) writes them through the `events.k8s.io/v1` API. The same
//! message for the same owner is written once per dedup window, so a ReplicaSet retrying a
//! denied pod does not flood the namespace with copies.
//!
//! Why not kube-runtime's `events::Recorder` (kube 5.0), which writes the same
//! `events.k8s.io/v1` Events with series: it keys its de-duplication on type, action, reason,
//! reporter and the object, not on the note, so a second, different warning about the same
//! ReplicaSet (a pod often has several) would be recorded as one more occurrence of the first,
//! its own text lost; and it writes on every occurrence (a PATCH of the series count), so a
//! ReplicaSet retrying a denied pod costs an API write per retry, where dbbind writes once per
//! window and counts the rest in `dbbind_events_total{result="deduplicated"}`. Its `publish`
//! is also awaited, so the bounded queue in front of it would stay. dbbind's writer takes its
//! shape (name `<object>.<nanoseconds>`, `reportingController`, `reportingInstance`, the
//! 1 kB note) from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::mpsc;

use crate::metrics::{EventResult, Metrics};

/// Why dbbind speaks up: `BindingWarning` for a warning, `BindingDenied` for a denial;
/// `SecretRotated` on a workload dbbind rolled because a Secret changed, and
/// `RotationNotRestartable` on one it cannot roll (a Job, a bare Pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    BindingWarning,
    BindingDenied,
    SecretRotated,
    RotationNotRestartable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BindingWarning => "BindingWarning",
            Reason::BindingDenied => "BindingDenied",
            Reason::SecretRotated => "SecretRotated",
            Reason::RotationNotRestartable => "RotationNotRestartable",
        }
    }

    /// `Normal` for a rollout dbbind made, `Warning` for everything that needs a person.
    fn event_type(self) -> &'static str {
        match self {
            Reason::SecretRotated => "Normal",
            _ => "Warning",
        }
    }

    /// The Event's `action`: what dbbind did or tried.
    fn action(self) -> &'static str {
        match self {
            Reason::BindingWarning | Reason::BindingDenied => "Bind",
            Reason::SecretRotated | Reason::RotationNotRestartable => "Restart",
        }
    }
}

/// One Event to write: about `owner`, in `namespace`.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingEvent {
    pub namespace: String,
    pub owner: OwnerReference,
    pub reason: Reason,
    /// A dbbind message: names annotations, Secrets and keys, never values.
    pub message: String,
}

/// The request path's side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<PendingEvent>,
    metrics: Arc<Metrics>,
}

/// The background side: writes what the queue holds.
pub struct EventWriter {
    receiver: mpsc::Receiver<PendingEvent>,
    metrics: Arc<Metrics>,
    /// When each (owner, reason, message) was last written.
    written: HashMap<(String, Reason, String), Instant>,
    dedup_window: Duration,
    reporting_instance: String,
}

/// Events' flags of `dbbind serve`.
#[derive(Clone, Copy, Debug, clap::Args)]
#[command(next_help_heading = "Events")]
pub struct EventFlags {
    /// Events queued for writing at most; when full, an Event is dropped (and counted) rather
    /// than delay an admission.
    #[arg(long, env = "DBBIND_EVENT_QUEUE_CAPACITY", default_value_t = 1024)]
    pub event_queue_capacity: usize,
    /// The same Event (owner, reason, message) is written at most once per this window.
    #[arg(long, env = "DBBIND_EVENT_DEDUP_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub event_dedup_window: Duration,
}

/// A queue of at most `capacity` events, and its writer.
pub fn event_queue(
    capacity: usize,
    dedup_window: Duration,
    reporting_instance: &str,
    metrics: Arc<Metrics>,
) -> (EventQueue, EventWriter) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let queue = EventQueue {
        sender,
        metrics: Arc::clone(&metrics),
    };
    let writer = EventWriter {
        receiver,
        metrics,
        written: HashMap::new(),
        dedup_window,
        reporting_instance: reporting_instance.to_owned(),
    };
    (queue, writer)
}

impl EventQueue {
    /// Queues `event`; when the queue is full it is dropped and counted, never waited for.
    pub fn offer(&self, event: PendingEvent) {
        if self.sender.try_send(event).is_err() {
            self.metrics.observe_event(EventResult::Dropped);
        }
    }
}

/// The controller among a pod's owners (the one `kubectl describe` shows), or its first owner.
pub fn owner_of(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .or_else(|| owners.first())
}

/// The reporting controller's name on every Event dbbind writes.
pub const REPORTING_CONTROLLER: &str = "dbbind.io/dbbind";
/// Events.k8s.io limits a note to 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

impl EventWriter {
    /// Writes queued events until every [`EventQueue`] is gone.
    pub async fn run(mut self, client: kube::Client) {
        while let Some(event) = self.receiver.recv().await {
            if !self.first_in_window(&event) {
                self.metrics.observe_event(EventResult::Deduplicated);
                continue;
            }
            let api: Api<Event> = Api::namespaced(client.clone(), &event.namespace);
            match api
                .create(&PostParams::default(), &self.to_event(&event))
                .await
            {
                Ok(_) => self.metrics.observe_event(EventResult::Sent),
                Err(error) => {
                    self.metrics.observe_event(EventResult::Failed);
                    tracing::warn!(%error, owner = %event.owner.name, reason = event.reason.as_str(), "Event not written");
                }
            }
        }
    }

    /// Whether `event` was not written within the dedup window (and marks it written now).
    fn first_in_window(&mut self, event: &PendingEvent) -> bool {
        let now = Instant::now();
        let window = self.dedup_window;
        self.written
            .retain(|_, written| now.duration_since(*written) < window);
        let key = (event.owner.uid.clone(), event.reason, event.message.clone());
        if self.written.contains_key(&key) {
            return false;
        }
        self.written.insert(key, now);
        true
    }

    fn to_event(&self, event: &PendingEvent) -> Event {
        let now = k8s_openapi::jiff::Timestamp::now();
        let owner = &event.owner;
        Event {
            metadata: ObjectMeta {
                // As kubectl's recorder names them: the object, then a unique suffix.
                name: Some(format!("{}.{:x}", owner.name, now.as_nanosecond())),
                namespace: Some(event.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(event.reason.event_type().to_owned()),
            reason: Some(event.reason.as_str().to_owned()),
            action: Some(event.reason.action().to_owned()),
            note: Some(cut(&event.message, MAX_NOTE_BYTES).to_owned()),
            regarding: Some(ObjectReference {
                api_version: Some(owner.api_version.clone()),
                kind: Some(owner.kind.clone()),
                name: Some(owner.name.clone()),
                namespace: Some(event.namespace.clone()),
                uid: Some(owner.uid.clone()),
                ..ObjectReference::default()
            }),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.reporting_instance.clone()),
            ..Event::default()
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: "ReplicaSet".to_owned(),
            name: "orders-7d9f8b6c5".to_owned(),
            uid: uid.to_owned(),
            controller: Some(true),
            ..OwnerReference::default()
        }
    }

    fn pending(uid: &str, message: &str) -> PendingEvent {
        PendingEvent {
            namespace: "shop".to_owned(),
            owner: owner(uid),
            reason: Reason::BindingWarning,
            message: message.to_owned(),
        }
    }

    #[test]
    fn the_same_message_for_the_same_owner_is_written_once_per_window() {
        let metrics = Arc::new(Metrics::new());
        let (_queue, mut writer) = event_queue(4, Duration::from_secs(600), "dbbind-0", metrics);
        assert!(writer.first_in_window(&pending("1", "a")));
        assert!(!writer.first_in_window(&pending("1", "a")));
        assert!(
            writer.first_in_window(&pending("1", "b")),
            "another message"
        );
        assert!(writer.first_in_window(&pending("2", "a")), "another owner");

        let (_queue, mut writer) =
            event_queue(4, Duration::ZERO, "dbbind-0", Arc::new(Metrics::new()));
        assert!(writer.first_in_window(&pending("1", "a")));
        assert!(
            writer.first_in_window(&pending("1", "a")),
            "the window has passed"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let (queue, _writer) = event_queue(1, Duration::from_secs(1), "x", Arc::clone(&metrics));
        queue.offer(pending("1", "a"));
        queue.offer(pending("1", "b"));
        queue.offer(pending("1", "c"));
        assert!(
            metrics
                .encode()
                .contains("dbbind_events_total{result=\"dropped\"} 2"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn the_event_names_its_owner_and_keeps_the_note_under_1_kb() {
        let (_queue, writer) = event_queue(1, Duration::ZERO, "dbbind-0", Arc::new(Metrics::new()));
        let long = "é".repeat(600);
        let event = writer.to_event(&pending("1", &long));
        let regarding = event.regarding.unwrap();
        assert_eq!(regarding.kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(regarding.uid.as_deref(), Some("1"));
        assert_eq!(event.reason.as_deref(), Some("BindingWarning"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(
            event.reporting_controller.as_deref(),
            Some(REPORTING_CONTROLLER)
        );
        let note = event.note.unwrap();
        assert!(note.len() <= 1024 && note.len() >= 1022, "{}", note.len());
        assert!(
            event
                .metadata
                .name
                .unwrap()
                .starts_with("orders-7d9f8b6c5.")
        );
    }

    #[test]
    fn the_controller_owner_is_preferred() {
        let mut other = owner("9");
        other.controller = None;
        other.kind = "Thing".to_owned();
        let owners = [other.clone(), owner("1")];
        assert_eq!(owner_of(&owners).unwrap().uid, "1");
        assert_eq!(owner_of(&[other]).unwrap().uid, "9");
        assert!(owner_of(&[]).is_none());
    }
}
