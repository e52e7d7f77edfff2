//! `dbbind serve`: the admission listener (TLS) and the admin listener (plain HTTP), and the
//! shutdown sequence that drains them.

pub mod admin;
pub mod body;
pub mod connections;
pub mod error;
pub mod idle;
pub mod listener;
pub mod open_files;
pub mod response;
pub mod signals;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use admin::Readiness;
pub use listener::ConnectionLimits;
pub use webhook::{Limits, WebhookState};

use crate::metrics::Metrics;
use crate::tls::{CertStore, TlsError, server_config};

/// Where to listen, the connections' limits and how to shut down (flags of `dbbind serve`).
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Server")]
pub struct ServeOptions {
    /// Admission listener (TLS only; HTTP/1.1 and HTTP/2).
    #[arg(long, env = "DBBIND_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Admin listener (plain HTTP): /livez, /readyz, /metrics.
    #[arg(long, env = "DBBIND_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub connections: ConnectionLimits,
    /// After SIGTERM, how long to keep serving while /readyz reports false, so the endpoints
    /// controller removes this replica before it stops listening.
    #[arg(long, env = "DBBIND_SHUTDOWN_DRAIN", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_drain: Duration,
    /// After the drain, how long in-flight requests may take to finish.
    #[arg(long, env = "DBBIND_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// What the listeners serve.
pub struct Parts {
    pub webhook: WebhookState,
    pub certs: Arc<CertStore>,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Both listeners, bound.
pub struct Server {
    webhook: TcpListener,
    admin: TcpListener,
    options: ServeOptions,
}

impl Server {
    pub async fn bind(options: ServeOptions) -> Result<Server, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        Ok(Server {
            webhook: bind(options.listen).await?,
            admin: bind(options.admin_listen).await?,
            options,
        })
    }

    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook.local_addr().ok()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then: readiness false, accept for the drain window,
    /// stop accepting, let in-flight requests finish within the shutdown timeout.
    pub async fn run(
        self,
        parts: Parts,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let options = self.options;
        let acceptor = TlsAcceptor::from(Arc::new(server_config(Arc::clone(&parts.certs))?));
        let (stop, stopped) = watch::channel(false);

        let webhook = tokio::spawn(listener::serve_tls(
            self.webhook,
            acceptor,
            webhook::router(parts.webhook),
            options.connections,
            stopped.clone(),
            options.shutdown_timeout,
        ));
        let mut admin_stopped = stopped;
        let admin_app = admin::router(Arc::clone(&parts.readiness), Arc::clone(&parts.metrics));
        let admin = tokio::spawn(async move {
            let serving = axum::serve(self.admin, admin_app).with_graceful_shutdown(async move {
                let _ = admin_stopped.wait_for(|stopped| *stopped).await;
            });
            if let Err(error) = serving.await {
                tracing::warn!(%error, "admin listener failed");
            }
        });
        parts.readiness.set_listener_bound();
        tracing::info!(listen = %options.listen, admin_listen = %options.admin_listen, "serving");

        shutdown.await;
        parts.readiness.set_shutting_down();
        tracing::info!(drain = ?options.shutdown_drain, "shutting down: readiness is false, draining");
        tokio::time::sleep(options.shutdown_drain).await;
        let _ = stop.send(true);
        match webhook.await {
            Ok(true) => tracing::info!("in-flight requests finished"),
            Ok(false) => {
                tracing::warn!(timeout = ?options.shutdown_timeout, "in-flight requests did not finish in time")
            }
            Err(error) => tracing::warn!(%error, "admission listener task failed"),
        }
        let _ = admin.await;
        Ok(())
    }
}
