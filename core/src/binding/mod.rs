//! Bindings: what a pod asks for (its `dbbind.io/` annotations) and what that resolves to
//! against a Secret and a profile.

mod annotations;
mod resolve;
mod tls;

use std::collections::BTreeMap;
use std::fmt;

pub use annotations::{AnnotationError, parse_annotations};
pub use resolve::{ResolvedBinding, ValueSource, resolve};
pub use tls::TlsSource;

pub use crate::env_set::EnvSets;
use crate::field::Field;
use crate::keys::{self, DEFAULT_BINDING_NAME};

/// What a pod's annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodRequest {
    /// No `dbbind.io/` annotation that asks for anything: leave the pod alone.
    NotRequested,
    /// `dbbind.io/inject: "false"`.
    OptedOut,
    Bind(BindingRequests),
}

/// Every binding of one pod, and the pod-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRequests {
    /// The default binding first, then named bindings by alias.
    pub bindings: Vec<BindingRequest>,
    /// `dbbind.io/containers`; `None` means every container and init container.
    pub containers: Option<Vec<String>>,
    pub on_conflict: OnConflict,
    /// `dbbind.io/restart-on-rotation: "true"` (docs/design.md §10).
    pub restart_on_rotation: bool,
}

/// One binding: a Secret, how to read it, and what to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRequest {
    /// `None` for the default binding (bare annotation keys).
    pub alias: Option<String>,
    pub secret: String,
    /// `None` for `auto`.
    pub profile: Option<String>,
    /// Fields given literally by annotation (`dbbind.io/host`, …).
    pub literals: BTreeMap<Field, String>,
    /// `dbbind.io/keys`: fields read from a differently named key.
    pub keys: BTreeMap<Field, String>,
    pub env: EnvSets,
    pub files: bool,
    /// `dbbind.io/endpoint`: which of the operator's Services to reach.
    pub endpoint: Option<EndpointRole>,
    /// `dbbind.io/pooler`: the operator's pooler resource, for `endpoint: pooler` where the
    /// profile finds the pooler by that name (CloudNativePG's `Pooler`).
    pub pooler: Option<String>,
    /// `dbbind.io/ca`: where the CA certificate is.
    pub ca: Option<TlsRef>,
    /// `dbbind.io/client-cert`: a `kubernetes.io/tls` Secret with the client's certificate.
    pub client_cert: Option<String>,
}

/// An object a TLS file is read from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsObject {
    Secret(String),
    ConfigMap(String),
}

impl TlsObject {
    /// `Secret "name"` or `ConfigMap "name"`, for messages.
    pub fn describe(&self) -> String {
        match self {
            TlsObject::Secret(name) => format!("Secret {name:?}"),
            TlsObject::ConfigMap(name) => format!("ConfigMap {name:?}"),
        }
    }
}

/// One key of a Secret or ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsRef {
    pub object: TlsObject,
    pub key: String,
}

impl BindingRequest {
    /// `db` for the default binding, the alias otherwise.
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(DEFAULT_BINDING_NAME)
    }

    /// The annotation key for `base` in this binding: `dbbind.io/host` or `dbbind.io/host.<alias>`.
    pub fn annotation(&self, base: &str) -> String {
        keys::binding_key(base, self.alias.as_deref())
    }
}

/// One of an operator's Services, by role (`dbbind.io/endpoint`, docs/design.md §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointRole {
    /// The primary: reads and writes.
    ReadWrite,
    /// Replicas only.
    ReadOnly,
    /// Any instance, for reads.
    Read,
    /// The operator's connection pooler (PgBouncer) in front of the primary.
    Pooler,
}

impl EndpointRole {
    pub const ALL: [EndpointRole; 4] = [
        EndpointRole::ReadWrite,
        EndpointRole::ReadOnly,
        EndpointRole::Read,
        EndpointRole::Pooler,
    ];

    /// The annotation value.
    pub fn name(self) -> &'static str {
        match self {
            EndpointRole::ReadWrite => "rw",
            EndpointRole::ReadOnly => "ro",
            EndpointRole::Read => "r",
            EndpointRole::Pooler => "pooler",
        }
    }

    pub fn from_name(name: &str) -> Option<EndpointRole> {
        EndpointRole::ALL
            .into_iter()
            .find(|role| role.name() == name)
    }
}

/// What to do when a container already defines a variable dbbind would inject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// The container's own definition wins; a warning says so.
    #[default]
    Keep,
    /// The pod is denied.
    Deny,
}

/// One binding as applied, for the `dbbind.io/bindings` annotation, logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedBinding {
    pub name: String,
    pub secret: String,
    pub profile: String,
}

impl From<&ResolvedBinding> for AppliedBinding {
    fn from(binding: &ResolvedBinding) -> AppliedBinding {
        AppliedBinding {
            name: binding.request.name().to_owned(),
            secret: binding.request.secret.clone(),
            profile: binding.profile.clone(),
        }
    }
}

/// `<binding>=<secret>/<profile>`: one entry of the `dbbind.io/bindings` annotation, and of the
/// admission log line.
impl fmt::Display for AppliedBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.name, self.secret, self.profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aliased_binding_names_its_annotations_with_the_suffix() {
        let request = BindingRequest {
            alias: Some("read-replica".to_owned()),
            secret: "s".to_owned(),
            profile: None,
            literals: BTreeMap::new(),
            keys: BTreeMap::new(),
            env: EnvSets::postgres_only(),
            files: false,
            endpoint: None,
            pooler: None,
            ca: None,
            client_cert: None,
        };
        assert_eq!(request.annotation("host"), "dbbind.io/host.read-replica");
    }
}
