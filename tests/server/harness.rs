//! An in-process dbbind server on loopback with a CA made in the test, and a TLS client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dbbind::metrics::Metrics;
use dbbind::profiles::SharedProfiles;
use dbbind::server::{
    ConnectionLimits, Limits, Parts, Readiness, ServeOptions, Server, WebhookState,
};
use dbbind::tls::generate::{PemPair, SubjectNames, issue_serving, new_ca};
use dbbind::tls::{CertStore, ServingCert};
use dbbind_core::profile::ProfileSet;
use dbbind_core::secret::SecretStore;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::support::*;

pub struct Pki {
    pub ca: PemPair,
}

impl Pki {
    pub fn new() -> Pki {
        dbbind::tls::install_crypto_provider();
        let ca = new_ca(
            "test CA",
            Duration::from_secs(3600),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        Pki { ca }
    }

    /// A serving pair for 127.0.0.1, valid for `seconds`.
    pub fn serving(&self, seconds: u64) -> PemPair {
        let names =
            SubjectNames::for_service("dbbind", "dbbind", &[], &["127.0.0.1".parse().unwrap()]);
        issue_serving(
            &self.ca,
            &names,
            Duration::from_secs(seconds),
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    }
}

pub struct TestServer {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub pki: Pki,
    pub certs: Arc<CertStore>,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<()>>,
}

pub struct Options {
    pub limits: Limits,
    pub connections: ConnectionLimits,
    pub drain: Duration,
    pub shutdown_timeout: Duration,
    /// Load a certificate before serving (the file-rotation test loads its own).
    pub load_cert: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            drain: Duration::from_millis(200),
            shutdown_timeout: Duration::from_secs(10),
            load_cert: true,
        }
    }
}

/// The Secrets every server test sees: the generic fixture in namespace "shop".
pub fn secrets() -> SecretStore {
    store_of(&[&fixture_secret("generic-external.yaml")])
}

pub fn webhook_state(limits: Limits, metrics: Arc<Metrics>) -> WebhookState {
    WebhookState::new(
        Arc::new(secrets()),
        SharedProfiles::new(ProfileSet::builtin()),
        metrics,
        limits,
    )
}

pub async fn start(options: Options) -> TestServer {
    let pki = Pki::new();
    let certs = CertStore::new();
    if options.load_cert {
        let pair = pki.serving(3600);
        certs
            .set(ServingCert::from_pem(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes()).unwrap());
    }
    let metrics = Arc::new(Metrics::new());
    let server = Server::bind(ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        connections: options.connections,
        shutdown_drain: options.drain,
        shutdown_timeout: options.shutdown_timeout,
    })
    .await
    .unwrap();
    let webhook = server.webhook_addr().unwrap();
    let admin = server.admin_addr().unwrap();
    let parts = Parts {
        webhook: webhook_state(options.limits, Arc::clone(&metrics)),
        certs: Arc::clone(&certs),
        readiness: Arc::new(Readiness::new(Arc::clone(&certs), || true)),
        metrics: Arc::clone(&metrics),
    };
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(parts, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    TestServer {
        webhook,
        admin,
        pki,
        certs,
        metrics,
        shutdown: Some(shutdown),
        task: Some(task),
    }
}

impl TestServer {
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    pub fn client(&self, alpn: &'static [u8]) -> TlsClient {
        TlsClient::new(&self.pki.ca.cert_pem, alpn, self.webhook)
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let stream = TcpStream::connect(self.admin).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", "admin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// A TLS client that trusts only the test CA.
pub struct TlsClient {
    connector: TlsConnector,
    addr: SocketAddr,
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub alpn: Option<Vec<u8>>,
    /// The leaf certificate the server presented.
    pub peer_cert: Vec<u8>,
}

impl TlsClient {
    pub fn new(ca_pem: &str, alpn: &'static [u8], addr: SocketAddr) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(dbbind::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        // Full handshakes only: a resumed session reports the certificate of the session it
        // resumes, not the one the server would present now.
        config.resumption = rustls::client::Resumption::disabled();
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            addr,
        }
    }

    /// A POST to /mutate, with a JSON content type, for [`TlsClient::send`].
    pub fn mutate_request(&self) -> hyper::http::request::Builder {
        Request::post(format!("https://{}/mutate", self.addr))
            .header("content-type", "application/json")
    }

    /// A new HTTP/2 connection, its driver spawned: send requests with the sender; the
    /// driver's handle ends when the connection does.
    pub async fn http2<B>(
        &self,
    ) -> (
        hyper::client::conn::http2::SendRequest<B>,
        JoinHandle<hyper::Result<()>>,
    )
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.connect().await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        (sender, tokio::spawn(connection))
    }

    pub async fn connect(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let stream = TcpStream::connect(self.addr).await?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        self.connector.connect(name, stream).await
    }

    /// POSTs `body` as JSON to /mutate on a new connection.
    pub async fn post(&self, body: &[u8]) -> Result<Answer, String> {
        let request = self
            .mutate_request()
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        self.send(request).await
    }

    /// Sends `request` on a new connection; the body is any, streamed or not.
    pub async fn send<B>(&self, request: Request<B>) -> Result<Answer, String>
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.connect().await.map_err(|e| e.to_string())?;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let response = if alpn.as_deref() == Some(b"h2") {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            body,
            alpn,
            peer_cert,
        })
    }
}

/// An AdmissionReview from `tests/fixtures/admission/`.
pub fn review_fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("tests/fixtures/admission/{name}"))).unwrap()
}

/// The JSON patch operations of an AdmissionReview response, whose `patch` must be the base64
/// string the API defines for bytes.
pub fn patch_ops(response: &serde_json::Value) -> Vec<serde_json::Value> {
    use base64::Engine as _;
    let text = response["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("patch is not a base64 string: {}", response["patch"]));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("the patch is base64");
    serde_json::from_slice(&bytes).unwrap()
}
