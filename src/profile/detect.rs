//! Detection rules: how `auto` recognises a Secret's shape from its type, labels, name, owners
//! and key names. A rule matches when every condition it states holds.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::schema::Profile;
use crate::field::Field;
use crate::secret::SecretView;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectRule {
    /// The Secret's `type` equals this.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Each label is present with this value; `"*"` accepts any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The Secret's name matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<SecretNamePattern>,
    /// An owner reference of this group and kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerMatch>,
    /// Every one of these keys is present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// At least one of these keys is present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_key: Vec<String>,
    /// The Secret has at least one key, and no key outside this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_keys: Vec<String>,
    /// For each of these fields, one of the profile's own keys for it is present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerMatch {
    /// API group, without version (`servicecatalog.k8s.io`).
    pub group: String,
    pub kind: String,
}

impl DetectRule {
    pub fn matches(&self, secret: &SecretView, profile: &Profile) -> bool {
        let type_ok = self
            .secret_type
            .as_ref()
            .is_none_or(|wanted| &secret.secret_type == wanted);
        let labels_ok = self
            .labels
            .iter()
            .all(|(key, wanted)| match secret.labels.get(key) {
                Some(value) => wanted == "*" || value == wanted,
                None => false,
            });
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|pattern| pattern.regex.is_match(&secret.name));
        let owner_ok = self.owner.as_ref().is_none_or(|wanted| {
            secret
                .owners
                .iter()
                .any(|owner| owner.group == wanted.group && owner.kind == wanted.kind)
        });
        let keys_ok = self.keys.iter().all(|key| secret.has_key(key));
        let any_key_ok = self.any_key.is_empty() || self.any_key.iter().any(|k| secret.has_key(k));
        let only_keys_ok = self.only_keys.is_empty()
            || (!secret.keys.is_empty() && secret.keys.iter().all(|k| self.only_keys.contains(k)));
        let fields_ok = self
            .fields
            .iter()
            .all(|field| profile.keys_of(*field).any(|key| secret.has_key(key)));
        type_ok
            && labels_ok
            && name_ok
            && owner_ok
            && keys_ok
            && any_key_ok
            && only_keys_ok
            && fields_ok
    }

    pub(super) fn validate(&self, profile: &Profile) -> Result<(), String> {
        let states_nothing = self.secret_type.is_none()
            && self.labels.is_empty()
            && self.name.is_none()
            && self.owner.is_none()
            && self.keys.is_empty()
            && self.any_key.is_empty()
            && self.only_keys.is_empty()
            && self.fields.is_empty();
        if states_nothing {
            return Err("a detect rule must state at least one condition".to_owned());
        }
        if let Some(field) = self
            .fields
            .iter()
            .find(|f| profile.keys_of(**f).next().is_none())
        {
            return Err(format!(
                "detect rule names field {field}, for which the profile lists no keys"
            ));
        }
        Ok(())
    }
}

/// Reads as the denial's list of what was tried: `label cnpg.io/cluster, owner postgresql.cnpg.io/Cluster`.
impl fmt::Display for DetectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(secret_type) = &self.secret_type {
            parts.push(format!("type {secret_type}"));
        }
        for (key, value) in &self.labels {
            if value == "*" {
                parts.push(format!("label {key}"));
            } else {
                parts.push(format!("label {key}={value}"));
            }
        }
        if let Some(pattern) = &self.name {
            parts.push(format!("name matching {}", pattern.regex.as_str()));
        }
        if let Some(owner) = &self.owner {
            parts.push(format!("owner {}/{}", owner.group, owner.kind));
        }
        if !self.keys.is_empty() {
            parts.push(format!("keys {}", self.keys.join("+")));
        }
        if !self.any_key.is_empty() {
            parts.push(format!("a key of {}", self.any_key.join("/")));
        }
        if !self.only_keys.is_empty() {
            parts.push(format!("only keys of {}", self.only_keys.join("/")));
        }
        if !self.fields.is_empty() {
            parts.push(format!(
                "keys for {}",
                crate::field::join_fields(&self.fields)
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A regular expression over a Secret's name, kept with its source text for the profiles file.
#[derive(Clone, Debug)]
pub struct SecretNamePattern {
    regex: Regex,
}

impl SecretNamePattern {
    pub fn new(pattern: &str) -> Result<SecretNamePattern, String> {
        let regex = Regex::new(pattern).map_err(|error| error.to_string())?;
        if regex.captures_len() > 2 {
            return Err(format!(
                "pattern {pattern:?} has more than one capture group"
            ));
        }
        Ok(SecretNamePattern { regex })
    }

    /// The value this pattern derives from `name`: its capture group, or the whole match.
    pub fn extract<'a>(&self, name: &'a str) -> Option<&'a str> {
        let captures = self.regex.captures(name)?;
        let value = captures.get(1).or_else(|| captures.get(0))?.as_str();
        (!value.is_empty()).then_some(value)
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

impl Serialize for SecretNamePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.regex.as_str())
    }
}

impl<'de> Deserialize<'de> for SecretNamePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SecretNamePattern::new(&text).map_err(serde::de::Error::custom)
    }
}
