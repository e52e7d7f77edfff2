//! dbbind: a Kubernetes mutating admission webhook that binds pods to their PostgreSQL database.
//!
//! The decision is the pure [`dbbind_core`] crate. This crate is the plumbing around it: the
//! admission server ([`server`]), the Secret watch cache ([`cache`]), certificates ([`tls`]), the
//! profiles in effect ([`profiles`]), metrics, logs, and the command line ([`cli`]).
//!
//! Modules, leaves first: [`flags`] (flag groups' defaults), [`logging`], [`metrics`],
//! [`reload`] (one timer loop for everything re-checked), [`tasks`] (the background tasks of
//! `serve`, owned), [`events`] (Events for controller-made pods), [`rotation`] (restart on
//! credential rotation), [`profiles`], [`cache`], [`tls`], [`server`], [`cli`]. Each imports
//! only modules before it in this list. Each subsystem owns its `dbbind serve` flags as a clap
//! group (in its `setup` module, or beside the type they configure); `cli::serve` composes
//! them.

pub mod cache;
pub mod cli;
pub mod events;
pub mod flags;
pub mod logging;
pub mod metrics;
pub mod profiles;
pub mod reload;
pub mod rotation;
pub mod server;
pub mod tasks;
pub mod tls;
