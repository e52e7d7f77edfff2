//! `dbbind serve`'s plumbing: the router's every answer (in-process), real TLS on loopback
//! (HTTP/1.1 and HTTP/2, rotation, stalled clients), graceful shutdown, and the Secret watch
//! cache against a fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbind_test_support as support;

mod cache;
mod events;
mod harness;
mod hostile;
mod review;
mod rotation;
mod router;
mod self_managed;
mod shutdown;
mod tls;
mod validate;
