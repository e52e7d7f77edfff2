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

/// Headers sent, a first chunk of body, and then nothing: on one HTTP/2 connection, many
/// such streams hold no decision slot (the body is read before one is taken) and only what
/// they sent of the body budget; each is answered 408 at the body-read deadline, and a
/// well-behaved client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_body_never_ends_hold_no_slot_and_get_408() {
    let body_read_timeout = Duration::from_millis(800);
    let server = start(Options {
        limits: Limits {
            max_concurrent: 4,
            body_read_timeout,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let client = server.client(b"h2");
    let (sender, _connection) = client.http2().await;

    let started = std::time::Instant::now();
    let mut open_bodies = Vec::new();
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let (mut feed, chunks) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        feed.try_send(Ok(Frame::data(Bytes::from_static(b"{\"kind\":"))))
            .unwrap();
        open_bodies.push(feed);
        let request = client
            .mutate_request()
            .body(StreamBody::new(chunks))
            .unwrap();
        let mut sender = sender.clone();
        stalled.push(tokio::spawn(async move {
            sender
                .send_request(request)
                .await
                .map(|response| response.status())
        }));
    }

    // Fifty stalled streams, four slots: a good request is still answered at once.
    let answer = tokio::time::timeout(
        Duration::from_millis(500),
        client.post(&review_fixture("create-replicaset-pod.json")),
    )
    .await
    .expect("served while the stalled streams wait for their bodies");
    assert_eq!(answer.unwrap().status, StatusCode::OK);

    for stream in stalled {
        let status = tokio::time::timeout(Duration::from_secs(5), stream)
            .await
            .expect("answered at the body-read deadline")
            .unwrap()
            .unwrap();
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    }
    assert!(started.elapsed() >= body_read_timeout);
    drop(open_bodies);
    server.stop().await;
}

/// HTTP/2 "rapid reset" (CVE-2023-44487): streams opened and cancelled at once, thousands of
/// times on one connection. Other clients are served during and after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reset_streams_does_not_stop_other_clients() {
    let server = start(Options::default()).await;
    let client = server.client(b"h2");
    let (sender, _connection) = client.http2().await;
    let body = Bytes::from(review_fixture("create-replicaset-pod.json"));

    let flood = {
        let client_request = client.mutate_request();
        let template = client_request.body(()).unwrap();
        let body = body.clone();
        tokio::spawn(async move {
            let mut sender = sender;
            let mut refused = 0;
            for _ in 0..5000 {
                if sender.ready().await.is_err() {
                    refused += 1;
                    break;
                }
                let mut request = hyper::Request::new(Full::new(body.clone()));
                *request.method_mut() = template.method().clone();
                *request.uri_mut() = template.uri().clone();
                *request.headers_mut() = template.headers().clone();
                // Dropping the response future cancels the stream: RST_STREAM(CANCEL).
                let response = sender.send_request(request);
                let _ = tokio::time::timeout(Duration::from_micros(50), response).await;
            }
            refused
        })
    };

    let good = server.client(b"h2");
    for _ in 0..20 {
        let answer = tokio::time::timeout(Duration::from_secs(2), good.post(&body))
            .await
            .expect("served during the flood");
        assert_eq!(answer.unwrap().status, StatusCode::OK);
    }
    tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flood ends")
        .unwrap();
    let answer = good.post(&body).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    // The flood reached the server, and most of it as resets: of 5,000 streams, some were
    // answered before the client cancelled them, and the rest never got an answer.
    let (_, metrics) = server.admin_get("/metrics").await;
    let answered: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("dbbind_admission_requests_total{webhook=\"mutate\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let flood_answered = answered.saturating_sub(21);
    assert!(
        flood_answered > 0 && flood_answered < 5000,
        "{flood_answered} of the flood's streams answered"
    );
    server.stop().await;
}

/// Reads from `tls` until the server closes it; returns how long that took.
async fn time_to_close(mut tls: impl tokio::io::AsyncRead + Unpin) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {} // the server's SETTINGS, GOAWAY, ...
            Err(_) => panic!("still open after 10 s"),
        }
    }
}

/// HTTP/2 has no timeout of its own for a client that sends nothing before its preface: the
/// connection is closed at the header-read timeout. After the preface, a client that answers
/// nothing is closed too, and one that keeps sending requests is not cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_http2_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let server = start(Options {
        connections: dbbind::server::ConnectionLimits {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(1500),
            ..dbbind::server::ConnectionLimits::default()
        },
        ..Options::default()
    })
    .await;
    let client = server.client(b"h2");

    // TLS done, ALPN h2, then not a byte: closed at the header-read timeout.
    let silent = client.connect().await.unwrap();
    let closed = time_to_close(silent).await;
    assert!(closed < Duration::from_millis(1400), "{closed:?}");

    // The preface and SETTINGS, then nothing (not even PING acks): closed by the keep-alive
    // ping's timeout or the idle timeout, whichever comes first.
    let mut idle = client.connect().await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let closed = time_to_close(idle).await;
    assert!(closed < Duration::from_millis(3000), "{closed:?}");

    // Requests every 0.5 s on one connection outlive the idle timeout.
    let (mut sender, _connection) = client.http2().await;
    let body = Bytes::from(review_fixture("create-replicaset-pod.json"));
    for _ in 0..6 {
        let request = client
            .mutate_request()
            .body(Full::new(body.clone()))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .expect("the connection stays open");
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.stop().await;
}

/// HTTP/2 clients that answer pings and send nothing are never idle; the connection cap bounds
/// them. At the cap a new connection is still served: the one that has waited longest since
/// its last request is closed (GOAWAY) to make room, never one with a request in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_waiting_connection_makes_room() {
    let server = start(Options {
        connections: dbbind::server::ConnectionLimits {
            max_connections: 3,
            ..dbbind::server::ConnectionLimits::default()
        },
        ..Options::default()
    })
    .await;
    let client = server.client(b"h2");
    let body = Bytes::from(review_fixture("create-replicaset-pod.json"));
    let ask = |sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>| {
        let request = client
            .mutate_request()
            .body(Full::new(body.clone()))
            .unwrap();
        sender.send_request(request)
    };
    // Three well-behaved HTTP/2 connections, kept open (hyper's client answers pings); the
    // first and the third are used after the second, so the second has waited longest.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(client.http2::<Full<Bytes>>().await);
    }
    for index in [0, 2] {
        assert_eq!(
            ask(&mut held[index].0).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let fourth = tokio::time::timeout(Duration::from_secs(2), client.post(&body))
        .await
        .expect("served at once");
    assert_eq!(fourth.unwrap().status, StatusCode::OK);
    // The second connection was told to go away (its driver ends), the others still serve.
    let (_, second) = held.remove(1);
    tokio::time::timeout(Duration::from_secs(2), second)
        .await
        .expect("the longest-waiting connection is closed")
        .unwrap()
        .unwrap();
    for (sender, _) in &mut held {
        assert_eq!(ask(sender).await.unwrap().status(), StatusCode::OK);
    }
    server.stop().await;
}

/// TCP connections that never start TLS (a port scanner, a flood) fill the cap: each new
/// client is still served at once, the oldest unfinished handshake closed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_make_room_first() {
    use tokio::io::AsyncReadExt;
    let server = start(Options {
        connections: dbbind::server::ConnectionLimits {
            max_connections: 8,
            handshake_timeout: Duration::from_secs(30),
            ..dbbind::server::ConnectionLimits::default()
        },
        ..Options::default()
    })
    .await;
    let client = server.client(b"h2");
    // A served connection first: it has waited longer than the silent ones, yet they go first.
    let (mut kept, _kept_driver) = client.http2::<Full<Bytes>>().await;
    let body = Bytes::from(review_fixture("create-replicaset-pod.json"));
    let first = client
        .mutate_request()
        .body(Full::new(body.clone()))
        .unwrap();
    assert_eq!(
        kept.send_request(first).await.unwrap().status(),
        StatusCode::OK
    );
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(
            tokio::net::TcpStream::connect(server.webhook)
                .await
                .unwrap(),
        );
    }
    for _ in 0..5 {
        let answer = tokio::time::timeout(Duration::from_secs(2), client.post(&body))
            .await
            .expect("served at once beside the silent connections");
        assert_eq!(answer.unwrap().status, StatusCode::OK);
    }
    let request = client
        .mutate_request()
        .body(Full::new(body.clone()))
        .unwrap();
    assert_eq!(
        kept.send_request(request).await.unwrap().status(),
        StatusCode::OK,
        "the served connection was kept"
    );
    // The oldest silent connections were closed (read returns end of file at once).
    let mut closed = 0;
    for stream in &mut silent {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 13, "{closed} of 20 silent connections closed");
    server.stop().await;
}

/// When every open connection has a request in flight, a new one is refused at once rather
/// than any request cut off; once a request is answered, the next connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_new_one_is_refused() {
    let server = start(Options {
        connections: dbbind::server::ConnectionLimits {
            max_connections: 2,
            ..dbbind::server::ConnectionLimits::default()
        },
        limits: Limits {
            body_read_timeout: Duration::from_secs(30),
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let client = server.client(b"h2");
    // Two connections, each with a request whose body has not finished arriving.
    let mut feeds = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..2 {
        let (mut sender, driver) = client.http2().await;
        tokio::spawn(driver);
        let (mut feed, chunks) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        feed.try_send(Ok(Frame::data(Bytes::from_static(b"{\"kind\":"))))
            .unwrap();
        feeds.push(feed);
        let request = client
            .mutate_request()
            .body(StreamBody::new(chunks))
            .unwrap();
        pending.push(tokio::spawn(async move {
            sender.send_request(request).await.map(|r| r.status())
        }));
    }
    // Let the server see both requests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = review_fixture("create-replicaset-pod.json");
    let refused = tokio::time::timeout(Duration::from_secs(2), client.post(&body))
        .await
        .expect("refused at once, not held");
    assert!(
        refused.is_err(),
        "a third connection was served: {refused:?}"
    );

    // One body ends (a bad AdmissionReview, answered 400): its connection waits again and
    // makes room.
    use futures::SinkExt;
    let mut feed = feeds.remove(0);
    feed.send(Ok(Frame::data(Bytes::from_static(b"1}"))))
        .await
        .unwrap();
    drop(feed);
    let status = pending.remove(0).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer = tokio::time::timeout(Duration::from_secs(2), client.post(&body))
        .await
        .expect("served once a connection was free");
    assert_eq!(answer.unwrap().status, StatusCode::OK);
    drop(feeds);
    server.stop().await;
}
