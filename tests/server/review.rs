//! The AdmissionReview layer: which requests are decided (the core's `review`), and the shape
//! of the response the server builds from the decision.

use dbbind::server::response::admission_response;
use dbbind_core::admission::review;
use dbbind_core::rules::RotationRestarts;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use crate::harness::patch_ops;
use crate::support::*;

/// An AdmissionReview as the API server sends it for a pod a ReplicaSet creates: no name yet,
/// `generateName`, the namespace only on the request.
fn pod_review(operation: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "orders-7d9f8b6c5-",
                    "labels": {"app": "orders"},
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-7d9f8b6c5", "uid": "1", "controller": true}],
                },
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    })
}

fn request(review_json: Value) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(review_json).unwrap();
    review.try_into().unwrap()
}

fn respond(review_json: Value) -> Value {
    let request = request(review_json);
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let decision = review(&request, &store, &builtin(), RotationRestarts::On);
    serde_json::to_value(admission_response(&request, decision).unwrap()).unwrap()
}

#[test]
fn a_replicaset_pod_is_patched_in_the_requests_namespace() {
    let out = respond(pod_review(
        "CREATE",
        json!({"dbbind.io/secret": "orders-db-conn"}),
    ));
    let response = &out["response"];
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert!(
        patch_ops(response)
            .iter()
            .any(|op| op["path"] == "/spec/containers/0/env")
    );
    assert_eq!(
        response["warnings"][0],
        "dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out"
    );
}

#[test]
fn a_denial_carries_code_reason_and_message() {
    let out = respond(pod_review(
        "CREATE",
        json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/port": "abc"}),
    ));
    let response = &out["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    assert_eq!(response["status"]["reason"], "BadRequest");
    assert_eq!(
        response["status"]["message"],
        "dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)"
    );
    assert!(response.get("patch").is_none());
}

#[test]
fn requests_that_are_not_a_pod_create_are_admitted_without_a_patch() {
    let annotations = json!({"dbbind.io/secret": "orders-db-conn"});
    let mut update = pod_review("UPDATE", annotations.clone());
    update["request"]["oldObject"] = update["request"]["object"].clone();
    let mut delete = pod_review("DELETE", annotations.clone());
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let mut deployment = pod_review("CREATE", annotations.clone());
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let mut status = pod_review("CREATE", annotations.clone());
    status["request"]["subResource"] = json!("status");
    let no_annotations = pod_review("CREATE", json!({}));
    for (name, review_json) in [
        ("update", update),
        ("delete", delete),
        ("deployment", deployment),
        ("subresource", status),
        ("plain pod", no_annotations),
    ] {
        let out = respond(review_json);
        assert_eq!(out["response"]["allowed"], true, "{name}");
        assert!(out["response"].get("patch").is_none(), "{name}");
        assert!(out["response"].get("warnings").is_none(), "{name}");
    }
}

#[test]
fn a_dry_run_is_decided_like_any_other_request() {
    let mut dry = pod_review("CREATE", json!({"dbbind.io/secret": "orders-db-conn"}));
    dry["request"]["dryRun"] = json!(true);
    assert!(respond(dry)["response"].get("patch").is_some());
}

/// The API defines `patch` as bytes, which JSON carries as a base64 string (kube-core's own
/// type writes an array of numbers): the string is what goes out, and it decodes to the patch.
#[test]
fn the_patch_is_a_base64_string_a_fraction_of_an_arrays_size() {
    use base64::Engine as _;
    let sent: Value = serde_json::from_slice(&crate::harness::review_fixture(
        "create-replicaset-pod.json",
    ))
    .unwrap();
    let out = respond(sent);
    let text = out["response"]["patch"].as_str().expect("a string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("a JSON patch");
    assert!(!ops.is_empty());
    let as_array = serde_json::to_string(&bytes).unwrap();
    assert!(
        text.len() * 2 < as_array.len(),
        "base64 {} bytes, array {} bytes",
        text.len(),
        as_array.len()
    );
}
