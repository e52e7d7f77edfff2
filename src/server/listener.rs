//! The TLS listener: each connection in its own task, so a slow or stalled client never blocks
//! accept or other clients; HTTP/1.1 or HTTP/2 by ALPN; graceful shutdown that lets in-flight
//! requests finish.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::connections::{Connections, Heard, Refused, Slot, Tracked};
use super::idle::IdleTimeout;

/// Per-connection limits (flags of `dbbind serve`).
#[derive(Clone, Copy, Debug, clap::Args)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionLimits {
    /// Time a client has to complete the TLS handshake.
    #[arg(long, env = "DBBIND_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Time an HTTP/1.1 client has to send a request's headers, and any client its first
    /// bytes after the TLS handshake; an HTTP/2 connection must answer a keep-alive ping
    /// within it.
    #[arg(long, env = "DBBIND_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// A connection from which nothing has been read for this long is closed.
    #[arg(long, env = "DBBIND_IDLE_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Admission connections open at once. One accepted beyond this takes the place of the
    /// connection that has shown least sign of being a client (a silent handshake, then one
    /// that never sent a request, then a handshake under way, then the one waiting longest
    /// since its last response; see `server::connections`); it is refused only when every one
    /// has a request in flight.
    #[arg(long, env = "DBBIND_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        crate::flags::defaults()
    }
}

/// Accepts TLS connections until `stop` turns true, then asks the open connections to close
/// gracefully and waits up to `deadline` for them to finish their in-flight requests. Returns
/// whether they all did.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    deadline: Duration,
) -> bool {
    // Memory stays bounded however many clients connect: each open connection has a place in
    // the table, and a new one beyond the cap takes the place of one that does nothing.
    let connections = Connections::new(limits.max_connections);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let slot = match connections.admit() {
                    Ok(admitted) => {
                        if let Some(closed) = admitted.closed {
                            tracing::debug!(%peer, max = limits.max_connections, closed, "closed a connection to make room");
                        }
                        admitted.slot
                    }
                    Err(Refused::AllBusy) => {
                        tracing::debug!(%peer, max = limits.max_connections, "connection refused: every open one is busy");
                        continue;
                    }
                    Err(Refused::ShuttingDown) => continue,
                };
                tokio::spawn(serve_connection(stream, peer, slot, acceptor.clone(), app.clone(), limits));
            }
            () = stopped(&mut stop) => break,
        }
    }
    // No new connections from here; open ones finish what they are doing, then close.
    drop(listener);
    connections.close_all();
    tokio::time::timeout(deadline, connections.closed())
        .await
        .is_ok()
}

/// One connection: the TLS handshake within its timeout, then HTTP/1.1 or HTTP/2 until the
/// client closes, a timeout closes it, or it is asked to close (to make room, or shutdown).
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    slot: Slot,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
) {
    let slot = Arc::new(slot);
    // Without this, a response written as several frames waits on the peer's delayed ACK
    // (Nagle): about 40 ms per admission call.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let stream = Heard::new(stream, Arc::clone(&slot));
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = slot.closing() => return,
    };
    slot.handshake_done();
    // The protocol comes from ALPN, not from sniffing the first bytes: a sniff would wait on a
    // silent client outside the header-read timeout.
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    // HTTP/2 has no timeout of its own for a client that sends nothing.
    let io = TokioIo::new(IdleTimeout::new(
        tls,
        limits.header_read_timeout,
        limits.idle_timeout,
    ));
    let service = Tracked::new(TowerToHyperService::new(app), Arc::clone(&slot));
    let result = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(limits.header_read_timeout))
            .keep_alive_timeout(limits.header_read_timeout);
        until_closed(builder.serve_connection(io, service), &slot).await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        until_closed(builder.serve_connection(io, service), &slot).await
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Drives `connection` to its end; when the slot is asked to close, shuts it down gracefully
/// (HTTP/2 GOAWAY; HTTP/1.1 once the current exchange is done) and lets it finish.
async fn until_closed<C: GracefulConnection>(connection: C, slot: &Slot) -> Result<(), C::Error> {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = slot.closing() => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

/// Resolves once `stop` turns true (or its sender is gone). The watch guard is dropped inside,
/// so the accept loop's future stays `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
