//! Detection as `auto` runs it: each profile's rules, compiled when the profiles load.
//!
//! A rule's `fields` condition ("a key of the profile's own for host") is resolved here, once,
//! to plain key lists, so matching a Secret needs neither the profile nor any per-request work
//! beyond set lookups.

use std::fmt;

use super::schema::{DetectRule, Profile};
use crate::field::join_fields;
use crate::secret::SecretView;

/// One detect rule, ready to match.
#[derive(Clone, Debug)]
pub struct Detection {
    rule: DetectRule,
    /// For each field the rule names, the profile's keys for it: one of each must be present.
    field_keys: Vec<Vec<String>>,
}

impl Detection {
    pub fn compile(rule: &DetectRule, profile: &Profile) -> Detection {
        Detection {
            rule: rule.clone(),
            field_keys: rule
                .fields
                .iter()
                .map(|field| profile.keys_of(*field).map(str::to_owned).collect())
                .collect(),
        }
    }

    pub fn matches(&self, secret: &SecretView) -> bool {
        let rule = &self.rule;
        let type_ok = rule
            .secret_type
            .as_ref()
            .is_none_or(|wanted| &secret.secret_type == wanted);
        let labels_ok = rule
            .labels
            .iter()
            .all(|(key, wanted)| match secret.labels.get(key) {
                Some(value) => wanted == "*" || value == wanted,
                None => false,
            });
        let name_ok = rule
            .name
            .as_ref()
            .is_none_or(|pattern| pattern.is_match(&secret.name));
        let owner_ok = rule.owner.as_ref().is_none_or(|wanted| {
            secret
                .owners
                .iter()
                .any(|owner| owner.group == wanted.group && owner.kind == wanted.kind)
        });
        let keys_ok = rule.keys.iter().all(|key| secret.has_key(key));
        let any_key_ok = rule.any_key.is_empty() || rule.any_key.iter().any(|k| secret.has_key(k));
        let only_keys_ok = rule.only_keys.is_empty()
            || (!secret.keys.is_empty() && secret.keys.iter().all(|k| rule.only_keys.contains(k)));
        let fields_ok = self
            .field_keys
            .iter()
            .all(|keys| keys.iter().any(|key| secret.has_key(key)));
        type_ok
            && labels_ok
            && name_ok
            && owner_ok
            && keys_ok
            && any_key_ok
            && only_keys_ok
            && fields_ok
    }
}

/// Reads as the denial's list of what was tried: `label cnpg.io/cluster, owner postgresql.cnpg.io/Cluster`.
impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = &self.rule;
        let mut parts = Vec::new();
        if let Some(secret_type) = &rule.secret_type {
            parts.push(format!("type {secret_type}"));
        }
        for (key, value) in &rule.labels {
            if value == "*" {
                parts.push(format!("label {key}"));
            } else {
                parts.push(format!("label {key}={value}"));
            }
        }
        if let Some(pattern) = &rule.name {
            parts.push(format!("name matching {}", pattern.as_str()));
        }
        if let Some(owner) = &rule.owner {
            parts.push(format!("owner {}/{}", owner.group, owner.kind));
        }
        if !rule.keys.is_empty() {
            parts.push(format!("keys {}", rule.keys.join("+")));
        }
        if !rule.any_key.is_empty() {
            parts.push(format!("a key of {}", rule.any_key.join("/")));
        }
        if !rule.only_keys.is_empty() {
            parts.push(format!("only keys of {}", rule.only_keys.join("/")));
        }
        if !rule.fields.is_empty() {
            parts.push(format!("keys for {}", join_fields(&rule.fields)));
        }
        f.write_str(&parts.join(", "))
    }
}
