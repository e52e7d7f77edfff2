//! Events for controller-made pods: offered on the request path, written by the background
//! writer through the events API (a fake API server here), deduplicated, never for dry runs or
//! pods without an owner.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request as HttpRequest;
use dbbind::events::event_queue;
use dbbind::metrics::Metrics;
use dbbind::server::{Limits, webhook};
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_test::mock::Handle;

use crate::harness::{review_fixture, webhook_state};

type Mock = Handle<Request<kube::client::Body>, Response<kube::client::Body>>;

const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

struct Setup {
    app: axum::Router,
    api: Mock,
    metrics: Arc<Metrics>,
    _writer: tokio::task::JoinHandle<()>,
}

fn setup() -> Setup {
    let (service, api) = tower_test::mock::pair();
    let client = kube::Client::new(service, "default");
    let metrics = Arc::new(Metrics::new());
    let (queue, writer) = event_queue(
        16,
        Duration::from_secs(600),
        "dbbind-test",
        Arc::clone(&metrics),
    );
    let state = webhook_state(Limits::default(), Arc::clone(&metrics)).with_events(queue);
    Setup {
        app: webhook::router(state),
        api,
        metrics,
        _writer: tokio::spawn(writer.run(client)),
    }
}

async fn admit(app: &axum::Router, review: &Value) -> Value {
    let request = HttpRequest::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice::<Value>(&body).unwrap()["response"].clone()
}

/// The next Event the writer creates; answers it as the API server would.
async fn next_event(api: &mut Mock) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), api.next_request())
        .await
        .expect("an Event in time")
        .expect("a request");
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri().path(), EVENTS_PATH);
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let event: Value = serde_json::from_slice(&body).unwrap();
    send.send_response(
        Response::builder()
            .status(201)
            .body(kube::client::Body::from(body.to_vec()))
            .unwrap(),
    );
    event
}

/// No request reaches the API server for a moment.
async fn no_event(api: &mut Mock) {
    let waited = tokio::time::timeout(Duration::from_millis(300), api.next_request()).await;
    assert!(
        waited.is_err(),
        "an unexpected request: {:?}",
        waited.map(|r| r.map(|(r, _)| r.uri().clone()))
    );
}

fn replicaset_pod() -> Value {
    serde_json::from_slice(&review_fixture("create-replicaset-pod.json")).unwrap()
}

#[tokio::test]
async fn a_warning_on_a_replicaset_pod_becomes_one_event_on_the_replicaset() {
    let mut setup = setup();
    let review = replicaset_pod();
    let owner = &review["request"]["object"]["metadata"]["ownerReferences"][0];
    let response = admit(&setup.app, &review).await;
    let warning = response["warnings"][0].as_str().unwrap().to_owned();

    let event = next_event(&mut setup.api).await;
    assert_eq!(event["reason"], "BindingWarning");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["note"], warning);
    assert_eq!(event["reportingController"], "dbbind.io/dbbind");
    assert_eq!(event["reportingInstance"], "dbbind-test");
    assert_eq!(event["regarding"]["kind"], "ReplicaSet");
    assert_eq!(event["regarding"]["name"], owner["name"]);
    assert_eq!(event["regarding"]["uid"], owner["uid"]);
    assert_eq!(event["metadata"]["namespace"], "shop");

    // The ReplicaSet's next pod says the same: not written again.
    admit(&setup.app, &review).await;
    no_event(&mut setup.api).await;
    let metrics = setup.metrics.encode();
    assert!(
        metrics.contains("dbbind_events_total{result=\"sent\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dbbind_events_total{result=\"deduplicated\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_denial_becomes_a_binding_denied_event() {
    let mut setup = setup();
    let mut review = replicaset_pod();
    review["request"]["object"]["metadata"]["annotations"]["dbbind.io/port"] = json!("abc");
    let response = admit(&setup.app, &review).await;
    assert_eq!(response["allowed"], false);
    let event = next_event(&mut setup.api).await;
    assert_eq!(event["reason"], "BindingDenied");
    assert_eq!(event["note"], response["status"]["message"]);
}

#[tokio::test]
async fn dry_runs_and_pods_without_an_owner_record_nothing() {
    let mut setup = setup();
    let dry: Value = serde_json::from_slice(&review_fixture("create-pod-dry-run.json")).unwrap();
    let bare: Value = serde_json::from_slice(&review_fixture("create-pod-bad-port.json")).unwrap();
    let mut dry_replicaset_pod = replicaset_pod();
    dry_replicaset_pod["request"]["dryRun"] = json!(true);
    for review in [dry, bare, dry_replicaset_pod] {
        admit(&setup.app, &review).await;
    }
    no_event(&mut setup.api).await;
    assert!(
        setup
            .metrics
            .encode()
            .contains("dbbind_events_total{result=\"sent\"} 0")
    );
}

#[tokio::test]
async fn an_event_the_api_server_refuses_is_counted_and_does_not_stop_the_writer() {
    let mut setup = setup();
    let review = replicaset_pod();
    admit(&setup.app, &review).await;
    let (_, send) = setup.api.next_request().await.unwrap();
    send.send_response(
        Response::builder()
            .status(403)
            .body(kube::client::Body::from(
                serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "no"})).unwrap(),
            ))
            .unwrap(),
    );
    let mut denied = replicaset_pod();
    denied["request"]["object"]["metadata"]["annotations"]["dbbind.io/port"] = json!("abc");
    admit(&setup.app, &denied).await;
    let event = next_event(&mut setup.api).await;
    assert_eq!(event["reason"], "BindingDenied");
    assert!(
        setup
            .metrics
            .encode()
            .contains("dbbind_events_total{result=\"failed\"} 1")
    );
}
