//! What every fuzz target shares: the Secrets the decisions look up, the built-in profiles, and
//! the invariants a decision must keep whatever the input.

use std::sync::OnceLock;

use dbbind_core::decision::Decision;
use dbbind_core::profile::ProfileSet;
use dbbind_core::secret::{SecretStore, SecretView};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

/// The project's real-world Secret shapes (tests/fixtures/secrets), compiled in so the
/// targets need no files at run time.
const SECRETS: &[&str] = &[
    include_str!("../../tests/fixtures/secrets/a8s-binding.yaml"),
    include_str!("../../tests/fixtures/secrets/aiven-postgresql.yaml"),
    include_str!("../../tests/fixtures/secrets/bitnami-custom-user.yaml"),
    include_str!("../../tests/fixtures/secrets/bitnami-ha-postgresql.yaml"),
    include_str!("../../tests/fixtures/secrets/bitnami-legacy-keys.yaml"),
    include_str!("../../tests/fixtures/secrets/bitnami-svcbind.yaml"),
    include_str!("../../tests/fixtures/secrets/cnpg-app.yaml"),
    include_str!("../../tests/fixtures/secrets/cockroachdb-broker.yaml"),
    include_str!("../../tests/fixtures/secrets/edb-app.yaml"),
    include_str!("../../tests/fixtures/secrets/crossplane-rds-classic.yaml"),
    include_str!("../../tests/fixtures/secrets/crossplane-upjet-instance.yaml"),
    include_str!("../../tests/fixtures/secrets/crunchy-pguser.yaml"),
    include_str!("../../tests/fixtures/secrets/eso-database-url-only.yaml"),
    include_str!("../../tests/fixtures/secrets/eso-rds-extract.yaml"),
    include_str!("../../tests/fixtures/secrets/generic-external.yaml"),
    include_str!("../../tests/fixtures/secrets/generic-uppercase-keys.yaml"),
    include_str!("../../tests/fixtures/secrets/kubeblocks-0x-conn-credential.yaml"),
    include_str!("../../tests/fixtures/secrets/kubeblocks-1x-account.yaml"),
    include_str!("../../tests/fixtures/secrets/osba-azure-postgresql.yaml"),
    include_str!("../../tests/fixtures/secrets/percona-pgv2-pguser.yaml"),
    include_str!("../../tests/fixtures/secrets/rds-managed-master.yaml"),
    include_str!("../../tests/fixtures/secrets/servicebinding-postgresql.yaml"),
    include_str!("../../tests/fixtures/secrets/stackgres-cluster.yaml"),
    include_str!("../../tests/fixtures/secrets/vault-dynamic-database.yaml"),
    include_str!("../../tests/fixtures/secrets/zalando-credentials.yaml"),
];

/// Namespaces the seeds' requests use, besides each Secret's own: every Secret is visible in
/// each, so a fuzzed pod naming any fixture Secret reaches resolution, not just "not found".
const NAMESPACES: &[&str] = &["shop", "default"];

/// Every fixture Secret, in its own namespace and in [`NAMESPACES`].
pub fn secrets() -> &'static SecretStore {
    static STORE: OnceLock<SecretStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut store = SecretStore::new();
        for text in SECRETS {
            let secret: Secret = serde_yaml_ng::from_str(text).expect("fixture Secrets parse");
            let view = SecretView::from_secret(&secret, "default");
            for namespace in NAMESPACES {
                store.insert(SecretView {
                    namespace: (*namespace).to_owned(),
                    ..view.clone()
                });
            }
            store.insert(view);
        }
        store
    })
}

pub fn profiles() -> &'static ProfileSet {
    static PROFILES: OnceLock<ProfileSet> = OnceLock::new();
    PROFILES.get_or_init(ProfileSet::builtin)
}

/// What must hold for any decision on `object`: a patch applies to the object it was made for,
/// and the patched object asks for nothing more: the decision on it (the API server's
/// reinvocation) admits it unchanged.
pub fn check_patch(object: &Value, decision: &Decision, decide_again: impl Fn(&Value) -> Decision) {
    let Decision::Allow { patch, .. } = decision else {
        return;
    };
    if patch.0.is_empty() {
        return;
    }
    let mut patched = object.clone();
    if let Err(error) = json_patch::patch(&mut patched, patch) {
        panic!("the decision's patch does not apply to its own object: {error}");
    }
    match decide_again(&patched) {
        Decision::Allow { patch, .. } => assert!(
            patch.0.is_empty(),
            "a patched pod gets a second patch on reinvocation: {patch:?}"
        ),
        Decision::Deny { denial, .. } => {
            panic!("a patched pod is denied on reinvocation: {denial}")
        }
    }
}
