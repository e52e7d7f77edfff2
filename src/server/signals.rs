//! SIGTERM and SIGINT: the first starts a graceful shutdown, a second means "now".
//!
//! Nothing here exits the process: the second signal is a value ([`Shutdown::forced`]
//! resolving), and `serve` returns it as an error, so every exit goes through one place.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Counts shutdown signals as they arrive.
pub struct Shutdown {
    received: watch::Receiver<u8>,
    listener: JoinHandle<()>,
}

impl Shutdown {
    /// Installs the handlers for SIGTERM and SIGINT.
    pub fn install() -> std::io::Result<Shutdown> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (count, received) = watch::channel(0u8);
        let listener = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
                count.send_modify(|count| *count = count.saturating_add(1));
            }
        });
        Ok(Shutdown { received, listener })
    }

    /// Resolves on the first signal: time to drain.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut received = self.received.clone();
        async move {
            let _ = received.wait_for(|count| *count >= 1).await;
        }
    }

    /// Resolves on the second signal: an operator pressing Ctrl-C twice means it.
    pub async fn forced(&self) {
        let mut received = self.received.clone();
        let _ = received.wait_for(|count| *count >= 2).await;
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.listener.abort();
    }
}
