//! Restart on credential rotation (docs/design.md §10): the plumbing around
//! [`dbbind_core::rotation`], which decides.
//!
//! - [`changed`]: the Secrets whose data changed, as the cache's watches saw them (the cache
//!   keeps a digest of each Secret's data, never the data);
//! - [`leader`]: one replica acts on rotations;
//! - [`controller`]: the leader's task — the pods that read a changed Secret through their
//!   environment, their workloads rolled once, Events, metrics.

pub mod changed;
pub mod controller;
pub mod leader;
pub mod setup;
