//! The check of a workload's pod template when it is applied (docs/design.md §7): the Pod's
//! decision, with what depends on the Secret's current state as warnings, and never a patch.

use dbbind_core::decision::Decision;
use dbbind_core::kind::WorkloadKind;
use dbbind_core::rules::RotationRestarts;
use dbbind_core::workload::review;
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use crate::support::*;

fn template(annotations: Value) -> Value {
    json!({
        "metadata": {"labels": {"app": "orders"}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    })
}

fn workload_review(group: &str, kind: &str, operation: &str, annotations: Value) -> Value {
    let spec = if kind == "CronJob" {
        json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template(annotations)}}})
    } else {
        json!({"selector": {"matchLabels": {"app": "orders"}}, "template": template(annotations)})
    };
    let version = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/v1")
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": "things"},
            "name": "orders",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": {"apiVersion": version, "kind": kind, "metadata": {"name": "orders", "namespace": "shop"}, "spec": spec},
        },
    })
}

fn check(review_json: Value) -> Decision {
    let review_value: AdmissionReview<DynamicObject> = serde_json::from_value(review_json).unwrap();
    let request: AdmissionRequest<DynamicObject> = review_value.try_into().unwrap();
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    review(&request, &store, &builtin(), RotationRestarts::On)
}

fn no_patch(decision: &Decision) -> bool {
    matches!(decision, Decision::Allow { patch, .. } if patch.0.is_empty())
}

#[test]
fn every_workload_kind_is_checked_on_create_and_update() {
    let checked = WorkloadKind::ALL
        .into_iter()
        .filter(|kind| kind.checked_at_apply());
    for (group, kind) in checked.map(|kind| (kind.group(), kind.name())) {
        for operation in ["CREATE", "UPDATE"] {
            let bad = json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/port": "abc"});
            let decision = check(workload_review(group, kind, operation, bad));
            assert_eq!(
                denial(&decision),
                "dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)",
                "{kind} {operation}"
            );
            let good = json!({"dbbind.io/secret": "orders-db-conn"});
            let decision = check(workload_review(group, kind, operation, good));
            assert!(no_patch(&decision), "{kind} {operation}: {decision:?}");
            assert_eq!(
                warnings(&decision),
                [
                    "dbbind: binding \"db\": profile \"generic\" finds no uri, sslmode in Secret \"orders-db-conn\"; left out"
                ],
                "{kind} {operation}"
            );
        }
    }
}

#[test]
fn the_denial_is_the_one_the_pod_would_get() {
    let annotations = json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/containers": "web"});
    let decision = check(workload_review("apps", "Deployment", "CREATE", annotations));
    let pod = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/containers", "web"),
        ],
        &["app"],
    );
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    assert_eq!(denial(&decision), denial(&decide(&pod, "shop", &store)));
}

#[test]
fn secret_dependent_problems_are_warnings_and_the_rest_is_still_checked() {
    // Missing under auto: the Pod would be denied; the template only warned.
    let missing = json!({"dbbind.io/secret": "not-yet"});
    let decision = check(workload_review("apps", "Deployment", "CREATE", missing));
    assert!(no_patch(&decision));
    let pod_denial = denial(&decide(
        &pod(&[("dbbind.io/secret", "not-yet")], &["app"]),
        "shop",
        &store_of(&[]),
    ));
    assert_eq!(warnings(&decision), [pod_denial]);

    // A key the Secret lacks: a warning too.
    let lacking = json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/keys": "password=nope"});
    let decision = check(workload_review("batch", "Job", "CREATE", lacking));
    assert!(no_patch(&decision));
    assert!(warnings(&decision)[0].contains("\"nope\""), "{decision:?}");

    // A missing Secret does not hide a mistake of the template itself.
    let both = json!({"dbbind.io/secret": "not-yet", "dbbind.io/secret.reports": "orders-db-conn", "dbbind.io/containers": "web"});
    let decision = check(workload_review("apps", "Deployment", "CREATE", both));
    assert!(
        denial(&decision).contains("names container \"web\""),
        "{decision:?}"
    );
    assert!(
        warnings(&decision)
            .iter()
            .any(|w| w.contains("\"not-yet\" not found")),
        "{decision:?}"
    );

    // Required fields no Secret key can provide are the template's own mistake.
    let zalando = json!({"dbbind.io/secret": "x.y.credentials.postgresql.acid.zalan.do", "dbbind.io/profile": "zalando"});
    let decision = check(workload_review("apps", "Deployment", "CREATE", zalando));
    assert!(
        denial(&decision).contains("required field database"),
        "{decision:?}"
    );
}

#[test]
fn other_requests_are_left_alone() {
    let annotations = json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/port": "abc"});
    let delete = workload_review("apps", "Deployment", "DELETE", annotations.clone());
    let pod_kind = workload_review("", "Pod", "CREATE", annotations.clone());
    let service = workload_review("", "Service", "CREATE", annotations);
    for review_json in [delete, pod_kind, service] {
        let decision = check(review_json);
        assert!(
            no_patch(&decision) && decision.warnings().is_empty(),
            "{decision:?}"
        );
    }
}

#[test]
fn a_huge_annotation_value_is_not_echoed_whole() {
    let huge = "9".repeat(1 << 20);
    let annotations = json!({"dbbind.io/secret": "orders-db-conn", "dbbind.io/port": huge});
    let message = denial(&check(workload_review(
        "apps",
        "Deployment",
        "CREATE",
        annotations,
    )));
    assert!(message.len() < 200, "{} bytes", message.len());
    assert!(
        message.ends_with(&format!(
            "\"{}\"… (1048576 bytes) is not a port number (1-65535)",
            "9".repeat(64)
        )),
        "{message}"
    );
}
