//! dbbind's core: what to do with a pod, decided without I/O.
//!
//! [`admission::mutate_pod`] turns a pod, the Secrets of its namespace (seen through
//! [`secret::SecretView`], without values) and the [`profile::ProfileSet`] into a
//! [`decision::Decision`]: a JSON patch with warnings, or a denial. [`admission::review`] does the
//! same for an AdmissionReview request, and [`manifest::render`] for the pod templates of
//! manifests (`dbbind render`). Nothing here reads a file, opens a socket or awaits: the server,
//! the Secret cache, TLS and the command line are plumbing around it, in the `dbbind` crate.
//!
//! Modules, leaves first: [`keys`] (the annotation and label keys), [`names`] (Kubernetes name
//! rules), [`message`] (what the user reads), [`field`] (the connection fields), [`env_set`]
//! (the variable name sets and every variable name), [`kind`] (the kinds that carry a pod),
//! [`secret`], [`profile`], [`binding`], [`rotation`] (restart on credential rotation),
//! [`patch`], [`decision`], [`rules`] (every rule a pod goes through, in order),
//! [`admission`], [`workload`], [`manifest`]. Each imports only modules before it in this
//! list.

pub mod admission;
pub mod binding;
pub mod decision;
pub mod env_set;
pub mod field;
pub mod keys;
pub mod kind;
pub mod manifest;
pub mod message;
pub(crate) mod names;
pub(crate) mod patch;
pub mod profile;
pub mod rotation;
pub mod rules;
pub mod secret;
pub mod workload;
