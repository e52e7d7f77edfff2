//! The cost of an admission decision, against a baseline measured in the same run.
//!
//! Baseline: decoding the AdmissionReview the API server sent and encoding an "allowed"
//! answer — what any webhook must do, whatever it decides. The others add dbbind's work on
//! top of exactly that, so `scripts/bench` can report each as a ratio to the baseline
//! (BENCHMARKS.md); ratios stay comparable across machines where absolute times do not.

#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dbbind::server::response::admission_response;
use dbbind_core::admission::review;
use dbbind_core::decision::Decision;
use dbbind_core::profile::ProfileSet;
use dbbind_core::secret::{SecretStore, SecretView};
use k8s_openapi::api::core::v1::Secret;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn decode(body: &[u8]) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).expect("a review");
    review.try_into().expect("a request")
}

fn store() -> SecretStore {
    let secret: Secret =
        serde_yaml_ng::from_slice(&fixture("tests/fixtures/secrets/generic-external.yaml"))
            .expect("secret");
    [SecretView::from_secret(&secret, "shop")]
        .into_iter()
        .collect()
}

/// The same review with the pod already bound: what a reinvocation sees.
fn bound_review(body: &[u8], store: &SecretStore, profiles: &ProfileSet) -> Vec<u8> {
    let request = decode(body);
    let Decision::Allow { patch, .. } = review(&request, store, profiles) else {
        panic!("allowed")
    };
    let mut value: serde_json::Value = serde_json::from_slice(body).expect("json");
    json_patch::patch(&mut value["request"]["object"], &patch.0).expect("patch applies");
    serde_json::to_vec(&value).expect("json")
}

/// What `POST /mutate` does with a body, minus HTTP: decode, decide, answer, encode.
fn admit(body: &[u8], store: &SecretStore, profiles: &ProfileSet) -> Vec<u8> {
    let request = decode(body);
    let decision = review(&request, store, profiles);
    let answer = admission_response(&request, decision);
    serde_json::to_vec(&answer).expect("json")
}

fn benchmarks(c: &mut Criterion) {
    let body = fixture("tests/fixtures/admission/create-replicaset-pod.json");
    let store = store();
    let profiles = ProfileSet::builtin();
    let bound = bound_review(&body, &store, &profiles);

    c.bench_function("baseline: decode review, encode allowed response", |b| {
        b.iter(|| {
            let request = decode(black_box(&body));
            let answer = AdmissionResponse::from(&request).into_review();
            black_box(serde_json::to_vec(&answer).expect("json"))
        })
    });
    c.bench_function("bind: decode, decide, patch, encode", |b| {
        b.iter(|| black_box(admit(black_box(&body), &store, &profiles)))
    });
    c.bench_function("reinvocation: decode, decide (no patch), encode", |b| {
        b.iter(|| black_box(admit(black_box(&bound), &store, &profiles)))
    });
    let request = decode(&body);
    c.bench_function("decision alone: review() on a decoded request", |b| {
        b.iter(|| black_box(review(black_box(&request), &store, &profiles)))
    });
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
