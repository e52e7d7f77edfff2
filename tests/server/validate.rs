//! `POST /validate`: workload templates checked as the API server sends them (captured from a
//! real kube-apiserver, one review per kind, CREATE and UPDATE), never patched.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dbbind::metrics::Metrics;
use dbbind::server::{Limits, webhook};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::harness::{review_fixture, webhook_state};

const WORKLOADS: [&str; 12] = [
    "create-deployment.json",
    "update-deployment.json",
    "create-statefulset.json",
    "update-statefulset.json",
    "create-daemonset.json",
    "update-daemonset.json",
    "create-replicaset.json",
    "update-replicaset.json",
    "create-job.json",
    "update-job.json",
    "create-cronjob.json",
    "update-cronjob.json",
];

/// The template's annotations inside a captured review (CronJob's is nested deeper).
fn annotations(review: &mut Value) -> &mut Value {
    let spec = &mut review["request"]["object"]["spec"];
    let template = if spec.get("jobTemplate").is_some() {
        &mut spec["jobTemplate"]["spec"]["template"]
    } else {
        &mut spec["template"]
    };
    &mut template["metadata"]["annotations"]
}

/// Posts `review` to /validate; the response part of the answer, and the metrics.
async fn validate(review: &Value) -> (Value, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let app = webhook::router(webhook_state(Limits::default(), Arc::clone(&metrics)));
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
    assert!(
        answer["response"].get("patch").is_none(),
        "never a patch: {answer}"
    );
    (answer["response"].clone(), metrics)
}

fn captured(name: &str) -> Value {
    serde_json::from_slice(&review_fixture(name)).unwrap()
}

fn counted(metrics: &Metrics, outcome: &str) -> bool {
    metrics.encode().contains(&format!(
        "dbbind_admission_requests_total{{webhook=\"validate\",outcome=\"{outcome}\"}} 1"
    ))
}

#[tokio::test]
async fn a_bound_template_is_admitted_with_the_pods_warnings() {
    for fixture in WORKLOADS {
        let (response, metrics) = validate(&captured(fixture)).await;
        assert_eq!(response["allowed"], true, "{fixture}");
        assert_eq!(
            response["warnings"],
            json!([
                "dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out"
            ]),
            "{fixture}"
        );
        assert!(counted(&metrics, "unchanged"), "{fixture}");
    }
}

#[tokio::test]
async fn a_bad_annotation_denies_the_workload_with_the_pods_message() {
    for fixture in WORKLOADS {
        let mut review = captured(fixture);
        annotations(&mut review)["dbbind.io/port"] = json!("abc");
        let (response, metrics) = validate(&review).await;
        assert_eq!(response["allowed"], false, "{fixture}");
        assert_eq!(response["status"]["code"], 400);
        assert_eq!(response["status"]["reason"], "BadRequest");
        assert_eq!(
            response["status"]["message"],
            "dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)",
            "{fixture}"
        );
        assert!(counted(&metrics, "denied"), "{fixture}");
    }
}

#[tokio::test]
async fn a_missing_secret_is_a_warning_not_a_denial() {
    for fixture in WORKLOADS {
        let mut review = captured(fixture);
        annotations(&mut review)["dbbind.io/secret"] = json!("applied-later");
        let (response, _) = validate(&review).await;
        assert_eq!(response["allowed"], true, "{fixture}");
        assert_eq!(
            response["warnings"],
            json!([
                "dbbind: Secret \"applied-later\" not found in namespace \"shop\": cannot detect a profile for a missing Secret; create the Secret first, or name a profile in \"dbbind.io/profile\""
            ]),
            "{fixture}"
        );
    }
}

#[tokio::test]
async fn a_template_without_dbbind_annotations_is_left_alone() {
    for fixture in ["create-deployment.json", "create-cronjob.json"] {
        let mut review = captured(fixture);
        *annotations(&mut review) = json!({"team": "shop"});
        let (response, _) = validate(&review).await;
        assert_eq!(response["allowed"], true, "{fixture}");
        assert!(response.get("warnings").is_none(), "{fixture}");
    }
}

#[tokio::test]
async fn a_huge_annotation_value_is_cut_in_the_denial() {
    let mut review = captured("create-deployment.json");
    annotations(&mut review)["dbbind.io/sslmode"] = json!("x".repeat(1 << 20));
    let (response, _) = validate(&review).await;
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.len() < 300, "{} bytes", message.len());
    assert!(
        message.contains("… (1048576 bytes) is not an sslmode"),
        "{message}"
    );
}

#[tokio::test]
async fn pods_sent_to_validate_are_left_to_the_mutating_webhook() {
    let (response, metrics) = validate(&captured("create-pod-bad-port.json")).await;
    assert_eq!(response["allowed"], true);
    assert!(counted(&metrics, "unchanged"));
}

/// Posts `review` to `path` with restarts on rotation `enabled` or not; the warnings.
async fn warnings_with_restarts(path: &str, review: &Value, enabled: bool) -> Vec<String> {
    let state = webhook_state(Limits::default(), Arc::new(Metrics::new()))
        .with_restarts_on_rotation(enabled);
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    let response = webhook::router(state).oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    serde_json::from_value(answer["response"]["warnings"].clone()).unwrap_or_default()
}

#[tokio::test]
async fn an_opt_in_to_restarts_is_warned_when_the_controller_is_off() {
    let off = "dbbind: dbbind.io/restart-on-rotation: this dbbind runs without --restart-on-rotation (chart value rotation.enabled), so nothing restarts this workload when its Secret changes";
    for fixture in ["create-deployment.json", "create-cronjob.json"] {
        let mut review = captured(fixture);
        annotations(&mut review)["dbbind.io/restart-on-rotation"] = json!("true");
        let warned = warnings_with_restarts("/validate", &review, false).await;
        assert!(warned.contains(&off.to_owned()), "{fixture}: {warned:?}");
        let warned = warnings_with_restarts("/validate", &review, true).await;
        assert!(!warned.contains(&off.to_owned()), "{fixture}: {warned:?}");
    }
    // A Pod, at /mutate: its own annotations.
    let mut review = captured("create-replicaset-pod.json");
    review["request"]["object"]["metadata"]["annotations"]["dbbind.io/restart-on-rotation"] =
        json!("true");
    let warned = warnings_with_restarts("/mutate", &review, false).await;
    assert!(warned.contains(&off.to_owned()), "{warned:?}");
    let warned = warnings_with_restarts("/mutate", &review, true).await;
    assert!(!warned.contains(&off.to_owned()), "{warned:?}");
}
