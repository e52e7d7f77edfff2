//! Every HTTP answer of the webhook router, driven in-process with `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use dbbind::metrics::Metrics;
use dbbind::server::{Limits, webhook};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::harness::{patch_ops, review_fixture, webhook_state};

fn app_with(limits: Limits) -> (axum::Router, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (
        webhook::router(webhook_state(limits, Arc::clone(&metrics))),
        metrics,
    )
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/mutate")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn call(app: axum::Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test]
async fn a_replicaset_pod_gets_a_json_patch_with_the_same_uid_and_version() {
    let (app, metrics) = app_with(Limits::default());
    let (status, body) = call(app, post(review_fixture("create-replicaset-pod.json"))).await;
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    let sent: Value =
        serde_json::from_slice(&review_fixture("create-replicaset-pod.json")).unwrap();
    assert_eq!(response["uid"], sent["request"]["uid"]);
    // As the API server sends it: no name yet, a generateName, the namespace on the request.
    assert!(sent["request"].get("name").is_none());
    assert!(sent["request"]["object"]["metadata"]["generateName"].is_string());
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    // The container has env of its own: ours is inserted before it, entry by entry.
    assert!(
        patch_ops(response)
            .iter()
            .any(|op| op["path"] == "/spec/containers/0/env/0")
    );
    let exposition = metrics.encode();
    assert!(
        exposition
            .contains("dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"patched\"} 1"),
        "{exposition}"
    );
    assert!(
        exposition.contains("dbbind_bindings_total{profile=\"generic\"} 1"),
        "{exposition}"
    );
}

#[tokio::test]
async fn a_dry_run_is_patched_too() {
    let (app, _) = app_with(Limits::default());
    let (status, body) = call(app, post(review_fixture("create-pod-dry-run.json"))).await;
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert!(review["response"]["patch"].is_string());
}

#[tokio::test]
async fn a_denial_has_code_reason_and_message_and_no_patch() {
    let (app, metrics) = app_with(Limits::default());
    let (status, body) = call(app, post(review_fixture("create-pod-bad-port.json"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a denial is a successful webhook call"
    );
    let review: Value = serde_json::from_slice(&body).unwrap();
    let response = &review["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    assert_eq!(response["status"]["reason"], "BadRequest");
    assert_eq!(
        response["status"]["message"],
        "dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)"
    );
    assert!(response.get("patch").is_none());
    assert!(
        metrics
            .encode()
            .contains("dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"denied\"} 1")
    );
}

#[tokio::test]
async fn update_delete_and_other_kinds_are_allowed_unchanged() {
    for fixture in [
        "update-pod.json",
        "delete-pod.json",
        "create-deployment.json",
    ] {
        let (app, metrics) = app_with(Limits::default());
        let (status, body) = call(app, post(review_fixture(fixture))).await;
        assert_eq!(status, StatusCode::OK, "{fixture}");
        let review: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(review["response"]["allowed"], true, "{fixture}");
        assert!(review["response"].get("patch").is_none(), "{fixture}");
        assert!(
            metrics.encode().contains(
                "dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"unchanged\"} 1"
            ),
            "{fixture}"
        );
    }
}

#[tokio::test]
async fn http_errors_have_short_reasons() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let large = vec![b' '; 64 * 1024 + 1];
    let streamed_large = Body::from_stream(futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 4096]))),
    ));
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            Request::get("/mutate").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "dbbind: /mutate takes POST\n",
        ),
        (
            Request::post("/mutate")
                .header("content-type", "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "dbbind: the body must be an AdmissionReview as application/json\n",
        ),
        (
            Request::post("/mutate").body(Body::from("{}")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "dbbind: the body must be an AdmissionReview as application/json\n",
        ),
        (
            post(large),
            StatusCode::PAYLOAD_TOO_LARGE,
            "dbbind: the body is larger than 65536 bytes\n",
        ),
        (
            post(streamed_large),
            StatusCode::PAYLOAD_TOO_LARGE,
            "dbbind: the body is larger than 65536 bytes\n",
        ),
        (
            post("{\"kind\": \"AdmissionReview\", \"request\": {\"uid\": 7}}"),
            StatusCode::BAD_REQUEST,
            "dbbind: the body is not an AdmissionReview (Data error at line 1 column 48)\n",
        ),
        (
            post("not json"),
            StatusCode::BAD_REQUEST,
            "dbbind: the body is not an AdmissionReview (Syntax error at line 1 column 2)\n",
        ),
        (
            post("{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}"),
            StatusCode::BAD_REQUEST,
            "dbbind: the AdmissionReview carries no request\n",
        ),
        (
            Request::get("/validate").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "dbbind: /validate takes POST\n",
        ),
        (
            Request::post("/validate").body(Body::from("{}")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "dbbind: the body must be an AdmissionReview as application/json\n",
        ),
        (
            Request::post("/admit").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "dbbind: not found; admission reviews go to POST /mutate (Pods) or POST /validate (workloads)\n",
        ),
    ];
    for (request, expected_status, expected_body) in cases {
        let (app, _) = app_with(limits);
        let (status, body) = call(app, request).await;
        assert_eq!(
            (status, text(&body).as_str()),
            (expected_status, expected_body)
        );
    }
}

#[tokio::test]
async fn an_undecodable_body_is_never_echoed() {
    let (app, _) = app_with(Limits::default());
    let secret_looking =
        "{\"request\": {\"uid\": \"x\", \"object\": {\"spec\": \"TOPSECRET-value-123\"}}}";
    let (status, body) = call(app, post(secret_looking)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!text(&body).contains("TOPSECRET"), "{}", text(&body));
}

/// A body that sends one chunk and then never finishes.
fn stalled_body() -> Body {
    let first = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{")) });
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_503() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (app, metrics) = app_with(limits);
    let (status, body) = call(app, post(stalled_body())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text(&body),
        "dbbind: the request did not complete within its deadline\n"
    );
    assert!(
        metrics
            .encode()
            .contains("dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"error\"} 1")
    );
}

#[tokio::test]
async fn a_stalled_body_holds_no_decision_slot_and_gets_408() {
    let limits = Limits {
        body_read_timeout: Duration::from_millis(300),
        max_concurrent: 1,
        ..Limits::default()
    };
    let metrics = Arc::new(Metrics::new());
    let app = webhook::router(webhook_state(limits, Arc::clone(&metrics)));
    // The first request's body stalls: it is being read, with no slot taken yet.
    let holder = tokio::spawn(call(app.clone(), post(stalled_body())));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!holder.is_finished());
    // So the second takes the only slot and is answered while the first still waits.
    let (status, _) = call(app, post(review_fixture("create-replicaset-pod.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!holder.is_finished(), "the stalled body ended early");
    let (status, body) = holder.await.unwrap();
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        text(&body),
        "dbbind: the request body did not arrive within 300ms\n"
    );
}
