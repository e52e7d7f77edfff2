//! The Secret watch cache against a fake API server: list, watch events, a relist after the
//! watch expires (Secrets deleted meanwhile disappear), and errors that never end the watch.

use std::sync::Arc;
use std::time::Duration;

use dbbind::cache::{SecretCache, SecretShape, watch};
use dbbind_core::secret::SecretLookup;
use http::{Request, Response};
use kube::Api;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

fn secret(name: &str, version: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| ((*k).to_owned(), json!("VkFMVUU=")))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": version},
        "type": "Opaque", "data": data,
    })
}

fn list(version: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": version}, "items": items});
    Response::builder()
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn events(events: &[(&str, Value)]) -> Response<Body> {
    let mut body = Vec::new();
    for (kind, object) in events {
        body.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap());
        body.push(b'\n');
    }
    Response::builder().body(Body::from(body)).unwrap()
}

type Mock = Handle<Request<Body>, Response<Body>>;

/// The next request, which must be a list (or a watch when `watch` is set).
async fn expect(handle: &mut Mock, watch: bool) -> (String, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(30), handle.next_request())
        .await
        .expect("the watcher asks again")
        .expect("a request");
    let uri = request.uri().to_string();
    assert!(uri.starts_with("/api/v1/secrets?"), "{uri}");
    assert!(
        uri.contains("fieldSelector=type%21%3Dhelm.sh%2Frelease.v1"),
        "Helm release Secrets are filtered out by the API server: {uri}"
    );
    assert_eq!(uri.contains("watch=true"), watch, "{uri}");
    (uri, send)
}

fn keys(cache: &SecretCache, name: &str) -> Option<Vec<String>> {
    cache
        .get("shop", name)
        .map(|view| view.keys.into_iter().collect())
}

async fn until(condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

/// A cache watching all Secrets of a fake API server; the handle answers its requests.
fn watch_fake_api_server() -> (Arc<SecretCache>, Mock, tokio::task::JoinHandle<()>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (cache, partition) = SecretCache::cluster(None);
    let filters = tokio::sync::watch::channel(Arc::new(
        dbbind_core::profile::ProfileSet::builtin().shape_filter(),
    ))
    .1;
    let watching = tokio::spawn(watch::run(
        partition,
        Api::<SecretShape>::all(client),
        filters,
        || {},
    ));
    (Arc::new(cache), handle, watching)
}

#[tokio::test]
async fn the_cache_follows_lists_watches_relists_and_errors() {
    let (cache, mut handle, watching) = watch_fake_api_server();

    // The first list fills the cache and marks it synced.
    assert!(!cache.is_synced());
    let (_, send) = expect(&mut handle, false).await;
    send.send_response(list(
        "10",
        vec![secret("a", "5", &["host"]), secret("b", "6", &["password"])],
    ));
    let (uri, send) = expect(&mut handle, true).await;
    assert!(uri.contains("resourceVersion=10"), "{uri}");
    until(|| cache.is_synced()).await;
    assert_eq!(cache.len(), 2);

    // Watch events: add, modify, delete.
    send.send_response(events(&[
        ("ADDED", secret("c", "11", &["uri"])),
        ("MODIFIED", secret("a", "12", &["host", "port"])),
        ("DELETED", secret("b", "13", &["password"])),
    ]));
    until(|| keys(&cache, "b").is_none()).await;
    assert_eq!(keys(&cache, "a").unwrap(), ["host", "port"]);
    assert_eq!(keys(&cache, "c").unwrap(), ["uri"]);

    // The stream ended; the watch resumes from the last version, then expires: 410 Gone.
    let (uri, send) = expect(&mut handle, true).await;
    assert!(uri.contains("resourceVersion=13"), "{uri}");
    send.send_response(events(&[(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "message": "too old resource version", "code": 410}),
    )]));

    // The relist replaces the cache whole: "c" was deleted while the watch was down.
    let (_, send) = expect(&mut handle, false).await;
    send.send_response(list(
        "20",
        vec![
            secret("a", "12", &["host", "port"]),
            secret("d", "19", &["DATABASE_URL"]),
        ],
    ));
    let (_, send) = expect(&mut handle, true).await;
    until(|| keys(&cache, "d").is_some()).await;
    assert_eq!(keys(&cache, "c"), None);
    assert_eq!(cache.len(), 2);

    // A server error does not end the watch: it backs off and asks again.
    send.send_response(
        Response::builder()
            .status(500)
            .body(Body::from(b"{\"kind\":\"Status\",\"code\":500}".to_vec()))
            .unwrap(),
    );
    let (_, send) = expect(&mut handle, true).await;
    send.send_response(events(&[("ADDED", secret("e", "21", &["password"]))]));
    until(|| keys(&cache, "e").is_some()).await;
    assert!(!watching.is_finished());
    assert!(cache.is_synced(), "still serving from the cache it has");
    watching.abort();
}

#[tokio::test]
async fn profiles_that_read_another_label_make_the_cache_list_again() {
    use dbbind_core::secret::ShapeFilter;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (cache, partition) = SecretCache::cluster(None);
    let (filters, receiver) = tokio::sync::watch::channel(Arc::new(ShapeFilter::default()));
    let watching = tokio::spawn(watch::run(
        partition,
        Api::<SecretShape>::all(client),
        receiver,
        || {},
    ));
    let labelled = || {
        let mut object = secret("a", "5", &["host"]);
        object["metadata"]["labels"] = json!({"team": "orders"});
        object
    };
    let (_, send) = expect(&mut handle, false).await;
    send.send_response(list("10", vec![labelled()]));
    let (_, _watch) = expect(&mut handle, true).await;
    until(|| cache.is_synced()).await;
    assert!(cache.get("shop", "a").unwrap().labels.is_empty());

    // A reload whose profiles read the same labels changes nothing; one reading `team` relists.
    filters.send_replace(Arc::new(ShapeFilter::default()));
    let mut filter = ShapeFilter::default();
    filter.labels.insert("team".to_owned());
    filters.send_replace(Arc::new(filter));
    let (_, send) = expect(&mut handle, false).await;
    assert!(
        cache.is_synced(),
        "the old contents answer during the relist"
    );
    send.send_response(list("11", vec![labelled()]));
    let (_, _watch) = expect(&mut handle, true).await;
    until(|| cache.get("shop", "a").unwrap().labels.contains_key("team")).await;
    watching.abort();
}

/// Captured log output, for the canary below.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_value_reaches_a_log_line_at_any_level() {
    use base64::Engine;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Thread-local: this current-thread runtime runs every task of the test on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let marker = "LOGCANARY-7f3a9c";
    let encoded = base64::engine::general_purpose::STANDARD.encode(marker);
    let mut canary = secret("orders-db-conn", "5", &[]);
    canary["data"] = json!({"host": encoded, "username": encoded, "password": encoded});

    let (cache, mut handle, watching) = watch_fake_api_server();
    let (_, send) = expect(&mut handle, false).await;
    send.send_response(list("10", vec![canary.clone()]));
    let (_, send) = expect(&mut handle, true).await;
    let mut modified = canary.clone();
    modified["data"]["port"] = json!(encoded);
    send.send_response(events(&[
        ("MODIFIED", modified),
        ("BOGUS", json!({"data": {"password": encoded}})),
    ]));
    until(|| keys(&cache, "orders-db-conn").is_some_and(|k| k.contains(&"port".to_owned()))).await;

    // Decide reviews against that cache: patched, and denied naming the Secret's keys.
    let metrics = Arc::new(dbbind::metrics::Metrics::new());
    let state = dbbind::server::WebhookState::new(
        cache.clone(),
        dbbind::profiles::SharedProfiles::new(dbbind_core::profile::ProfileSet::builtin()),
        metrics,
        dbbind::server::Limits::default(),
    );
    let app = dbbind::server::webhook::router(state);
    let mut denying: Value = serde_json::from_slice(&crate::harness::review_fixture(
        "create-replicaset-pod.json",
    ))
    .unwrap();
    denying["request"]["object"]["metadata"]["annotations"]["dbbind.io/keys"] =
        json!("password=nope");
    for body in [
        crate::harness::review_fixture("create-replicaset-pod.json"),
        serde_json::to_vec(&denying).unwrap(),
    ] {
        use tower::ServiceExt;
        let request = axum::http::Request::post("/mutate")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    watching.abort();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("admitted") && logs.contains("denied"),
        "the decisions were logged:\n{logs}"
    );
    assert!(
        !logs.contains(marker),
        "a value leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains(&encoded),
        "an encoded value leaked into the logs:\n{logs}"
    );
    // A Debug print of a Secret shows its bytes as a list.
    let as_bytes = format!("{:?}", marker.as_bytes());
    assert!(
        !logs.contains(as_bytes.trim_matches(['[', ']'])),
        "a value leaked as bytes:\n{logs}"
    );
}

#[test]
fn a_scoped_cache_answers_for_its_namespaces_only_and_syncs_when_all_have() {
    use dbbind_core::secret::ShapeFilter;
    use kube::runtime::watcher::Event;
    let (scoped, partitions) =
        SecretCache::namespaces(&["shop".to_owned(), "billing".to_owned()], None);
    let partitions: std::collections::BTreeMap<String, _> = partitions.into_iter().collect();
    let in_namespace = |namespace: &str, name: &str| {
        let mut object = secret(name, "1", &["host"]);
        object["metadata"]["namespace"] = json!(namespace);
        serde_json::from_value::<SecretShape>(object).unwrap()
    };
    let filter = ShapeFilter::default();
    for event in [
        Event::Init,
        Event::InitApply(in_namespace("shop", "orders-db")),
        Event::InitDone,
    ] {
        partitions["shop"].apply(event, &filter);
    }
    assert!(!scoped.is_synced(), "billing has not listed yet");
    partitions["billing"].apply(Event::Init, &filter);
    partitions["billing"].apply(Event::InitDone, &filter);
    assert!(scoped.is_synced());
    assert!(scoped.get("shop", "orders-db").is_some());
    assert!(scoped.get("billing", "orders-db").is_none());
    assert!(
        scoped.get("elsewhere", "orders-db").is_none(),
        "unwatched namespaces know no Secrets"
    );
    assert_eq!(scoped.len(), 1);
}
