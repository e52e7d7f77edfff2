//! Bindings: what a pod asks for (its `dbbind.io/` annotations) and what that resolves to
//! against a Secret and a profile.

mod annotations;
mod resolve;

use std::collections::BTreeMap;

pub use annotations::{
    ANNOTATION_PREFIX, BINDINGS_ANNOTATION, STATUS_ANNOTATION, STATUS_INJECTED, VALUE_ANNOTATION,
    parse_annotations,
};
pub use resolve::{ResolvedBinding, ValueSource, resolve};

use crate::field::Field;

/// The name of the default binding where a name is needed: its file directory and volume.
pub const DEFAULT_BINDING_NAME: &str = "db";

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
}

impl BindingRequest {
    /// `db` for the default binding, the alias otherwise.
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(DEFAULT_BINDING_NAME)
    }

    /// The annotation key for `base` in this binding: `dbbind.io/host` or `dbbind.io/host.<alias>`.
    pub fn annotation(&self, base: &str) -> String {
        match &self.alias {
            Some(alias) => format!("{ANNOTATION_PREFIX}{base}.{alias}"),
            None => format!("{ANNOTATION_PREFIX}{base}"),
        }
    }

    /// Prefix of this binding's variable names: empty, or `REPORTING_` for alias `reporting`.
    pub fn env_prefix(&self) -> String {
        match &self.alias {
            Some(alias) => format!("{}_", alias.to_ascii_uppercase().replace(['-', '.'], "_")),
            None => String::new(),
        }
    }
}

/// Which variable name sets to inject (`dbbind.io/env`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvSets {
    pub postgres: bool,
    pub libpq: bool,
    pub database_url: bool,
}

impl Default for EnvSets {
    fn default() -> EnvSets {
        EnvSets {
            postgres: true,
            libpq: false,
            database_url: false,
        }
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

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most `max` characters.
pub fn is_dns_label(text: &str, max: usize) -> bool {
    let bytes = text.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes.iter().all(|b| edge_ok(b) || *b == b'-')
}

/// A DNS subdomain (RFC 1123), the rule for Secret and most object names.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(|label| is_dns_label(label, 63))
}

/// A valid Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters.
pub fn is_secret_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text != "."
        && text != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("reporting", 30));
        assert!(is_dns_label("a-1", 30));
        assert!(!is_dns_label("-a", 30));
        assert!(!is_dns_label("a-", 30));
        assert!(!is_dns_label("A", 30));
        assert!(!is_dns_label("a_b", 30));
        assert!(!is_dns_label("", 30));
        assert!(!is_dns_label(&"a".repeat(31), 30));
        assert!(is_dns_label(&"a".repeat(30), 30));
    }

    #[test]
    fn dns_subdomains_and_secret_keys() {
        assert!(is_dns_subdomain(
            "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do"
        ));
        assert!(!is_dns_subdomain("Foo"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_secret_key("POSTGRES_PASSWORD"));
        assert!(is_secret_key("ca.crt"));
        assert!(!is_secret_key("a/b"));
        assert!(!is_secret_key(".."));
    }

    #[test]
    fn env_prefix_upper_cases_the_alias() {
        let request = BindingRequest {
            alias: Some("read-replica".to_owned()),
            secret: "s".to_owned(),
            profile: None,
            literals: BTreeMap::new(),
            keys: BTreeMap::new(),
            env: EnvSets::default(),
            files: false,
        };
        assert_eq!(request.env_prefix(), "READ_REPLICA_");
        assert_eq!(request.annotation("host"), "dbbind.io/host.read-replica");
    }
}
