//! A Secret as the cache decodes it from the API server: the metadata dbbind reads, the type,
//! the *names* of the keys and a digest of the data. The decoder skips every annotation (where
//! `kubectl apply` keeps a copy of the whole Secret) and `managedFields` without materialising
//! them. Each value is fed to a SHA-256 digest as the JSON parser hands it over and dropped
//! there: no value is copied, stored or decoded from base64, and what is kept is 32 bytes per
//! Secret from which no value can be recovered ([`ContentDigest`]), for restart on rotation
//! to tell a changed password from a changed label.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use dbbind_core::secret::OwnerKind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use sha2::{Digest, Sha256};

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
    /// A digest of every key and value under `data` and `stringData`.
    pub digest: ContentDigest,
}

/// SHA-256 over a Secret's keys and values, independent of their order. It is compared, never
/// shown: no `Display`, no `Serialize`, and `Debug` prints nothing of it, so it cannot reach a
/// log line, a metric or an Event by accident.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentDigest([u8; 32]);

impl fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentDigest(..)")
    }
}

impl ContentDigest {
    /// The digest of a Secret whose entries have these digests (one per key and value).
    fn of_entries(mut entries: Vec<[u8; 32]>) -> ContentDigest {
        // The API server sends keys sorted, but nothing promises it: sorting the entries'
        // digests makes the order irrelevant.
        entries.sort_unstable();
        let mut all = Sha256::new();
        for entry in &entries {
            all.update(entry);
        }
        ContentDigest(all.finalize().into())
    }
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
    #[serde(default, deserialize_with = "entries")]
    data: Entries,
    #[serde(default, rename = "stringData", deserialize_with = "entries")]
    string_data: Entries,
}

/// The key names of a map of Secret data, and one digest per key and value.
#[derive(Default)]
struct Entries {
    keys: Vec<String>,
    digests: Vec<[u8; 32]>,
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
        let Entries {
            mut keys,
            mut digests,
        } = wire.data;
        keys.extend(wire.string_data.keys);
        digests.extend(wire.string_data.digests);
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
            digest: ContentDigest::of_entries(digests),
        }
    }
}

/// The keys of a JSON object, each value fed to a digest with its key and dropped; `null` is
/// no keys.
fn entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Entries, D::Error> {
    struct EntriesVisitor;

    impl<'de> Visitor<'de> for EntriesVisitor {
        type Value = Entries;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_unit<E>(self) -> Result<Entries, E> {
            Ok(Entries::default())
        }

        fn visit_none<E>(self) -> Result<Entries, E> {
            Ok(Entries::default())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
            let capacity = map.size_hint().unwrap_or(0);
            let mut entries = Entries {
                keys: Vec::with_capacity(capacity),
                digests: Vec::with_capacity(capacity),
            };
            while let Some(key) = map.next_key::<String>()? {
                let mut entry = Sha256::new();
                // Lengths first, so ("ab", "c") and ("a", "bc") differ.
                entry.update((key.len() as u64).to_le_bytes());
                entry.update(key.as_bytes());
                map.next_value_seed(ValueDigest(&mut entry))?;
                entries.digests.push(entry.finalize().into());
                entries.keys.push(key);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_any(EntriesVisitor)
}

/// Feeds one value to a digest as the parser hands it over, without keeping it: a string (the
/// base64 of `data`, the text of `stringData`); anything else is skipped, as the API server
/// never sends it.
struct ValueDigest<'a>(&'a mut Sha256);

impl<'de> DeserializeSeed<'de> for ValueDigest<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueDigest<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value.as_bytes());
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
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

    fn digest_of(value: serde_json::Value) -> ContentDigest {
        serde_json::from_value::<SecretShape>(value).unwrap().digest
    }

    #[test]
    fn the_digest_follows_keys_and_values_only() {
        let secret = |labels: serde_json::Value, data: serde_json::Value| {
            serde_json::json!({"metadata": {"name": "db", "namespace": "shop", "labels": labels,
                "annotations": {"note": "x"}}, "data": data})
        };
        let base = digest_of(secret(
            serde_json::json!({}),
            serde_json::json!({"username": "YXBw", "password": "c2VjcmV0"}),
        ));
        let relabelled = digest_of(secret(
            serde_json::json!({"team": "shop"}),
            serde_json::json!({"password": "c2VjcmV0", "username": "YXBw"}),
        ));
        assert_eq!(base, relabelled, "labels and key order are not content");
        let rotated = digest_of(secret(
            serde_json::json!({}),
            serde_json::json!({"username": "YXBw", "password": "bmV3"}),
        ));
        assert_ne!(base, rotated);
        let renamed = digest_of(secret(
            serde_json::json!({}),
            serde_json::json!({"user": "YXBw", "password": "c2VjcmV0"}),
        ));
        assert_ne!(base, renamed);
        // Key and value boundaries count: {"ab": "c"} is not {"a": "bc"}.
        assert_ne!(
            digest_of(secret(
                serde_json::json!({}),
                serde_json::json!({"ab": "c"})
            )),
            digest_of(secret(
                serde_json::json!({}),
                serde_json::json!({"a": "bc"})
            ))
        );
        // stringData counts as data does.
        let mut written = secret(
            serde_json::json!({}),
            serde_json::json!({"username": "YXBw"}),
        );
        written["stringData"] = serde_json::json!({"password": "secret"});
        assert_ne!(digest_of(written), base);
        assert_eq!(format!("{base:?}"), "ContentDigest(..)");
    }
}
