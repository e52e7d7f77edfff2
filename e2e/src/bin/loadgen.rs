//! A load generator for dbbind's serving stack: the real server (TLS, HTTP/2, the /mutate
//! router, the decision) on loopback, driven by concurrent HTTP/2 clients for a fixed number of
//! requests. It compares binding a pod with a baseline request through the same stack that needs
//! no binding (an UPDATE review, which dbbind admits unchanged), both measured in this run.
//!
//!   cargo run --release -p dbbind-e2e --bin loadgen [-- REQUESTS CONNECTIONS]
//!   cargo run --release -p dbbind-e2e --bin loadgen -- serve [--cert-dir DIR]
//!
//! `serve` only serves, for an external load generator (`scripts/bench` and `scripts/soak` run
//! h2load): it prints the listener's address on stdout and stops when stdin closes. With
//! `--cert-dir`, the serving certificate is `DIR/tls.crt` and `DIR/tls.key`, reloaded by
//! `dbbind serve`'s own file reloader (checked every second) when they change; each load is
//! printed on stderr.
//!
//! Traffic goes to 127.0.0.1 only, and the run ends by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dbbind::metrics::Metrics;
use dbbind::profiles::SharedProfiles;
use dbbind::server::{
    ConnectionLimits, Limits, Parts, Readiness, ServeOptions, Server, WebhookState,
};
use dbbind::tls::files::FileReloader;
use dbbind::tls::generate::{SubjectNames, issue_serving, new_ca};
use dbbind::tls::{CertStore, ServingCert};
use dbbind_core::profile::ProfileSet;
use dbbind_core::secret::{SecretStore, SecretView};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1).peekable();
    let serve_only = args.next_if(|arg| arg == "serve").is_some();
    let cert_dir = match args.next_if(|arg| arg == "--cert-dir") {
        Some(_) => Some(std::path::PathBuf::from(
            args.next().ok_or("--cert-dir DIR")?,
        )),
        None => None,
    };
    let requests: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let connections: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    dbbind::tls::install_crypto_provider();

    let root = dbbind_e2e::tools::repo_root();
    let read = |path: &str| std::fs::read(root.join(path));
    let now = OffsetDateTime::now_utc();
    let ca = new_ca("loadgen CA", Duration::from_secs(3600), now)?;
    let names = SubjectNames {
        dns: vec![],
        ips: vec!["127.0.0.1".parse()?],
    };
    let pair = issue_serving(&ca, &names, Duration::from_secs(3600), now)?;
    let certs = CertStore::new();
    match &cert_dir {
        None => certs.set(ServingCert::from_pem(
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
        )?),
        Some(dir) => {
            let mut reloader = FileReloader::new(
                &dir.join("tls.crt"),
                &dir.join("tls.key"),
                Arc::clone(&certs),
            )
            .with_on_loaded(Arc::new(|not_after| {
                eprintln!("loadgen: serving certificate loaded, notAfter {not_after}");
            }));
            reloader.poll()?;
            tokio::spawn(dbbind::reload::every(Duration::from_secs(1), reloader));
        }
    }
    let secret = serde_yaml_ng::from_slice(&read("tests/fixtures/secrets/generic-external.yaml")?)?;
    let store: SecretStore = [SecretView::from_secret(&secret, "shop")]
        .into_iter()
        .collect();
    let metrics = Arc::new(Metrics::new());
    let limits = Limits {
        max_concurrent: 1024,
        ..Limits::default()
    };
    let server = Server::bind(ServeOptions {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        connections: ConnectionLimits::default(),
        shutdown_drain: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(5),
    })
    .await?;
    let addr = server.webhook_addr().ok_or("no address")?;
    let parts = Parts {
        webhook: WebhookState::new(
            Arc::new(store),
            SharedProfiles::new(ProfileSet::builtin()),
            Arc::clone(&metrics),
            limits,
        ),
        readiness: Arc::new(Readiness::new(Arc::clone(&certs), || true)),
        certs,
        metrics,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(parts, async {
        let _ = stopped.await;
    }));

    if serve_only {
        println!("{addr}");
        // Serve until whoever started us closes our stdin.
        let mut stdin = tokio::io::stdin();
        let mut sink = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut sink).await?;
        let _ = stop.send(());
        serving.await??;
        return Ok(());
    }

    let cases = [
        (
            "baseline: UPDATE review, admitted unchanged",
            read("tests/fixtures/admission/update-pod.json")?,
        ),
        (
            "bind: ReplicaSet pod CREATE, patched",
            read("tests/fixtures/admission/create-replicaset-pod.json")?,
        ),
    ];
    println!(
        "| load ({requests} requests, {connections} HTTP/2 connections) | requests/s | ratio to baseline (time per request) | p50 | p99 |"
    );
    println!("|---|---|---|---|---|");
    let mut baseline_rate = None;
    for (name, body) in cases {
        let result = run(addr, &ca.cert_pem, Bytes::from(body), requests, connections).await?;
        let rate = requests as f64 / result.elapsed.as_secs_f64();
        let base = *baseline_rate.get_or_insert(rate);
        println!(
            "| {name} | {rate:.0} | {:.2} | {:.2} ms | {:.2} ms |",
            base / rate,
            result.percentile(0.50).as_secs_f64() * 1000.0,
            result.percentile(0.99).as_secs_f64() * 1000.0
        );
    }
    let _ = stop.send(());
    serving.await??;
    Ok(())
}

struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// Sends `total` POSTs over `connections` HTTP/2 connections, each sending its share in turn.
async fn run(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    body: Bytes,
    total: usize,
    connections: usize,
) -> Result<Run, Failure> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(dbbind::tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let share = total / connections + usize::from(worker < total % connections);
        let (connector, body) = (connector.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            // As Go's HTTP client, the API server's, does.
            stream.set_nodelay(true)?;
            let tls = connector
                .connect(ServerName::IpAddress(addr.ip().into()), stream)
                .await?;
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await?;
            tokio::spawn(connection);
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let request = hyper::Request::post(format!("https://{addr}/mutate"))
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if !status.is_success() {
                    return Err(format!("status {status}").into());
                }
                latencies.push(sent.elapsed());
            }
            Ok::<_, Failure>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Run { elapsed, latencies })
}
