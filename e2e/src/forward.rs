//! TCP forwarders on loopback: the database endpoints pods reach. Pods run with `hostNetwork`
//! and `hostAliases` mapping each scenario's database host name to an address of
//! 127.0.0.0/8; a forwarder listens there on the port the Secret names (5432, CockroachDB's
//! 26257) and passes bytes, TLS included, to the PostgreSQL server of the suite on its free
//! port. So the Secrets stay as written in `examples/`, and nothing leaves loopback.
//!
//! With several targets a forwarder stands for a Service in front of dbbind's replicas: each
//! connection goes to the next target in turn.

use anyhow::anyhow;
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Result;

pub struct Forwarder {
    pub listen: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// Listens on `listen` and forwards every connection to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Result<Forwarder> {
        Forwarder::round_robin(listen, vec![target])
    }

    /// Listens on `listen` and forwards each connection to the next of `targets`, in turn.
    pub fn round_robin(listen: SocketAddr, targets: Vec<SocketAddr>) -> Result<Forwarder> {
        if targets.is_empty() {
            return Err(anyhow!("a forwarder needs a target"));
        }
        let listener =
            TcpListener::bind(listen).map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut next = targets.iter().cycle();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let target = next.next().copied().unwrap_or(targets[0]);
                        if let Ok(server) = TcpStream::connect(target) {
                            pipe(client, server);
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Forwarder { listen, stop })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let mut up = (client_read, server);
    let mut down = (server_read, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up.0, &mut up.1);
        let _ = up.1.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut down.0, &mut down.1);
        let _ = down.1.shutdown(Shutdown::Write);
    });
}
