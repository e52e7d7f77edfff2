//! The annotation and label keys dbbind reads and writes (docs/design.md §2, §5, §10), declared
//! once. A leaf: the parser, the patch, rotation, the server and the command line all name keys
//! through this module, as kube-core's `labels.rs` does for Kubernetes' own.

/// What every dbbind annotation starts with.
pub const PREFIX: &str = "dbbind.io/";

/// The default binding's name where one is needed (its file directory, its volume, messages);
/// an alias may not take it.
pub const DEFAULT_BINDING_NAME: &str = "db";

/// Keys a pod's owner writes for one binding; each takes an optional `.<alias>` suffix. The
/// field names among them (`host` … `sslmode`) are the literal fields (`Field::LITERAL_ANNOTATIONS`).
pub const BINDING_KEYS: [&str; 14] = [
    "secret",
    "profile",
    "host",
    "port",
    "database",
    "user",
    "sslmode",
    "keys",
    "env",
    "files",
    "endpoint",
    "pooler",
    "ca",
    "client-cert",
];

/// Keys that apply to the whole pod, by their part after [`PREFIX`].
pub const POD_KEYS: [&str; 4] = [
    pod_key::CONTAINERS,
    pod_key::ON_CONFLICT,
    pod_key::INJECT,
    pod_key::RESTART_ON_ROTATION,
];

/// The pod-wide keys' names, after [`PREFIX`].
pub mod pod_key {
    pub const CONTAINERS: &str = "containers";
    pub const ON_CONFLICT: &str = "on-conflict";
    pub const INJECT: &str = "inject";
    pub const RESTART_ON_ROTATION: &str = "restart-on-rotation";
}

/// `dbbind.io/inject`: `"false"` opts a pod out, whatever else it says.
pub const INJECT: &str = "dbbind.io/inject";
/// `dbbind.io/restart-on-rotation`: roll the pod's workload when a Secret it reads rotates.
pub const RESTART_ON_ROTATION: &str = "dbbind.io/restart-on-rotation";

/// Written by dbbind on a pod it patched, with the value [`STATUS_INJECTED`].
pub const STATUS: &str = "dbbind.io/status";
pub const STATUS_INJECTED: &str = "injected";
/// Written by dbbind: `<binding>=<secret>/<profile>,…`.
pub const BINDINGS: &str = "dbbind.io/bindings";
/// Prefix of the annotations dbbind writes for literal file entries:
/// `dbbind.io/value.<binding>.<entry>`, read back by the downward API.
pub const VALUE_PREFIX: &str = "dbbind.io/value.";
/// Written by dbbind on a workload's template when a Secret its pods read rotated; its pods
/// carry it too.
pub const RESTARTED_AT: &str = "dbbind.io/restartedAt";

/// The label selector of opted-in namespaces the chart installs with.
pub const NAMESPACE_SELECTOR: &str = "dbbind.io/inject=enabled";

/// The annotation key for `base` in a binding: `dbbind.io/host`, or `dbbind.io/host.<alias>`.
pub fn binding_key(base: &str, alias: Option<&str>) -> String {
    match alias {
        Some(alias) => format!("{PREFIX}{base}.{alias}"),
        None => format!("{PREFIX}{base}"),
    }
}

/// Annotations dbbind writes itself: reading them back is never an input error.
pub fn is_written_by_dbbind(key: &str) -> bool {
    key == STATUS || key == BINDINGS || key == RESTARTED_AT || key.starts_with(VALUE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_keys_are_the_prefix_and_their_names() {
        assert_eq!(INJECT, format!("{PREFIX}{}", pod_key::INJECT));
        assert_eq!(
            RESTART_ON_ROTATION,
            format!("{PREFIX}{}", pod_key::RESTART_ON_ROTATION)
        );
        for key in [STATUS, BINDINGS, VALUE_PREFIX, RESTARTED_AT] {
            assert!(key.starts_with(PREFIX), "{key}");
        }
    }

    #[test]
    fn no_key_is_both_read_and_written() {
        for base in BINDING_KEYS.iter().chain(&POD_KEYS) {
            assert!(!is_written_by_dbbind(&binding_key(base, None)), "{base}");
            assert!(
                !is_written_by_dbbind(&binding_key(base, Some("a"))),
                "{base}"
            );
        }
        assert!(is_written_by_dbbind("dbbind.io/value.db.type"));
    }
}
