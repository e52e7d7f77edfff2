//! The cache's memory layout. A cluster's Secrets repeat themselves: the same few types, the
//! same key sets (every CloudNativePG app Secret has the same nine keys), the same label sets.
//! Each of those is stored once and shared ([`Interner`]); a Secret costs its name and six
//! pointers. Labels and owners the profiles do not read are not kept at all ([`ShapeFilter`]).
//! With restart on rotation on, a Secret also keeps the digest of its data (32 bytes behind
//! the sixth pointer), and a change of digest is reported ([`ChangedSecrets`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use dbbind_core::secret::{OwnerKind, SecretView, ShapeFilter};

use super::shape::{ContentDigest, SecretShape};
use crate::rotation::changed::ChangedSecrets;

/// One Secret, its parts shared with every Secret that has the same ones.
#[derive(Clone, Debug)]
pub struct CompactSecret {
    secret_type: Arc<str>,
    /// Sorted, deduplicated.
    keys: Arc<[Box<str>]>,
    /// Only the labels the profiles read, sorted by key.
    labels: Arc<[(Box<str>, Box<str>)]>,
    /// Only the owner kinds the profiles read.
    owners: Arc<[OwnerKind]>,
    /// Kept only when rotations are reported; boxed so it costs one pointer when not.
    digest: Option<Box<ContentDigest>>,
}

impl CompactSecret {
    /// The view the core decides with.
    pub fn view(&self, namespace: &str, name: &str) -> SecretView {
        SecretView {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            secret_type: self.secret_type.to_string(),
            labels: self
                .labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
            owners: self.owners.to_vec(),
            keys: self.keys.iter().map(|key| key.to_string()).collect(),
        }
    }
}

/// Shares equal values: each distinct value is allocated once.
#[derive(Debug)]
struct Interner<T: ?Sized + Eq + Hash> {
    values: HashSet<Arc<T>>,
    /// Size after the last prune; the next prune waits until the set has doubled.
    pruned_at: usize,
}

impl<T: ?Sized + Eq + Hash> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: HashSet::new(),
            pruned_at: 0,
        }
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    fn intern(&mut self, value: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(shared) = self.values.get(value) {
            return Arc::clone(shared);
        }
        let shared = make();
        self.values.insert(Arc::clone(&shared));
        if self.values.len() > 2 * self.pruned_at.max(64) {
            self.prune();
        }
        shared
    }

    /// Forgets values no Secret holds any more (a key set that changed, a deleted cluster's
    /// label), so the tables do not grow with the cluster's history.
    fn prune(&mut self) {
        self.values.retain(|value| Arc::strong_count(value) > 1);
        self.pruned_at = self.values.len();
    }
}

/// The shared tables of one cache.
#[derive(Debug, Default)]
pub struct Interners {
    types: Interner<str>,
    keys: Interner<[Box<str>]>,
    labels: Interner<[(Box<str>, Box<str>)]>,
    owners: Interner<[OwnerKind]>,
    namespaces: Interner<str>,
}

impl Interners {
    /// The Secret in compact form, keeping only what `filter` names, and its digest when
    /// `keep_digest`.
    pub fn compact(
        &mut self,
        shape: SecretShape,
        filter: &ShapeFilter,
        keep_digest: bool,
    ) -> CompactSecret {
        let digest = keep_digest.then(|| Box::new(shape.digest));
        let secret_type = shape.secret_type.as_deref().unwrap_or("Opaque");
        let keys: Vec<Box<str>> = shape
            .keys
            .into_iter()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        let labels: Vec<(Box<str>, Box<str>)> = shape
            .labels
            .into_iter()
            .filter(|(key, _)| filter.keeps_label(key))
            .map(|(key, value)| (key.into_boxed_str(), value.into_boxed_str()))
            .collect();
        let mut owners: Vec<OwnerKind> = shape
            .owners
            .into_iter()
            .filter(|owner| filter.keeps_owner(owner))
            .collect();
        owners.sort();
        owners.dedup();
        CompactSecret {
            secret_type: self.types.intern(secret_type, || Arc::from(secret_type)),
            keys: self.keys.intern(&keys, || Arc::from(keys.clone())),
            labels: self.labels.intern(&labels, || Arc::from(labels.clone())),
            owners: self.owners.intern(&owners, || Arc::from(owners.clone())),
            digest,
        }
    }

    pub fn namespace(&mut self, namespace: &str) -> Arc<str> {
        self.namespaces.intern(namespace, || Arc::from(namespace))
    }

    fn prune(&mut self) {
        self.types.prune();
        self.keys.prune();
        self.labels.prune();
        self.owners.prune();
        self.namespaces.prune();
    }

    /// Distinct values held, for tests.
    pub fn distinct(&self) -> usize {
        self.types.values.len()
            + self.keys.values.len()
            + self.labels.values.len()
            + self.owners.values.len()
            + self.namespaces.values.len()
    }
}

/// Whether a Secret's data changed. Without digests (rotations not reported) nothing did.
fn changed(old: &CompactSecret, new: &CompactSecret) -> bool {
    matches!((&old.digest, &new.digest), (Some(old), Some(new)) if old != new)
}

/// Secrets by namespace, then name.
pub type Secrets = HashMap<Arc<str>, HashMap<Box<str>, CompactSecret>>;

/// What one watch has seen: the Secrets, and during a relist the new list being assembled
/// (the old contents keep answering until the list is complete, then are replaced whole, so
/// Secrets deleted while the watch was down disappear).
#[derive(Debug, Default)]
pub struct Contents {
    live: Secrets,
    relisting: Option<Secrets>,
    interners: Interners,
    count: usize,
    /// Where a change of a Secret's data is reported; digests are kept only with it.
    rotations: Option<Arc<ChangedSecrets>>,
}

impl Contents {
    /// Contents that keep each Secret's digest and report to `rotations` when it changes.
    pub fn reporting(rotations: Option<Arc<ChangedSecrets>>) -> Contents {
        Contents {
            rotations,
            ..Contents::default()
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretView> {
        let secret = self.live.get(namespace)?.get(name)?;
        Some(secret.view(namespace, name))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A relist begins.
    pub fn begin_relist(&mut self) {
        self.relisting = Some(Secrets::new());
    }

    /// A Secret of the relist.
    pub fn relisted(&mut self, shape: SecretShape, filter: &ShapeFilter) {
        let Some((namespace, name)) = self.identity(&shape) else {
            return;
        };
        let compact = self
            .interners
            .compact(shape, filter, self.rotations.is_some());
        let relisting = self.relisting.get_or_insert_with(Secrets::new);
        relisting
            .entry(namespace)
            .or_default()
            .insert(name, compact);
    }

    /// The relist is complete: it replaces the contents. A Secret whose data differs from what
    /// the contents held is reported: it changed while the watch was down.
    pub fn end_relist(&mut self) {
        let relisted = self.relisting.take().unwrap_or_default();
        if let Some(rotations) = &self.rotations {
            for (namespace, names) in &relisted {
                let Some(before) = self.live.get(namespace) else {
                    continue;
                };
                for (name, secret) in names {
                    if before.get(name).is_some_and(|old| changed(old, secret)) {
                        rotations.report(namespace, name);
                    }
                }
            }
        }
        self.live = relisted;
        self.count = self.live.values().map(HashMap::len).sum();
        self.interners.prune();
    }

    pub fn apply(&mut self, shape: SecretShape, filter: &ShapeFilter) {
        let Some((namespace, name)) = self.identity(&shape) else {
            return;
        };
        let compact = self
            .interners
            .compact(shape, filter, self.rotations.is_some());
        let names = self.live.entry(Arc::clone(&namespace)).or_default();
        let Some(old) = names.get_mut(&name) else {
            names.insert(name, compact);
            self.count += 1;
            return;
        };
        let was_changed = changed(old, &compact);
        *old = compact;
        if was_changed && let Some(rotations) = &self.rotations {
            rotations.report(&namespace, &name);
        }
    }

    pub fn delete(&mut self, shape: &SecretShape) {
        let (Some(namespace), Some(name)) = (&shape.metadata.namespace, &shape.metadata.name)
        else {
            return;
        };
        let Some(names) = self.live.get_mut(namespace.as_str()) else {
            return;
        };
        if names.remove(name.as_str()).is_some() {
            self.count -= 1;
        }
        if names.is_empty() {
            self.live.remove(namespace.as_str());
        }
    }

    /// Distinct shared values, for tests of the sharing.
    pub fn distinct_values(&self) -> usize {
        self.interners.distinct()
    }

    fn identity(&mut self, shape: &SecretShape) -> Option<(Arc<str>, Box<str>)> {
        // Watched Secrets always carry both; a malformed event is skipped, not stored under "".
        let namespace = shape.metadata.namespace.as_deref()?;
        let name = shape.metadata.name.as_deref()?;
        Some((self.interners.namespace(namespace), Box::from(name)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shape(namespace: &str, name: &str, keys: &[&str], labels: &[(&str, &str)]) -> SecretShape {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": namespace, "name": name,
                "labels": labels.iter().copied().collect::<BTreeMap<_, _>>(),
            },
            "data": keys.iter().map(|k| (*k, "eA==")).collect::<BTreeMap<_, _>>(),
        }))
        .unwrap()
    }

    fn filter() -> ShapeFilter {
        ShapeFilter {
            labels: ["cnpg.io/cluster".to_owned()].into(),
            owners: BTreeSet::new(),
        }
    }

    #[test]
    fn equal_key_sets_and_labels_are_stored_once() {
        let mut contents = Contents::default();
        for index in 0..1000 {
            let labels = [("cnpg.io/cluster", "orders"), ("helm.sh/chart", "x")];
            contents.apply(
                shape(
                    "shop",
                    &format!("s{index}"),
                    &["password", "host", "user"],
                    &labels,
                ),
                &filter(),
            );
        }
        assert_eq!(contents.len(), 1000);
        // One type, one key set, one label set, one (empty) owner set, one namespace.
        assert_eq!(contents.distinct_values(), 5);
        let view = contents.get("shop", "s999").unwrap();
        assert_eq!(view.key_list(), "[host, password, user]");
        assert_eq!(view.secret_type, "Opaque");
        assert_eq!(view.labels.len(), 1, "a label no profile reads is dropped");
    }

    #[test]
    fn values_no_secret_holds_are_forgotten_at_a_relist() {
        let mut contents = Contents::default();
        for index in 0..100 {
            contents.apply(
                shape("shop", "s", &[&format!("key{index}")], &[]),
                &filter(),
            );
        }
        assert_eq!(contents.len(), 1);
        contents.begin_relist();
        contents.relisted(shape("shop", "s", &["only"], &[]), &filter());
        contents.end_relist();
        assert_eq!(contents.distinct_values(), 5);
    }

    #[test]
    fn deletes_count_and_unknown_deletes_are_ignored() {
        let mut contents = Contents::default();
        contents.apply(shape("shop", "a", &["x"], &[]), &filter());
        contents.apply(shape("shop", "a", &["y"], &[]), &filter());
        assert_eq!(contents.len(), 1, "a modification is not a second Secret");
        contents.delete(&shape("shop", "missing", &[], &[]));
        contents.delete(&shape("other", "a", &[], &[]));
        assert_eq!(contents.len(), 1);
        contents.delete(&shape("shop", "a", &[], &[]));
        assert_eq!(contents.len(), 0);
        assert!(contents.get("shop", "a").is_none());
    }

    fn secret_with(name: &str, password: &str, label: &str) -> SecretShape {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": name, "labels": {"cnpg.io/cluster": label}},
            "data": {"username": "YXBw", "password": password},
        }))
        .unwrap()
    }

    fn taken(rotations: &ChangedSecrets) -> Vec<String> {
        let waited = futures::FutureExt::now_or_never(rotations.next());
        waited
            .into_iter()
            .flatten()
            .map(|secret| format!("{}/{}", secret.namespace, secret.name))
            .collect()
    }

    #[test]
    fn a_change_of_data_is_reported_and_a_first_sight_or_a_label_change_is_not() {
        let rotations = Arc::new(ChangedSecrets::default());
        let mut contents = Contents::reporting(Some(Arc::clone(&rotations)));
        contents.begin_relist();
        contents.relisted(secret_with("a", "b2xk", "x"), &filter());
        contents.end_relist();
        contents.apply(secret_with("b", "b2xk", "x"), &filter());
        assert!(taken(&rotations).is_empty(), "first sight is a baseline");
        contents.apply(secret_with("a", "b2xk", "y"), &filter());
        assert!(taken(&rotations).is_empty(), "a label is not data");
        contents.apply(secret_with("a", "bmV3", "y"), &filter());
        assert_eq!(taken(&rotations), ["shop/a"]);
        // A relist after a watch gap compares too: b changed while the watch was down.
        contents.begin_relist();
        contents.relisted(secret_with("a", "bmV3", "y"), &filter());
        contents.relisted(secret_with("b", "bmV3", "x"), &filter());
        contents.relisted(secret_with("c", "bmV3", "x"), &filter());
        contents.end_relist();
        assert_eq!(taken(&rotations), ["shop/b"]);
    }

    #[test]
    fn without_reporting_no_digest_is_kept() {
        let mut contents = Contents::default();
        contents.apply(secret_with("a", "b2xk", "x"), &filter());
        let kept = &contents.live["shop"]["a"];
        assert!(kept.digest.is_none());
    }
}
