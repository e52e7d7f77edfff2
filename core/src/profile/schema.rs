//! The profiles-file schema, shared by the built-ins and by `--profiles-file`, and the checks
//! serde cannot make.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AUTO;
use super::pattern::SecretNamePattern;
use crate::field::Field;
use crate::names::{is_dns_label, is_secret_key};

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
    /// The operator's Services by role, for `dbbind.io/endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// Where this shape keeps TLS files (docs/design.md §9).
    #[serde(default, skip_serializing_if = "Tls::is_empty")]
    pub tls: Tls,
}

/// Where a Secret shape keeps TLS files: keys of the bound Secret itself, and the operator's
/// CA Secret, named after the database cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// Keys of the bound Secret holding the CA certificate (PEM); the first present wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_keys: Vec<String>,
    /// Keys of the bound Secret holding the client certificate; used only with a key from
    /// `keyKeys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_keys: Vec<String>,
    /// Keys of the bound Secret holding the client's private key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_keys: Vec<String>,
    /// The operator's CA Secret, when neither an annotation nor the bound Secret gives a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<CaSecret>,
}

impl Tls {
    pub fn is_empty(&self) -> bool {
        self.ca_keys.is_empty()
            && self.cert_keys.is_empty()
            && self.key_keys.is_empty()
            && self.ca_secret.is_none()
    }
}

/// A Secret the operator writes beside the bound one, holding the cluster's CA (CloudNativePG's
/// `<cluster>-ca`). `{cluster}` is the cluster's name, found by the `endpoints` rules. Only
/// `key` is projected, never the CA's private key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSecret {
    pub name: String,
    pub key: String,
}

/// An operator that publishes one Service per role names each after the database cluster:
/// the host for `dbbind.io/endpoint` is the role's template with `{cluster}` replaced by the
/// cluster's name, read from a label of the Secret, else from the Secret's name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoints {
    /// A label of the Secret whose value is the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_label: Option<String>,
    /// A regular expression over the Secret's name whose capture group is the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_from_secret_name: Option<SecretNamePattern>,
    /// The primary (reads and writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rw: Option<String>,
    /// Replicas only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ro: Option<String>,
    /// Any instance, for reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<String>,
    /// The operator's connection pooler, for `dbbind.io/endpoint: pooler`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerEndpoint>,
}

/// How a profile reaches its operator's connection pooler: one of the two.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolerEndpoint {
    /// Another profile that reads the pooler's keys of the same Secret (Crunchy's and
    /// Percona's `pgbouncer-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The pooler's Service, `{pooler}` standing for the pooler resource `dbbind.io/pooler`
    /// names (CloudNativePG's `Pooler`, whose Service has its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// What stands for the cluster's name in an endpoint template.
pub const CLUSTER_PLACEHOLDER: &str = "{cluster}";
/// What stands for `dbbind.io/pooler` in a pooler's Service template.
pub const POOLER_PLACEHOLDER: &str = "{pooler}";

impl Endpoints {
    /// The host template of a role (`rw`, `ro`, `r`), when the operator has that Service.
    pub fn template(&self, role: &str) -> Option<&str> {
        match role {
            "rw" => self.rw.as_deref(),
            "ro" => self.ro.as_deref(),
            "r" => self.r.as_deref(),
            _ => None,
        }
        .filter(|template| !template.is_empty())
    }

    /// The roles this operator serves, for messages.
    pub fn roles(&self) -> Vec<&'static str> {
        let mut roles: Vec<&'static str> = ["rw", "ro", "r"]
            .into_iter()
            .filter(|role| self.template(role).is_some())
            .collect();
        if self.pooler.is_some() {
            roles.push("pooler");
        }
        roles
    }

    /// The cluster's name: the label when the Secret is known and has it, else derived from
    /// the Secret's name.
    pub fn cluster<'a>(
        &self,
        labels: Option<&'a BTreeMap<String, String>>,
        secret_name: &'a str,
    ) -> Option<&'a str> {
        let from_label = self
            .cluster_label
            .as_ref()
            .and_then(|label| labels?.get(label))
            .map(String::as_str)
            .filter(|name| !name.is_empty());
        from_label.or_else(|| self.cluster_from_secret_name.as_ref()?.extract(secret_name))
    }
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
    /// What the value derived from the Secret's name becomes, `{match}` standing for it: a
    /// Service named after a release with a suffix (Bitnami postgresql-ha's `{match}-pgpool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A literal value used when nothing above provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One way `auto` recognises a Secret's shape from its type, labels, name, owners and key
/// names. It matches when every condition it states holds.
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

/// Why a profile that parsed is still refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidProfile {
    #[error("name must be a DNS label (lower case letters, digits, '-')")]
    Name,
    #[error("\"auto\" is reserved for detection")]
    ReservedName,
    #[error("field {0} names no keys, fromSecretName or default")]
    FieldWithoutSource(Field),
    #[error("field {0}: template needs fromSecretName and must contain {{match}}")]
    TemplateWithoutMatch(Field),
    #[error("field {0} carries a credential and may only come from Secret keys")]
    CredentialNotFromKeys(Field),
    #[error("field {field}: {key:?} is not a valid Secret key")]
    BadKey { field: Field, key: String },
    #[error("a detect rule must state at least one condition")]
    EmptyRule,
    #[error("detect rule names field {0}, for which the profile lists no keys")]
    RuleFieldWithoutKeys(Field),
    #[error("defined twice in the same file")]
    Duplicate,
    #[error("endpoints need clusterLabel or clusterFromSecretName, and a host for rw, ro or r")]
    EndpointsIncomplete,
    #[error(
        "endpoints.pooler: give either profile (a profile reading the pooler's keys) or service (containing {{pooler}})"
    )]
    PoolerIncomplete,
    #[error("endpoint {0}: the host template must contain {{cluster}}")]
    EndpointWithoutCluster(&'static str),
    #[error("tls: {key:?} is not a valid Secret key")]
    BadTlsKey { key: String },
    #[error(
        "tls.caSecret: the name must contain {{cluster}}, and the profile needs endpoints (clusterLabel or clusterFromSecretName) to find the cluster"
    )]
    CaSecretWithoutCluster,
}

/// What a field's `template` writes for the part of the Secret's name its pattern captured.
pub const MATCH_PLACEHOLDER: &str = "{match}";

impl FieldSource {
    /// The value derived from a Secret's name: the pattern's capture, through the template.
    pub fn derive_from_name(&self, secret_name: &str) -> Option<String> {
        let captured = self.from_secret_name.as_ref()?.extract(secret_name)?;
        Some(match &self.template {
            Some(template) => template.replace(MATCH_PLACEHOLDER, captured),
            None => captured.to_owned(),
        })
    }
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

    /// Every key this profile reads for `field`, for detection and messages.
    pub fn keys_of(&self, field: Field) -> impl Iterator<Item = &str> {
        self.field(field).into_iter().flat_map(|source| {
            source
                .keys
                .iter()
                .chain(&source.keys_for_other_user)
                .map(String::as_str)
        })
    }

    /// Checks what serde cannot: names, and that every field and rule can be satisfied at all.
    pub(super) fn validate(&self) -> Result<(), InvalidProfile> {
        if !is_dns_label(&self.name, 63) {
            return Err(InvalidProfile::Name);
        }
        if self.name == AUTO {
            return Err(InvalidProfile::ReservedName);
        }
        for (field, source) in &self.fields {
            if source.keys.is_empty()
                && source.keys_for_other_user.is_empty()
                && source.from_secret_name.is_none()
                && source.default.is_none()
            {
                return Err(InvalidProfile::FieldWithoutSource(*field));
            }
            if let Some(template) = &source.template
                && (source.from_secret_name.is_none() || !template.contains(MATCH_PLACEHOLDER))
            {
                return Err(InvalidProfile::TemplateWithoutMatch(*field));
            }
            if matches!(field, Field::Password | Field::Uri)
                && (source.default.is_some() || source.from_secret_name.is_some())
            {
                return Err(InvalidProfile::CredentialNotFromKeys(*field));
            }
            let bad_key = source
                .keys
                .iter()
                .chain(&source.keys_for_other_user)
                .find(|key| !is_secret_key(key));
            if let Some(key) = bad_key {
                return Err(InvalidProfile::BadKey {
                    field: *field,
                    key: key.clone(),
                });
            }
        }
        if let Some(endpoints) = &self.endpoints {
            if (endpoints.cluster_label.is_none() && endpoints.cluster_from_secret_name.is_none())
                || endpoints.roles().is_empty()
            {
                return Err(InvalidProfile::EndpointsIncomplete);
            }
            if let Some(pooler) = &endpoints.pooler {
                let service_ok = pooler
                    .service
                    .as_ref()
                    .is_some_and(|service| service.contains(POOLER_PLACEHOLDER));
                if service_ok == pooler.profile.is_some()
                    || (pooler.service.is_some() && !service_ok)
                {
                    return Err(InvalidProfile::PoolerIncomplete);
                }
            }
            let service_roles = endpoints
                .roles()
                .into_iter()
                .filter(|role| *role != "pooler");
            if let Some(role) = service_roles.into_iter().find(|role| {
                !endpoints
                    .template(role)
                    .is_some_and(|t| t.contains(CLUSTER_PLACEHOLDER))
            }) {
                return Err(InvalidProfile::EndpointWithoutCluster(role));
            }
        }
        let tls = &self.tls;
        let ca_secret_key = tls.ca_secret.as_ref().map(|ca| &ca.key);
        if let Some(key) = tls
            .ca_keys
            .iter()
            .chain(&tls.cert_keys)
            .chain(&tls.key_keys)
            .chain(ca_secret_key)
            .find(|key| !is_secret_key(key))
        {
            return Err(InvalidProfile::BadTlsKey { key: key.clone() });
        }
        if let Some(ca) = &tls.ca_secret
            && (!ca.name.contains(CLUSTER_PLACEHOLDER) || self.endpoints.is_none())
        {
            return Err(InvalidProfile::CaSecretWithoutCluster);
        }
        for rule in &self.detect {
            if rule.states_nothing() {
                return Err(InvalidProfile::EmptyRule);
            }
            if let Some(field) = rule
                .fields
                .iter()
                .find(|f| self.keys_of(**f).next().is_none())
            {
                return Err(InvalidProfile::RuleFieldWithoutKeys(*field));
            }
        }
        Ok(())
    }
}

impl DetectRule {
    fn states_nothing(&self) -> bool {
        self.secret_type.is_none()
            && self.labels.is_empty()
            && self.name.is_none()
            && self.owner.is_none()
            && self.keys.is_empty()
            && self.any_key.is_empty()
            && self.only_keys.is_empty()
            && self.fields.is_empty()
    }
}
