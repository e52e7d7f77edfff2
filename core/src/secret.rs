//! What dbbind knows about a Secret: its shape, never its values.
//!
//! Profile detection and binding resolution need a Secret's name, type, labels, owners and the
//! *names* of its keys. Keeping only those (values are dropped when the view is built) means no
//! code path can leak a credential into a patch, a message or a log line, and the server's watch
//! cache stays small.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Secret;
use kube_core::GroupVersion;

use crate::message::clip;

/// The API group and kind of an owner reference (`servicecatalog.k8s.io`, `ServiceBinding`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerKind {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
}

impl OwnerKind {
    /// `apiVersion` is `group/version`, or a bare version for the core group.
    pub fn from_api_version(api_version: &str, kind: &str) -> OwnerKind {
        let group = api_version
            .parse::<GroupVersion>()
            .map(|gv| gv.group)
            .unwrap_or_default();
        OwnerKind {
            group,
            kind: kind.to_owned(),
        }
    }
}

/// The most key names a message lists.
pub const MAX_LISTED_KEYS: usize = 32;

/// A Secret without its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretView {
    pub namespace: String,
    pub name: String,
    /// `type`, `Opaque` when the Secret does not say.
    pub secret_type: String,
    pub labels: BTreeMap<String, String>,
    pub owners: Vec<OwnerKind>,
    /// Names of the keys under `data` and `stringData`.
    pub keys: BTreeSet<String>,
}

impl SecretView {
    /// Builds the view, dropping every value. `default_namespace` applies when the Secret's
    /// metadata names none (a manifest meant for `kubectl apply -n`).
    pub fn from_secret(secret: &Secret, default_namespace: &str) -> SecretView {
        let metadata = &secret.metadata;
        let mut keys = BTreeSet::new();
        if let Some(data) = &secret.data {
            keys.extend(data.keys().cloned());
        }
        if let Some(string_data) = &secret.string_data {
            keys.extend(string_data.keys().cloned());
        }
        SecretView {
            namespace: metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            name: metadata.name.clone().unwrap_or_default(),
            secret_type: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
            labels: metadata.labels.clone().unwrap_or_default(),
            owners: metadata
                .owner_references
                .iter()
                .flatten()
                .map(|owner| OwnerKind::from_api_version(&owner.api_version, &owner.kind))
                .collect(),
            keys,
        }
    }

    pub fn has_key(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// Key names for messages: `[a, b, c]`; at most [`MAX_LISTED_KEYS`], each cut at 64 bytes.
    pub fn key_list(&self) -> String {
        let mut keys: Vec<String> = self
            .keys
            .iter()
            .take(MAX_LISTED_KEYS)
            .map(|key| clip(key).to_string())
            .collect();
        if self.keys.len() > MAX_LISTED_KEYS {
            keys.push(format!("… {} keys in all", self.keys.len()));
        }
        format!("[{}]", keys.join(", "))
    }
}

/// The labels and owner kinds of a Secret that the profiles in effect read: detection rules'
/// labels and owners, and the label an operator's endpoints take the cluster's name from. A
/// cache keeps only these, so a Secret's other labels cost no memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShapeFilter {
    pub labels: BTreeSet<String>,
    pub owners: BTreeSet<OwnerKind>,
}

impl ShapeFilter {
    pub fn keeps_label(&self, key: &str) -> bool {
        self.labels.contains(key)
    }

    pub fn keeps_owner(&self, owner: &OwnerKind) -> bool {
        self.owners.contains(owner)
    }

    /// The view with only what this filter keeps: what a cache built with it would answer.
    pub fn apply(&self, mut view: SecretView) -> SecretView {
        view.labels.retain(|key, _| self.keeps_label(key));
        view.owners.retain(|owner| self.keeps_owner(owner));
        view
    }
}

/// Where the core looks Secrets up: the server's watch cache, or the files given to `render`.
pub trait SecretLookup {
    fn get(&self, namespace: &str, name: &str) -> Option<SecretView>;
}

/// An in-memory set of Secret views, keyed by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct SecretStore {
    secrets: HashMap<(String, String), SecretView>,
}

impl SecretStore {
    pub fn new() -> SecretStore {
        SecretStore::default()
    }

    pub fn insert(&mut self, view: SecretView) {
        self.secrets
            .insert((view.namespace.clone(), view.name.clone()), view);
    }

    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<SecretView> {
        self.secrets
            .remove(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

impl FromIterator<SecretView> for SecretStore {
    fn from_iter<I: IntoIterator<Item = SecretView>>(iter: I) -> SecretStore {
        let mut store = SecretStore::new();
        for view in iter {
            store.insert(view);
        }
        store
    }
}

impl SecretLookup for SecretStore {
    fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_group_is_parsed_from_api_version() {
        let owner = OwnerKind::from_api_version("servicecatalog.k8s.io/v1beta1", "ServiceBinding");
        assert_eq!(owner.group, "servicecatalog.k8s.io");
        assert_eq!(
            OwnerKind::from_api_version("v1", "ConfigMap").group,
            "",
            "core group"
        );
    }

    #[test]
    fn view_keeps_key_names_from_data_and_string_data() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "data": {"password": "c2VjcmV0"},
            "stringData": {"host": "db.example"},
        }))
        .unwrap();
        let view = SecretView::from_secret(&secret, "ns");
        assert_eq!(view.namespace, "ns");
        assert_eq!(view.secret_type, "Opaque");
        assert_eq!(view.key_list(), "[host, password]");
    }
}
