//! The cost of an admission decision, against a baseline measured in the same run.
//!
//! Baseline: decoding the AdmissionReview the API server sent and encoding an "allowed"
//! answer — what any webhook must do, whatever it decides. The others add dbbind's work on
//! top of exactly that, so `scripts/bench` can report each as a ratio to the baseline
//! (BENCHMARKS.md); ratios stay comparable across machines where absolute times do not.

#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dbbind::cache::{SecretCache, SecretShape};
use dbbind::server::response::admission_response;
use dbbind_core::admission::review;
use dbbind_core::decision::Decision;
use dbbind_core::profile::ProfileSet;
use dbbind_core::rules::RotationRestarts;
use dbbind_core::secret::{SecretLookup, SecretStore, SecretView};
use k8s_openapi::api::core::v1::Secret;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::watcher::Event;

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
    let Decision::Allow { patch, .. } = review(&request, store, profiles, RotationRestarts::On)
    else {
        panic!("allowed")
    };
    let mut value: serde_json::Value = serde_json::from_slice(body).expect("json");
    json_patch::patch(&mut value["request"]["object"], &patch.0).expect("patch applies");
    serde_json::to_vec(&value).expect("json")
}

/// What `POST /mutate` does with a body, minus HTTP: decode, decide, answer, encode.
fn admit(body: &[u8], store: &dyn SecretLookup, profiles: &ProfileSet) -> Vec<u8> {
    let request = decode(body);
    let decision = review(&request, store, profiles, RotationRestarts::On);
    let answer = admission_response(&request, decision).expect("the response encodes");
    serde_json::to_vec(&answer).expect("json")
}

/// The captured review with its pod grown to `containers` containers (copies of the first)
/// and `annotations` set on it.
fn grown_review(body: &[u8], containers: usize, annotations: serde_json::Value) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(body).expect("json");
    let object = &mut value["request"]["object"];
    let first = object["spec"]["containers"][0].clone();
    object["spec"]["containers"] = (0..containers)
        .map(|index| {
            let mut container = first.clone();
            container["name"] = format!("c{index}").into();
            container
        })
        .collect();
    object["metadata"]["annotations"] = annotations;
    serde_json::to_vec(&value).expect("json")
}

/// A namespace of `count` Secrets in the real watch cache, of the fixtures' shapes, named
/// `db-<index>`: what `auto` detection and lookups meet in a large namespace.
fn large_cache(count: usize) -> SecretCache {
    let shapes: Vec<serde_json::Value> = [
        "generic-external.yaml",
        "cnpg-app.yaml",
        "zalando-credentials.yaml",
    ]
    .iter()
    .map(|file| {
        let secret: serde_json::Value =
            serde_yaml_ng::from_slice(&fixture(&format!("tests/fixtures/secrets/{file}")))
                .expect("secret");
        secret
    })
    .collect();
    let (cache, partition) = SecretCache::cluster(None);
    let filter = ProfileSet::builtin().shape_filter();
    partition.apply(Event::Init, &filter);
    for index in 0..count {
        let mut secret = shapes[index % shapes.len()].clone();
        secret["metadata"]["name"] = format!("db-{index}").into();
        secret["metadata"]["namespace"] = "shop".into();
        let shape: SecretShape = serde_json::from_value(secret).expect("shape");
        partition.apply(Event::InitApply(shape), &filter);
    }
    partition.apply(Event::InitDone, &filter);
    cache
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
    c.bench_function(
        "baseline, bound pod: decode review, encode allowed response",
        |b| {
            b.iter(|| {
                let request = decode(black_box(&bound));
                let answer = AdmissionResponse::from(&request).into_review();
                black_box(serde_json::to_vec(&answer).expect("json"))
            })
        },
    );

    // 20 containers and 3 bindings (the default and two named ones) of 3 Secrets.
    let mut three = store.clone();
    for name in ["reporting-db", "cache-db"] {
        let mut view = store.get("shop", "orders-db-conn").expect("fixture");
        view.name = name.to_owned();
        three.insert(view);
    }
    let wide = grown_review(
        &body,
        20,
        serde_json::json!({
            "dbbind.io/secret": "orders-db-conn",
            "dbbind.io/secret.reporting": "reporting-db",
            "dbbind.io/secret.cache": "cache-db",
        }),
    );
    c.bench_function(
        "20 containers, 3 bindings: decode, decide, patch, encode",
        |b| b.iter(|| black_box(admit(black_box(&wide), &three, &profiles))),
    );

    // `auto` among 10,000 Secrets of the namespace, from the real (compact) cache.
    let cache = large_cache(10_000);
    let among = grown_review(
        &body,
        1,
        serde_json::json!({"dbbind.io/secret": "db-4999", "dbbind.io/profile": "auto"}),
    );
    c.bench_function(
        "auto among 10,000 cached Secrets: decode, decide, patch, encode",
        |b| b.iter(|| black_box(admit(black_box(&among), &cache, &profiles))),
    );

    let request = decode(&body);
    c.bench_function("decision alone: review() on a decoded request", |b| {
        b.iter(|| {
            black_box(review(
                black_box(&request),
                &store,
                &profiles,
                RotationRestarts::On,
            ))
        })
    });

    // One Secret watch event (a CloudNativePG app Secret, nine keys, as JSON with a
    // last-applied annotation): parsing it and keeping nothing is the floor any watch pays;
    // the cache's decoder keeps the names and digests the values for restart on rotation.
    let mut secret: serde_json::Value =
        serde_yaml_ng::from_slice(&fixture("tests/fixtures/secrets/cnpg-app.yaml"))
            .expect("secret");
    secret["metadata"]["annotations"] = serde_json::json!({
        "kubectl.kubernetes.io/last-applied-configuration": secret.to_string(),
    });
    let event = serde_json::to_vec(&secret).expect("json");
    c.bench_function("Secret event floor: parse, keep nothing", |b| {
        b.iter(|| {
            black_box(
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&event)).expect("json"),
            )
        })
    });
    c.bench_function("Secret event: decode the shape, digest the data", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<SecretShape>(black_box(&event)).expect("shape"))
        })
    });
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
