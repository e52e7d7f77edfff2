//! dbbind: a Kubernetes mutating admission webhook that binds pods to their PostgreSQL database.
//!
//! The core is pure: [`admission::mutate_pod`] turns a pod, the Secrets of its namespace (seen
//! through [`secret::SecretView`], without values) and the [`profile::ProfileSet`] into a
//! [`decision::Decision`]. The CLI's `render` runs it offline; the server puts it behind the API
//! server's webhook call.

pub mod admission;
pub mod binding;
pub mod cache;
pub mod cli;
pub mod decision;
pub mod field;
pub mod logging;
pub mod metrics;
pub mod patch;
pub mod profile;
pub mod render;
pub mod secret;
pub mod server;
pub mod tls;
