//! Real TLS on 127.0.0.1 with a CA generated in the test.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dbbind::server::ConnectionLimits;
use dbbind::tls::files::{FileReloader, Polled};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Options, Pki, TlsClient, review_fixture, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_are_served_to_a_client_that_verifies_the_ca() {
    let server = start(Options::default()).await;
    let body = review_fixture("create-replicaset-pod.json");
    for (alpn, expected) in [(&b"http/1.1"[..], &b"http/1.1"[..]), (b"h2", b"h2")] {
        let answer = server.client(alpn).post(&body).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.alpn.as_deref(), Some(expected));
        let review: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(review["response"]["patch"].is_string());
    }
    // A client that does not trust the CA gets no service.
    let stranger = Pki::new();
    let refused = TlsClient::new(&stranger.ca.cert_pem, b"h2", server.webhook)
        .post(&body)
        .await;
    let error = refused.unwrap_err();
    assert!(error.contains("invalid peer certificate"), "{error}");
    server.stop().await;
}

/// Lays out a certificate pair the way the kubelet mounts a Secret: files are symlinks through
/// `..data`, which points at a timestamped directory and is swapped atomically.
fn mount_version(dir: &Path, version: &str, cert: &str, key: &str) {
    let target = dir.join(version);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("tls.crt"), cert).unwrap();
    std::fs::write(target.join("tls.key"), key).unwrap();
    let next = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&next);
    std::os::unix::fs::symlink(version, &next).unwrap();
    std::fs::rename(&next, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_rotates_the_certificate_with_no_failed_request() {
    let server = start(Options {
        load_cert: false,
        ..Options::default()
    })
    .await;
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().to_owned();
    let first = server.pki.serving(3600);
    mount_version(
        &dir,
        "..2026_11_22_19_00_00.1",
        &first.cert_pem,
        &first.key_pem,
    );

    let mut reloader = FileReloader::new(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        Arc::clone(&server.certs),
    );
    assert!(matches!(reloader.poll().unwrap(), Polled::Loaded { .. }));
    let reloading = tokio::spawn(dbbind::reload::every(Duration::from_millis(20), reloader));

    let client = Arc::new(server.client(b"h2"));
    let body = Arc::new(review_fixture("create-replicaset-pod.json"));
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, body, done, failures, seen) = (
            client.clone(),
            body.clone(),
            done.clone(),
            failures.clone(),
            seen.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut sent = 0;
            while !done.load(Ordering::Acquire) && sent < 2000 {
                match client.post(&body).await {
                    Ok(answer) if answer.status == StatusCode::OK => {
                        seen.lock().unwrap().push(answer.peer_cert)
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::AcqRel);
                    }
                }
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A half-written pair first: it must not be loaded, the first pair keeps serving.
    let second = server.pki.serving(7200);
    let half = &second.cert_pem[..second.cert_pem.len() / 2];
    mount_version(&dir, "..2026_11_22_19_05_00.2", half, &second.key_pem);
    tokio::time::sleep(Duration::from_millis(300)).await;
    mount_version(
        &dir,
        "..2026_11_22_19_10_00.3",
        &second.cert_pem,
        &second.key_pem,
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    done.store(true, Ordering::Release);
    let mut total = 0;
    for task in load {
        total += task.await.unwrap();
    }
    reloading.abort();

    assert_eq!(failures.load(Ordering::Acquire), 0, "of {total} requests");
    let seen = seen.lock().unwrap().clone();
    let first_der = dbbind_leaf(&first.cert_pem);
    let second_der = dbbind_leaf(&second.cert_pem);
    assert!(seen.contains(&first_der), "the first certificate served");
    assert!(seen.contains(&second_der), "the second certificate served");
    let after = client.post(&body).await.unwrap();
    assert_eq!(
        after.peer_cert, second_der,
        "new connections get the second certificate"
    );
    assert!(seen.iter().all(|c| *c == first_der || *c == second_der));
    assert_eq!(
        server.certs.current().unwrap().not_after,
        dbbind::tls::not_after(&second_der).unwrap()
    );
    server.stop().await;
}

fn dbbind_leaf(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_do_not_block_others_and_are_cut_off() {
    let connections = ConnectionLimits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    };
    let server = start(Options {
        connections,
        ..Options::default()
    })
    .await;
    // One client connects and never starts TLS; another completes TLS and never sends headers.
    let mut silent_tcp = TcpStream::connect(server.webhook).await.unwrap();
    let client = server.client(b"http/1.1");
    let mut silent_http = client.connect().await.unwrap();
    silent_http.flush().await.unwrap();

    // Meanwhile a well-behaved client is answered at once.
    let answer = tokio::time::timeout(
        Duration::from_millis(400),
        client.post(&review_fixture("create-replicaset-pod.json")),
    )
    .await
    .expect("not blocked by the stalled clients")
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);

    // The stalled ones are closed by the server after their timeouts.
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(3), silent_tcp.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "handshake timeout: {closed:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(3), silent_http.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "header read timeout: {closed:?}"
    );
    server.stop().await;
}

#[test]
fn the_reloader_reports_each_state_once() {
    let pki = Pki::new();
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().to_owned();
    let store = dbbind::tls::CertStore::new();
    let mut reloader = FileReloader::new(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        Arc::clone(&store),
    );
    assert!(
        reloader
            .poll()
            .unwrap_err()
            .to_string()
            .starts_with("cannot read ")
    );
    let pair = pki.serving(600);
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
    assert!(matches!(reloader.poll().unwrap(), Polled::Loaded { .. }));
    assert_eq!(reloader.poll().unwrap(), Polled::Unchanged);
    // A key from another pair: refused once, then reported as still invalid; the old pair serves.
    std::fs::write(dir.join("tls.key"), pki.serving(600).key_pem).unwrap();
    let error = reloader.poll().unwrap_err().to_string();
    assert!(
        error
            .ends_with("are not a usable pair: the private key does not belong to the certificate"),
        "{error}"
    );
    assert_eq!(reloader.poll().unwrap(), Polled::StillInvalid);
    assert!(store.is_loaded());
}
