//! `dbbind serve` as a process, with certificates from `dbbind certs`, registered with the API
//! server through the MutatingWebhookConfiguration that `webhook-config/` ships, its
//! clientConfig switched to a URL (an API server cannot route a Service to a local process).

use anyhow::anyhow;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::cluster::ControlPlane;
use crate::process::Daemon;
use crate::tools::{self, free_port, repo_root};
use crate::{Error, Result};

pub struct Dbbind {
    pub listen_port: u16,
    pub admin_port: u16,
    pub ca_pem: String,
    /// From start to the first 200 on /readyz.
    pub ready_after: Duration,
    process: Daemon,
}

/// `webhook-config/<file>` with every webhook's clientConfig pointed at
/// `https://127.0.0.1:<port><path>`, trusting `ca_pem` (none: the caBundle is left for
/// self-managed certificates to fill in).
pub fn shipped_configuration(
    file: &str,
    port: u16,
    path: &str,
    ca_pem: Option<&str>,
) -> Result<String> {
    let file = repo_root().join("webhook-config").join(file);
    let text = std::fs::read_to_string(&file)?;
    let mut config: serde_json::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    for webhook in config["webhooks"].as_array_mut().into_iter().flatten() {
        let mut client_config =
            serde_json::json!({"url": format!("https://127.0.0.1:{port}{path}")});
        if let Some(ca_pem) = ca_pem {
            client_config["caBundle"] = STANDARD.encode(ca_pem).into();
        }
        webhook["clientConfig"] = client_config;
    }
    serde_json::to_string(&config).map_err(|e| anyhow!("{e}"))
}

/// A plain-HTTP GET on a dbbind admin port (`/metrics`, `/readyz`): (status, body).
pub fn admin_get(host: &str, port: u16, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("bad response from {host}:{port}: {response}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A process's resident memory (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for process {pid}"))
}

/// The flags of the suite's dbbind replicas.
const SUITE_FLAGS: &[&str] = &[
    "--namespace-selector=dbbind.io/inject=enabled",
    "--restart-on-rotation",
];

impl Dbbind {
    /// Writes certificates for 127.0.0.1, starts `dbbind serve` as the chart runs it with
    /// `rotation.enabled` (Secrets cached in opted-in namespaces only, restart on rotation
    /// on), waits for /readyz.
    pub fn start(plane: &ControlPlane) -> Result<Dbbind> {
        Dbbind::start_binary(plane, &tools::dbbind()?, SUITE_FLAGS)
    }

    /// Another replica beside the one [`Dbbind::start`] started: the same flags and
    /// certificate files, its own ports, not registered as the webhook (the API server calls
    /// the first); it watches, and takes part in the rotation Lease.
    pub fn start_replica(plane: &ControlPlane, name: &str) -> Result<Dbbind> {
        Dbbind::start_with_certificate_files(plane, &tools::dbbind()?, name, SUITE_FLAGS)
    }

    /// `binary serve` with these extra flags; [`Dbbind::ready_after`] says how long /readyz
    /// took to answer 200.
    pub fn start_binary(
        plane: &ControlPlane,
        binary: &std::path::Path,
        flags: &[&str],
    ) -> Result<Dbbind> {
        let certs = plane.dir.path().join("dbbind-certs");
        let made = Command::new(binary)
            .args([
                "certs",
                "--service-name",
                "dbbind",
                "--namespace",
                "dbbind",
                "--extra-ip-addresses",
                "127.0.0.1",
                "--out-dir",
            ])
            .arg(&certs)
            .output()?;
        if !made.status.success() {
            return Err(anyhow!(
                "dbbind certs failed: {}",
                String::from_utf8_lossy(&made.stderr)
            ));
        }
        Dbbind::start_with_certificate_files(plane, binary, "dbbind", flags)
    }

    /// `binary serve` named `name` with these flags and the certificate files
    /// [`Dbbind::start_binary`] wrote; waits for /readyz.
    fn start_with_certificate_files(
        plane: &ControlPlane,
        binary: &std::path::Path,
        name: &str,
        flags: &[&str],
    ) -> Result<Dbbind> {
        let certs = plane.dir.path().join("dbbind-certs");
        let mut flags: Vec<String> = flags.iter().map(|flag| flag.to_string()).collect();
        for (flag, file) in [
            ("--tls-cert-file", "tls.crt"),
            ("--tls-key-file", "tls.key"),
        ] {
            flags.push(format!("{flag}={}", certs.join(file).display()));
        }
        let mut dbbind = Dbbind::spawn(plane, binary, name, &flags)?;
        dbbind.ca_pem = std::fs::read_to_string(certs.join("ca.crt"))?;
        dbbind.wait_ready()?;
        Ok(dbbind)
    }

    /// Starts `binary serve` with these flags on free ports, logging to `<name>.log`, without
    /// waiting for it (several replicas can start at once); [`Dbbind::ca_pem`] is left empty for
    /// the caller to fill in.
    pub fn spawn(
        plane: &ControlPlane,
        binary: &std::path::Path,
        name: &str,
        flags: &[String],
    ) -> Result<Dbbind> {
        let listen_port = free_port()?;
        let admin_port = free_port()?;
        let mut serve = Command::new(binary);
        serve
            .args(["serve", "--log-format", "json", "--shutdown-drain", "1s"])
            .args(flags)
            .arg(format!("--listen=127.0.0.1:{listen_port}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
            .env("KUBECONFIG", &plane.kubeconfig)
            .env_remove("DBBIND_PROFILES_FILE");
        Ok(Dbbind {
            listen_port,
            admin_port,
            ca_pem: String::new(),
            ready_after: Duration::ZERO,
            process: Daemon::start(name, serve, plane.dir.path())?,
        })
    }

    /// Waits up to 30 s for /readyz to answer 200; sets [`Dbbind::ready_after`].
    pub fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            self.process.check_running()?;
            if self
                .admin_get("/readyz")
                .is_ok_and(|(status, _)| status == 200)
            {
                self.ready_after = started.elapsed();
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(anyhow!("dbbind not ready:\n{}", self.process.log_tail(20)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let pid = self
            .process
            .pid()
            .ok_or_else(|| anyhow!("dbbind is not running"))?;
        rss_kib(pid)
    }

    /// The shipped MutatingWebhookConfiguration (the Pod webhook), pointed at this process.
    pub fn webhook_configuration(&self) -> Result<String> {
        self.shipped_configuration("mutatingwebhookconfiguration.yaml", "/mutate")
    }

    /// The shipped ValidatingWebhookConfiguration (the workload check), pointed at this process.
    pub fn workloads_configuration(&self) -> Result<String> {
        self.shipped_configuration("validatingwebhookconfiguration.yaml", "/validate")
    }

    fn shipped_configuration(&self, file: &str, path: &str) -> Result<String> {
        shipped_configuration(file, self.listen_port, path, Some(&self.ca_pem))
    }

    /// Registers both shipped configurations, switched to this process's URL.
    pub fn register(&self, plane: &ControlPlane) -> Result<()> {
        for config in [
            self.webhook_configuration()?,
            self.workloads_configuration()?,
        ] {
            let applied = plane.kubectl_outcome(&["apply", "-f", "-"], Some(&config))?;
            if !applied.success {
                return Err(anyhow!(
                    "registering the webhook failed: {}",
                    applied.stderr
                ));
            }
        }
        Ok(())
    }

    /// A plain-HTTP GET on the admin port: (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        admin_get("127.0.0.1", self.admin_port, path)
    }

    /// The sum of the Pod webhook's `dbbind_admission_requests_total` over outcomes.
    pub fn requests_total(&self) -> Result<u64> {
        let (_, metrics) = self.admin_get("/metrics")?;
        Ok(metrics
            .lines()
            .filter(|line| line.starts_with("dbbind_admission_requests_total{webhook=\"mutate\","))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// The value of an unlabelled counter or gauge, e.g. `dbbind_rollouts_total`.
    pub fn metric(&self, name: &str) -> Result<u64> {
        let (_, metrics) = self.admin_get("/metrics")?;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| anyhow!("no metric {name}"))
    }

    /// `dbbind_secret_cache_objects`: the Secrets in the watch cache.
    pub fn cached_secrets(&self) -> Result<u64> {
        let (_, metrics) = self.admin_get("/metrics")?;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("dbbind_secret_cache_objects "))
            .and_then(|count| count.trim().parse().ok())
            .ok_or_else(|| anyhow!("no dbbind_secret_cache_objects in /metrics"))
    }

    pub fn log(&self) -> String {
        self.process.log_text()
    }

    pub fn check_running(&mut self) -> Result<()> {
        self.process.check_running()
    }

    /// SIGTERM, and the exit status once the drain and in-flight requests are done.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.process.signal_and_wait("TERM")
    }
}

/// A TLS connection to `127.0.0.1:port` that verifies the server's certificate against the CAs
/// of `roots_pem` only, for the IP address 127.0.0.1 (no ALPN: HTTP/1.1).
pub async fn connect_verified(
    port: u16,
    roots_pem: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    dbbind::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        let cert = cert.map_err(|e| anyhow!("CA PEM: {e}"))?;
        roots.add(cert).map_err(|e| anyhow!("CA: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(dbbind::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("{e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    Ok(connector.connect(name, stream).await?)
}

/// Whether the server on `port` presents a certificate that verifies against `roots_pem`.
pub async fn serves_certificate_of(port: u16, roots_pem: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(5), connect_verified(port, roots_pem))
        .await
        .is_ok_and(|connected| connected.is_ok())
}

/// POSTs an AdmissionReview to `https://127.0.0.1:<port>/mutate` as the API server would
/// (HTTP/1.1, the certificate verified against `roots_pem`); returns the status and the body.
pub async fn post_review(
    port: u16,
    roots_pem: &str,
    review: &serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    use http_body_util::{BodyExt, Full};
    let exchange = async {
        let tls = connect_verified(port, roots_pem).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| anyhow!("HTTP handshake: {e}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::post("/mutate")
            .header("host", format!("127.0.0.1:{port}"))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(serde_json::to_vec(review)?)))
            .map_err(|e| anyhow!("{e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| anyhow!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow!("response body: {e}"))?
            .to_bytes();
        Ok::<_, Error>((status, serde_json::from_slice(&body)?))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("no answer from port {port} within 10 s"))?
}
