//! The rotation controller against a fake API server: the leader lists the namespace's pods,
//! reads a ReplicaSet once for its two pods, rolls the Deployment once with
//! `dbbind.io/restartedAt`, records Events (SecretRotated on the Deployment,
//! RotationNotRestartable on a bare pod), leaves alone pods that did not opt in or bind by
//! files, and rolls nothing again within the interval; a replica that does not lead sends
//! nothing at all.

use std::sync::Arc;
use std::time::Duration;

use dbbind::events::event_queue;
use dbbind::metrics::Metrics;
use dbbind::rotation::changed::ChangedSecrets;
use dbbind::rotation::controller::Controller;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_test::mock::Handle;

type Mock = Handle<Request<Body>, Response<Body>>;

/// The next request as (method, path, content type, body), answered with `answer(path)`.
async fn answer(
    handle: &mut Mock,
    respond: impl Fn(&str, &str) -> Value,
) -> (String, String, String, Value) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request in time")
        .expect("a request");
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let response = respond(&method, &path);
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&response).unwrap()))
            .unwrap(),
    );
    (method, path, content_type, body)
}

fn pod(name: &str, annotations: Value, owner: Option<(&str, &str)>, env: bool) -> Value {
    let mut container = json!({"name": "app", "image": "app:1"});
    if env {
        container["env"] = json!([{"name": "POSTGRES_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "orders-db", "key": "password"}}}]);
    }
    let mut metadata = json!({"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
        "annotations": annotations});
    if let Some((kind, owner)) = owner {
        metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
            "name": owner, "uid": format!("uid-{owner}"), "controller": true}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {"containers": [container]}, "status": {"phase": "Running"}})
}

fn pods() -> Value {
    let opted_in = json!({"dbbind.io/restart-on-rotation": "true",
        "dbbind.io/bindings": "db=orders-db/generic"});
    let not_opted_in = json!({"dbbind.io/bindings": "db=orders-db/generic"});
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": [
        pod("orders-7d9f-a", opted_in.clone(), Some(("ReplicaSet", "orders-7d9f")), true),
        pod("orders-7d9f-b", opted_in.clone(), Some(("ReplicaSet", "orders-7d9f")), true),
        pod("reports-5c4b-a", not_opted_in, Some(("ReplicaSet", "reports-5c4b")), true),
        pod("files-6b5a-a", opted_in.clone(), Some(("ReplicaSet", "files-6b5a")), false),
        pod("one-off", opted_in, None, true),
    ]})
}

fn respond(method: &str, path: &str) -> Value {
    match (method, path) {
        ("GET", "/api/v1/namespaces/shop/pods") => pods(),
        ("GET", "/apis/apps/v1/namespaces/shop/replicasets/orders-7d9f") => json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "orders-7d9f", "namespace": "shop", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders", "uid": "uid-orders", "controller": true}]},
        }),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/orders") => json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-orders"},
        }),
        ("POST", "/apis/events.k8s.io/v1/namespaces/shop/events") => json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "shop"}, "eventTime": null,
        }),
        other => panic!("unexpected request {other:?}"),
    }
}

/// A controller against a fake API server, running as leader or not; the mock's handle, where
/// rotations are reported, its metrics, and the leadership's sender (dropping it ends it).
fn start(leading: bool) -> (Mock, Arc<ChangedSecrets>, Arc<Metrics>, watch::Sender<bool>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let changed = Arc::new(ChangedSecrets::default());
    let metrics = Arc::new(Metrics::new());
    let (events, writer) = event_queue(16, Duration::from_secs(600), "test", Arc::clone(&metrics));
    tokio::spawn(writer.run(client.clone()));
    let mut controller = Controller::new(
        client,
        Arc::clone(&changed),
        events,
        Arc::clone(&metrics),
        Duration::from_secs(60),
    );
    let (sender, receiver) = watch::channel(leading);
    tokio::spawn(async move { controller.lead_while(receiver).await });
    (handle, changed, metrics, sender)
}

fn counter(metrics: &Metrics, name: &str) -> String {
    metrics
        .encode()
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_leader_rolls_each_workload_once_and_records_events() {
    let (mut handle, changed, metrics, _leading) = start(true);

    changed.report("shop", "orders-db");
    let mut seen = Vec::new();
    // The pod list, one ReplicaSet read for two pods, the patch, two Events, in an order the
    // Event writer's task decides.
    for _ in 0..5 {
        seen.push(answer(&mut handle, respond).await);
    }
    let paths: Vec<(&str, &str)> = seen
        .iter()
        .map(|(method, path, _, _)| (method.as_str(), path.as_str()))
        .collect();
    assert_eq!(paths[0], ("GET", "/api/v1/namespaces/shop/pods"));
    assert_eq!(
        paths[1],
        (
            "GET",
            "/apis/apps/v1/namespaces/shop/replicasets/orders-7d9f"
        )
    );
    let patches: Vec<_> = seen
        .iter()
        .filter(|(method, ..)| method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{paths:?}");
    let (_, path, content_type, body) = patches[0];
    assert_eq!(path, "/apis/apps/v1/namespaces/shop/deployments/orders");
    assert_eq!(content_type, "application/merge-patch+json");
    let restarted_at = body["spec"]["template"]["metadata"]["annotations"]["dbbind.io/restartedAt"]
        .as_str()
        .unwrap();
    assert!(
        restarted_at.len() == 20 && restarted_at.ends_with('Z'),
        "RFC 3339 in whole seconds: {restarted_at}"
    );
    let events: Vec<&Value> = seen
        .iter()
        .filter(|(method, ..)| method == "POST")
        .map(|(.., body)| body)
        .collect();
    assert_eq!(events.len(), 2, "{paths:?}");
    let rotated = events
        .iter()
        .find(|event| event["reason"] == "SecretRotated")
        .expect("a SecretRotated Event");
    assert_eq!(rotated["type"], "Normal");
    assert_eq!(rotated["regarding"]["kind"], "Deployment");
    assert_eq!(rotated["regarding"]["name"], "orders");
    assert_eq!(rotated["regarding"]["uid"], "uid-orders");
    assert!(
        rotated["note"]
            .as_str()
            .unwrap()
            .contains("Secret orders-db changed")
    );
    let bare = events
        .iter()
        .find(|event| event["reason"] == "RotationNotRestartable")
        .expect("a RotationNotRestartable Event");
    assert_eq!(bare["type"], "Warning");
    assert_eq!(bare["regarding"]["kind"], "Pod");
    assert_eq!(bare["regarding"]["name"], "one-off");
    assert_eq!(
        counter(&metrics, "dbbind_rollouts_total"),
        "dbbind_rollouts_total 1"
    );
    assert_eq!(
        counter(&metrics, "dbbind_rotations_seen_total"),
        "dbbind_rotations_seen_total 1"
    );

    // A second rotation within the interval: the pods are listed, the rollout waits.
    changed.report("shop", "orders-db");
    let (method, path, ..) = answer(&mut handle, respond).await;
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("GET", "/api/v1/namespaces/shop/pods")
    );
    let _replica_set = answer(&mut handle, respond).await;
    // The bare pod's Event again is deduplicated by the writer: nothing else is sent.
    let more = tokio::time::timeout(Duration::from_millis(700), handle.next_request()).await;
    assert!(more.is_err(), "a second rollout within the interval");
    assert_eq!(
        counter(&metrics, "dbbind_rollouts_total"),
        "dbbind_rollouts_total 1"
    );
}

#[tokio::test]
async fn a_replica_that_does_not_lead_counts_the_rotation_and_sends_nothing() {
    let (mut handle, changed, metrics, _leading) = start(false);

    changed.report("shop", "orders-db");
    let request = tokio::time::timeout(Duration::from_millis(700), handle.next_request()).await;
    assert!(request.is_err(), "a follower sent a request");
    assert_eq!(
        counter(&metrics, "dbbind_rotations_seen_total"),
        "dbbind_rotations_seen_total 1"
    );
}
