//! A Secret as the cache decodes it from the API server: the metadata dbbind reads, the type
//! and the *names* of the keys. The decoder skips every value, every annotation (where
//! `kubectl apply` keeps a copy of the whole Secret) and `managedFields` without materialising
//! them, so no credential is ever held in memory, not even for the length of one decode.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use dbbind_core::secret::OwnerKind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// What the watch receives for each Secret.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "Wire")]
pub struct SecretShape {
    /// Name, namespace and resourceVersion only (the watcher resumes from the latter).
    pub metadata: ObjectMeta,
    pub secret_type: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub owners: Vec<OwnerKind>,
    /// Names of the keys under `data` and `stringData`, unsorted, possibly repeated.
    pub keys: Vec<String>,
}

impl kube::Resource for SecretShape {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The JSON as the API server sends it, minus everything not named here.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: WireMetadata,
    #[serde(default, rename = "type")]
    secret_type: Option<String>,
    #[serde(default, deserialize_with = "key_names")]
    data: Vec<String>,
    #[serde(default, rename = "stringData", deserialize_with = "key_names")]
    string_data: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMetadata {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    owner_references: Option<Vec<WireOwner>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOwner {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

impl From<Wire> for SecretShape {
    fn from(wire: Wire) -> SecretShape {
        let WireMetadata {
            name,
            namespace,
            resource_version,
            labels,
            owner_references,
        } = wire.metadata;
        let mut keys = wire.data;
        keys.extend(wire.string_data);
        SecretShape {
            metadata: ObjectMeta {
                name,
                namespace,
                resource_version,
                ..ObjectMeta::default()
            },
            secret_type: wire.secret_type,
            labels: labels.unwrap_or_default(),
            owners: owner_references
                .into_iter()
                .flatten()
                .map(|owner| OwnerKind::from_api_version(&owner.api_version, &owner.kind))
                .collect(),
            keys,
        }
    }
}

/// The keys of a JSON object whose values are skipped unread; `null` is no keys.
fn key_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct KeyNames;

    impl<'de> Visitor<'de> for KeyNames {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_unit<E>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }

        fn visit_none<E>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }

    deserializer.deserialize_any(KeyNames)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_names_type_labels_owners_and_key_names_are_decoded() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "orders-db", "namespace": "shop", "resourceVersion": "42",
                "labels": {"cnpg.io/cluster": "orders"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"c2VjcmV0\"}}"},
                "ownerReferences": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": "orders", "uid": "u"}],
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}],
            },
            "type": "kubernetes.io/basic-auth",
            "data": {"username": "YXBw", "password": "c2VjcmV0"},
            "stringData": {"host": "db"},
        });
        let shape: SecretShape = serde_json::from_value(json).unwrap();
        assert_eq!(shape.metadata.name.as_deref(), Some("orders-db"));
        assert_eq!(shape.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(shape.metadata.resource_version.as_deref(), Some("42"));
        assert!(shape.metadata.annotations.is_none());
        assert!(shape.metadata.managed_fields.is_none());
        assert_eq!(
            shape.secret_type.as_deref(),
            Some("kubernetes.io/basic-auth")
        );
        assert_eq!(shape.labels["cnpg.io/cluster"], "orders");
        assert_eq!(shape.owners[0].group, "postgresql.cnpg.io");
        assert_eq!(shape.keys, ["username", "password", "host"]);
        let printed = format!("{shape:?}");
        assert!(
            !printed.contains("c2VjcmV0") && !printed.contains("last-applied"),
            "{printed}"
        );
    }

    #[test]
    fn a_bookmark_and_null_maps_decode() {
        let bookmark = serde_json::json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "data": null});
        let shape: SecretShape = serde_json::from_value(bookmark).unwrap();
        assert_eq!(shape.metadata.resource_version.as_deref(), Some("7"));
        assert!(shape.keys.is_empty());
    }
}
