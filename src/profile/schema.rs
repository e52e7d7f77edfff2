//! The profiles-file schema, shared by the built-ins and by `--profiles-file`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::detect::{DetectRule, SecretNamePattern};
use crate::field::Field;

/// A profiles file: `profiles:` followed by a list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub profiles: Vec<Profile>,
}

/// How to read one Secret shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// Used in `dbbind.io/profile`; a DNS label.
    pub name: String,
    /// One line: which provisioner writes this shape.
    #[serde(default)]
    pub description: String,
    /// When `auto` picks this profile: any one rule matching is enough. A profile without rules
    /// is only used when named explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detect: Vec<DetectRule>,
    /// Where each field comes from; a field not listed is not provided by this profile.
    pub fields: BTreeMap<Field, FieldSource>,
    /// Fields without which the pod is denied. Default: host, user, password.
    #[serde(default = "default_required")]
    pub required: Vec<Field>,
}

/// Where one field's value comes from, tried in this order: the Secret's keys, a value derived
/// from the Secret's name, a literal default.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSource {
    /// Secret keys to try; the first present wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Keys tried instead of `keys` when `dbbind.io/user` names a user other than this profile's
    /// default user (the Bitnami chart keeps its custom user's password under another key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_for_other_user: Vec<String>,
    /// A regular expression over the Secret's name; its capture group (or the whole match) is
    /// the value. Bitnami's Service has the Secret's name; Zalando's name embeds the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_secret_name: Option<SecretNamePattern>,
    /// A literal value used when nothing above provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

fn default_required() -> Vec<Field> {
    vec![Field::Host, Field::User, Field::Password]
}

impl Profile {
    pub fn field(&self, field: Field) -> Option<&FieldSource> {
        self.fields.get(&field)
    }

    /// The literal user this profile assumes when `dbbind.io/user` is not given.
    pub fn default_user(&self) -> Option<&str> {
        self.field(Field::User)?.default.as_deref()
    }

    /// Every key this profile reads, for detection and messages.
    pub fn keys_of(&self, field: Field) -> impl Iterator<Item = &str> {
        self.field(field).into_iter().flat_map(|source| {
            source
                .keys
                .iter()
                .chain(&source.keys_for_other_user)
                .map(String::as_str)
        })
    }

    /// Checks what serde cannot: names, and that required fields can be provided at all.
    pub(super) fn validate(&self) -> Result<(), String> {
        if !crate::binding::is_dns_label(&self.name, 63) {
            return Err("name must be a DNS label (lower case letters, digits, '-')".to_owned());
        }
        if self.name == super::AUTO {
            return Err("\"auto\" is reserved for detection".to_owned());
        }
        for (field, source) in &self.fields {
            if source.keys.is_empty()
                && source.keys_for_other_user.is_empty()
                && source.from_secret_name.is_none()
                && source.default.is_none()
            {
                return Err(format!(
                    "field {field} names no keys, fromSecretName or default"
                ));
            }
            if matches!(field, Field::Password | Field::Uri)
                && (source.default.is_some() || source.from_secret_name.is_some())
            {
                return Err(format!(
                    "field {field} carries a credential and may only come from Secret keys"
                ));
            }
            let bad_key = source
                .keys
                .iter()
                .chain(&source.keys_for_other_user)
                .find(|key| !crate::binding::is_secret_key(key));
            if let Some(key) = bad_key {
                return Err(format!("field {field}: {key:?} is not a valid Secret key"));
            }
        }
        for rule in &self.detect {
            rule.validate(self)?;
        }
        Ok(())
    }
}
