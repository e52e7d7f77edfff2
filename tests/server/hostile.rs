//! Clients that do not behave, over the real TLS listener: each is answered within its limit,
//! and a well-behaved client is served meanwhile.

use std::convert::Infallible;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use dbbind::server::Limits;
use futures::stream;
use http_body_util::{Full, StreamBody};
use hyper::StatusCode;
use hyper::body::Frame;

use crate::harness::{Options, review_fixture, start};

const LIMIT: usize = 64 * 1024;

fn small_limit() -> Options {
    Options {
        limits: Limits {
            max_body_bytes: LIMIT,
            ..Limits::default()
        },
        ..Options::default()
    }
}

/// A body of `size` bytes in 16 KiB chunks, with no length announced (HTTP/1.1 chunked, HTTP/2
/// without content-length): the server finds out it is too large only while reading it.
fn streamed(
    size: usize,
) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    let chunk = Bytes::from(vec![b' '; 16 * 1024]);
    let chunks = size.div_ceil(chunk.len());
    StreamBody::new(stream::iter(
        (0..chunks).map(move |_| Ok(Frame::data(chunk.clone()))),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_bodies_get_413_on_http1_and_http2() {
    let server = start(small_limit()).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let client = server.client(alpn);
        let name = String::from_utf8_lossy(alpn);

        // Announced: refused from the content-length, before a byte of the body is read.
        let request = client
            .mutate_request()
            .body(Full::new(Bytes::from(vec![b' '; 4 * LIMIT])))
            .unwrap();
        let answer = client.send(request).await;
        let answer = answer.unwrap_or_else(|error| panic!("{name}, announced: {error}"));
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{name}, announced"
        );

        // Not announced: refused once the limit is crossed.
        let request = client.mutate_request().body(streamed(4 * LIMIT)).unwrap();
        let answer = client.send(request).await;
        let answer = answer.unwrap_or_else(|error| panic!("{name}, streamed: {error}"));
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{name}, streamed"
        );
        let text = String::from_utf8_lossy(&answer.body);
        assert!(text.contains(&LIMIT.to_string()), "{name}: {text}");

        // And the next request is served.
        let answer = client
            .post(&review_fixture("create-replicaset-pod.json"))
            .await;
        assert_eq!(answer.unwrap().status, StatusCode::OK, "{name}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_just_under_the_limit_is_read_whole() {
    let server = start(small_limit()).await;
    // Whitespace after the review is valid JSON: the body is read whole and decided.
    let mut body = review_fixture("create-replicaset-pod.json");
    body.resize(LIMIT, b' ');
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let answer = server.client(alpn).post(&body).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
    }
    server.stop().await;
}

/// curl, unlike hyper's client, fails a request whose HTTP/2 stream the server resets before
/// the upload ends (exit 92, no status): the bug the discarding in server/body.rs fixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_the_413_on_http1_and_http2() {
    // Bodies larger than HTTP/2's flow-control windows (1 MiB here), so the upload is still
    // going when the server answers.
    let limit = 1024 * 1024;
    let server = start(Options {
        limits: Limits {
            max_body_bytes: limit,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &server.pki.ca.cert_pem).unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, vec![b' '; 3 * limit]).unwrap();
    let url = format!("https://{}/mutate", server.webhook);
    for (version, chunked) in [("--http2", false), ("--http2", true), ("--http1.1", false)] {
        let mut curl = Command::new("curl");
        curl.args(["-sS", version, "--cacert"])
            .arg(&ca)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", "content-type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&url);
        if chunked {
            curl.args(["-H", "transfer-encoding: chunked"]);
        }
        let output = tokio::task::spawn_blocking(move || curl.output())
            .await
            .unwrap()
            .expect("curl runs (.ci/run installs it)");
        let status = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && status == "413",
            "curl {version} chunked={chunked}: exit {:?}, status {status}, {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_far_over_the_limit_is_cut_off_at_once() {
    let server = start(small_limit()).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let client = server.client(alpn);
        let request = client.mutate_request().body(streamed(100 * LIMIT)).unwrap();
        // A 413 or a reset stream, both within the discard time: never a wait for 6.4 MB.
        let answer = tokio::time::timeout(Duration::from_secs(3), client.send(request))
            .await
            .expect("answered or cut off within the discard time");
        if let Ok(answer) = answer {
            assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        }
        let answer = client
            .post(&review_fixture("create-replicaset-pod.json"))
            .await;
        assert_eq!(answer.unwrap().status, StatusCode::OK);
    }
    server.stop().await;
}
