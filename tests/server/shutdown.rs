//! Shutdown: readiness goes false, accepting continues through the drain window, then stops,
//! and requests in flight finish.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::harness::{Options, review_fixture, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_after_shutdown_begins() {
    let mut server = start(Options {
        drain: Duration::from_millis(300),
        shutdown_timeout: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    assert_eq!(
        server.admin_get("/readyz").await,
        (StatusCode::OK, "ok\n".to_owned())
    );
    let body = review_fixture("create-replicaset-pod.json");
    let (head, tail) = body.split_at(body.len() / 2);

    // Three requests in flight: headers and half of each body sent, the rest held back.
    let client = server.client(b"http/1.1");
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let tls = client.connect().await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let (chunks, receiver) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream = futures::StreamExt::map(tokio_stream_of(receiver), |frame| frame);
        let request = Request::post("/mutate")
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(StreamBody::new(stream))
            .unwrap();
        chunks
            .send(Ok(Frame::data(Bytes::copy_from_slice(head))))
            .await
            .unwrap();
        let response = tokio::spawn(async move { sender.send_request(request).await });
        in_flight.push((chunks, response));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, reason) = server.admin_get("/readyz").await;
    assert_eq!(
        (status, reason.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n"
        )
    );
    // During the drain window new requests are still served...
    let answer = client.post(&body).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    // ...and after it, new connections are refused.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        TcpStream::connect(server.webhook).await.is_err(),
        "still accepting after the drain"
    );

    // The requests in flight complete normally.
    for (chunks, response) in in_flight {
        chunks
            .send(Ok(Frame::data(Bytes::copy_from_slice(tail))))
            .await
            .unwrap();
        drop(chunks);
        let response = response.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let review: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(review["response"]["patch"].is_string());
    }
    server.stop().await;
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_what_is_missing_and_metrics_are_exposed() {
    let server = start(Options {
        load_cert: false,
        ..Options::default()
    })
    .await;
    let (status, reason) = server.admin_get("/readyz").await;
    assert_eq!(
        (status, reason.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no serving certificate loaded\n"
        )
    );
    assert_eq!(
        server.admin_get("/livez").await,
        (StatusCode::OK, "ok\n".to_owned())
    );
    server.metrics.set_certificate_expiry(1_800_000_000);
    server.metrics.set_cache_objects(3);
    let (status, text) = server.admin_get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"patched\"} 0",
        "dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"unchanged\"} 0",
        "dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"denied\"} 0",
        "dbbind_admission_requests_total{webhook=\"mutate\",outcome=\"error\"} 0",
        "dbbind_admission_requests_total{webhook=\"validate\",outcome=\"unchanged\"} 0",
        "dbbind_admission_requests_total{webhook=\"validate\",outcome=\"denied\"} 0",
        "# TYPE dbbind_admission_duration_seconds histogram",
        "dbbind_secret_cache_objects 3",
        "dbbind_tls_certificate_expiry_timestamp_seconds 1800000000",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    server.stop().await;
}
