//! Self-managed certificates against a fake API server: first install, a second replica adopting
//! what is stored, and a replica that loses a write race adopting the winner's certificates.

use std::sync::Arc;
use std::time::Duration;

use dbbind::tls::CertStore;
use dbbind::tls::generate::SubjectNames;
use dbbind::tls::self_managed::{Location, Manager, Plan, Policy, plan};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::client::Body;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower_test::mock::{Handle, SendResponse};

type Mock = Handle<Request<Body>, Response<Body>>;

const SECRET_PATH: &str = "/api/v1/namespaces/dbbind/secrets/dbbind-tls";
const SECRETS_PATH: &str = "/api/v1/namespaces/dbbind/secrets";
const WEBHOOK_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/dbbind";

fn policy(extra_ip: bool) -> Policy {
    let ips = if extra_ip {
        vec!["127.0.0.1".parse().unwrap()]
    } else {
        vec![]
    };
    Policy {
        names: SubjectNames::for_service("dbbind", "dbbind", &[], &ips),
        serving_validity: Duration::from_secs(7 * 86_400),
        ca_validity: Duration::from_secs(365 * 86_400),
    }
}

fn manager(client: kube::Client, policy: Policy) -> (Manager, Arc<CertStore>) {
    let store = CertStore::new();
    let manager = Manager {
        secrets: Api::namespaced(client.clone(), "dbbind"),
        webhooks: Api::all(client.clone()),
        validating_webhooks: Api::all(client),
        location: Location {
            namespace: "dbbind".to_owned(),
            secret_name: "dbbind-tls".to_owned(),
            webhook_config_name: "dbbind".to_owned(),
            validating_webhook_config_name: None,
        },
        policy,
        store: Arc::clone(&store),
        on_loaded: None,
        ca_settle: Duration::ZERO,
    };
    (manager, store)
}

/// The next request, which must be `method path`; returns its JSON body.
async fn expect(
    handle: &mut Mock,
    method: Method,
    path: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request in time")
        .expect("a request");
    assert_eq!((request.method(), request.uri().path()), (&method, path));
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn webhook_config(ca_bundle: Option<&str>) -> Value {
    let mut client_config = json!({"url": "https://127.0.0.1:8443/mutate"});
    if let Some(bundle) = ca_bundle {
        client_config["caBundle"] = json!(bundle);
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "dbbind", "resourceVersion": "7"},
        "webhooks": [{"name": "bind.dbbind.io", "clientConfig": client_config, "admissionReviewVersions": ["v1"], "sideEffects": "None"}],
    })
}

fn with_version(mut object: Value, version: &str) -> Value {
    object["metadata"]["resourceVersion"] = json!(version);
    object
}

#[tokio::test]
async fn install_adopt_and_lose_a_race() {
    dbbind::tls::install_crypto_provider();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");

    // Replica A, first install: no Secret yet.
    let (a, a_store) = manager(client.clone(), policy(true));
    let a_run = tokio::spawn(async move { a.reconcile().await });
    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(404, &status(404, "NotFound")));
    // What the webhook trusts now is read, to be kept (nothing, on a first install).
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(None)));
    // The webhook trusts the new CA before any certificate from it is stored...
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(None)));
    let (updated_webhook, send) = expect(&mut handle, Method::PUT, WEBHOOK_PATH).await;
    assert_eq!(
        updated_webhook["metadata"]["resourceVersion"], "7",
        "optimistic concurrency"
    );
    send.send_response(json_response(
        200,
        &with_version(updated_webhook.clone(), "8"),
    ));
    // ...then the Secret is created.
    let (created, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
    send.send_response(json_response(201, &with_version(created.clone(), "1")));
    let bundle = updated_webhook["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["data"]["ca-bundle.crt"], bundle);
    assert_eq!(created["type"], "kubernetes.io/tls");
    // The final caBundle check finds it current: no second update.
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(
        200,
        &with_version(updated_webhook.clone(), "8"),
    ));
    a_run.await.unwrap().unwrap();
    let stored: Secret = serde_json::from_value(created.clone()).unwrap();
    let stored_cert = &stored.data.as_ref().unwrap()["tls.crt"].0;
    let served = a_store.current().unwrap();
    assert_eq!(
        served.key.cert[0].as_ref(),
        pem_to_der(stored_cert),
        "A serves what it stored"
    );

    // Replica B finds the Secret and adopts it without writing anything.
    let (b, b_store) = manager(client.clone(), policy(true));
    let b_run = tokio::spawn(async move { b.reconcile().await });
    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(200, &with_version(created.clone(), "1")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(
        200,
        &with_version(updated_webhook.clone(), "8"),
    ));
    b_run.await.unwrap().unwrap();
    assert_eq!(b_store.current().unwrap().key.cert, served.key.cert);

    // Replica C wants other names (it renews), but replica D's update lands first: C's replace
    // at the version it read conflicts, and C adopts D's certificates.
    let existing = dbbind::tls::self_managed::Material {
        ca: dbbind::tls::generate::PemPair {
            cert_pem: text(&created, "ca.crt"),
            key_pem: text(&created, "ca.key"),
        },
        bundle: text(&created, "ca-bundle.crt"),
        serving: dbbind::tls::generate::PemPair {
            cert_pem: text(&created, "tls.crt"),
            key_pem: text(&created, "tls.key"),
        },
    };
    let Plan::Renew {
        material: winner, ..
    } = plan(
        Some(&existing),
        "",
        &policy(false),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    else {
        panic!("different names renew");
    };
    let mut winner_secret = created.clone();
    for (key, value) in [
        ("tls.crt", &winner.serving.cert_pem),
        ("tls.key", &winner.serving.key_pem),
    ] {
        winner_secret["data"][key] = json!(base64(value));
    }
    let (c, c_store) = manager(client, policy(false));
    // The stored Secret carries another tool's metadata (Helm's ownership): kept on replace.
    let mut helm_owned = with_version(created.clone(), "1");
    helm_owned["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("Helm");
    helm_owned["metadata"]["annotations"] = json!({"meta.helm.sh/release-name": "dbbind"});
    let c_run = tokio::spawn(async move { c.reconcile().await });
    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(200, &helm_owned));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(
        200,
        &with_version(updated_webhook.clone(), "8"),
    ));
    let (replaced, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
    assert_eq!(replaced["metadata"]["resourceVersion"], "1");
    assert_eq!(
        replaced["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert_eq!(
        replaced["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "dbbind"
    );
    send.send_response(json_response(409, &status(409, "Conflict")));
    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(200, &with_version(winner_secret, "2")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(updated_webhook, "8")));
    c_run.await.unwrap().unwrap();
    assert_eq!(
        c_store.current().unwrap().key.cert[0].as_ref(),
        pem_to_der(winner.serving.cert_pem.as_bytes())
    );
}

fn text(secret: &Value, key: &str) -> String {
    let stored: Secret = serde_json::from_value(secret.clone()).unwrap();
    String::from_utf8(stored.data.unwrap()[key].0.clone()).unwrap()
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

const VALIDATING_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/dbbind-workloads";

fn validating_config(ca_bundle: Option<&str>) -> Value {
    let mut config = webhook_config(ca_bundle);
    config["kind"] = json!("ValidatingWebhookConfiguration");
    config["metadata"]["name"] = json!("dbbind-workloads");
    config["webhooks"][0]["name"] = json!("workloads.dbbind.io");
    config["webhooks"][0]["clientConfig"]["url"] = json!("https://127.0.0.1:8443/validate");
    config
}

#[tokio::test]
async fn both_webhook_configurations_trust_the_ca_before_it_is_used() {
    dbbind::tls::install_crypto_provider();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (mut checked, _store) = manager(client, policy(true));
    checked.location.validating_webhook_config_name = Some("dbbind-workloads".to_owned());
    let run = tokio::spawn(async move { checked.reconcile().await });

    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(404, &status(404, "NotFound")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(None)));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(None)));
    let (mutating, send) = expect(&mut handle, Method::PUT, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(mutating.clone(), "8")));
    let (_, send) = expect(&mut handle, Method::GET, VALIDATING_PATH).await;
    send.send_response(json_response(200, &validating_config(Some("b2xk"))));
    let (validating, send) = expect(&mut handle, Method::PUT, VALIDATING_PATH).await;
    send.send_response(json_response(200, &with_version(validating.clone(), "8")));
    // Only then is the Secret with certificates from the new CA created.
    let (created, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
    send.send_response(json_response(201, &with_version(created.clone(), "1")));
    let bundle = &created["data"]["ca-bundle.crt"];
    assert_eq!(&mutating["webhooks"][0]["clientConfig"]["caBundle"], bundle);
    assert_eq!(
        &validating["webhooks"][0]["clientConfig"]["caBundle"],
        bundle
    );
    assert_eq!(validating["kind"], "ValidatingWebhookConfiguration");
    // The final check finds both current.
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(mutating, "8")));
    let (_, send) = expect(&mut handle, Method::GET, VALIDATING_PATH).await;
    send.send_response(json_response(200, &with_version(validating, "8")));
    run.await.unwrap().unwrap();

    // A workload check that is not installed is no error.
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (mut checked, _store) = manager(client, policy(true));
    checked.location.validating_webhook_config_name = Some("dbbind-workloads".to_owned());
    let run = tokio::spawn(async move { checked.reconcile().await });
    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(200, &with_version(created.clone(), "1")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(bundle.as_str())));
    let (_, send) = expect(&mut handle, Method::GET, VALIDATING_PATH).await;
    send.send_response(json_response(404, &status(404, "NotFound")));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_deleted_secret_is_regenerated_keeping_the_old_ca_trusted() {
    dbbind::tls::install_crypto_provider();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (manager, store) = manager(client, policy(true));
    let old_ca = dbbind::tls::generate::new_ca(
        "old",
        Duration::from_secs(86_400),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let old_bundle = base64(&old_ca.cert_pem);
    let run = tokio::spawn(async move { manager.reconcile().await });

    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(404, &status(404, "NotFound")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(Some(&old_bundle))));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(Some(&old_bundle))));
    let (updated, send) = expect(&mut handle, Method::PUT, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(updated.clone(), "8")));
    let (created, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
    send.send_response(json_response(201, &with_version(created.clone(), "1")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(updated.clone(), "8")));
    run.await.unwrap().unwrap();

    let bundle = text(&created, "ca-bundle.crt");
    let new_ca = text(&created, "ca.crt");
    assert!(bundle.starts_with(new_ca.trim_end()), "the new CA first");
    assert!(
        bundle.contains(old_ca.cert_pem.trim_end()),
        "the CA other replicas still serve from stays trusted"
    );
    assert_eq!(
        updated["webhooks"][0]["clientConfig"]["caBundle"],
        base64(&bundle)
    );
    assert!(store.current().is_some());
}

/// The CAs in a caBundle, as DER.
fn cas_of(bundle_base64: &Value) -> Vec<Vec<u8>> {
    use base64::Engine;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle_base64.as_str().unwrap())
        .unwrap();
    CertificateDer::pem_slice_iter(&pem)
        .map(|der| der.unwrap().to_vec())
        .collect()
}

#[tokio::test]
async fn racing_writers_merge_their_cas_and_a_conflict_is_retried_at_once() {
    dbbind::tls::install_crypto_provider();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (manager, store) = manager(client, policy(true));
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let old_ca = dbbind::tls::generate::new_ca("old", day, now).unwrap();
    // Replica B, regenerating at the same moment, has already added its own CA.
    let b_ca = dbbind::tls::generate::new_ca("b", day, now).unwrap();
    let old_bundle = base64(&old_ca.cert_pem);
    let with_b = base64(&format!("{}{}", b_ca.cert_pem, old_ca.cert_pem));
    let run = tokio::spawn(async move { manager.reconcile().await });

    let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    send.send_response(json_response(404, &status(404, "NotFound")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(Some(&old_bundle))));
    // A's write merges into what B wrote: B's CA stays until one of them wins the Secret.
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &webhook_config(Some(&with_b))));
    let (first_try, send) = expect(&mut handle, Method::PUT, WEBHOOK_PATH).await;
    let cas = cas_of(&first_try["webhooks"][0]["clientConfig"]["caBundle"]);
    assert_eq!(cas.len(), 3, "A's new CA, B's and the old one");
    assert!(cas.contains(&pem_to_der(b_ca.cert_pem.as_bytes())));
    assert!(cas.contains(&pem_to_der(old_ca.cert_pem.as_bytes())));
    // B wrote again in between: the conflict is re-read and retried at once, not left for the
    // next pass (the Secret must not be stored before the webhook trusts its CA).
    send.send_response(json_response(409, &status(409, "Conflict")));
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(
        200,
        &with_version(webhook_config(Some(&with_b)), "9"),
    ));
    let (second_try, send) = expect(&mut handle, Method::PUT, WEBHOOK_PATH).await;
    assert_eq!(second_try["metadata"]["resourceVersion"], "9");
    assert_eq!(
        cas_of(&second_try["webhooks"][0]["clientConfig"]["caBundle"]),
        cas
    );
    send.send_response(json_response(200, &with_version(second_try.clone(), "10")));
    let (created, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
    send.send_response(json_response(201, &with_version(created.clone(), "1")));
    // A won: before serving it sets the caBundle to the Secret's, which drops B's CA (nobody
    // serves from it: B adopts A's Secret).
    let (_, send) = expect(&mut handle, Method::GET, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(second_try, "10")));
    let (settled, send) = expect(&mut handle, Method::PUT, WEBHOOK_PATH).await;
    send.send_response(json_response(200, &with_version(settled.clone(), "11")));
    run.await.unwrap().unwrap();

    let bundle = text(&created, "ca-bundle.crt");
    assert_eq!(
        settled["webhooks"][0]["clientConfig"]["caBundle"],
        base64(&bundle)
    );
    let settled_cas = cas_of(&settled["webhooks"][0]["clientConfig"]["caBundle"]);
    assert_eq!(settled_cas.len(), 2, "A's CA and the old one");
    assert!(!settled_cas.contains(&pem_to_der(b_ca.cert_pem.as_bytes())));
    assert!(store.current().is_some());
}
