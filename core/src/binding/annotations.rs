//! Parsing and validating a pod's `dbbind.io/` annotations (docs/design.md §2, §5).
//!
//! Every problem is an [`AnnotationError`] naming the annotation at fault and what is allowed.
//! Values of annotations dbbind does not know are never echoed: a typo such as
//! `dbbind.io/pasword` may hold a credential.

use std::collections::BTreeMap;

use super::{
    BindingRequest, BindingRequests, EndpointRole, OnConflict, PodRequest, TlsObject, TlsRef,
};
use crate::env_set::{EnvSet, EnvSets, NO_SETS};
use crate::field::Field;
use crate::keys::{self, BINDING_KEYS, DEFAULT_BINDING_NAME, POD_KEYS, pod_key};
use crate::message::{Denial, echo};
use crate::names::{is_dns_label, is_dns_subdomain, is_secret_key};
use crate::profile::{AUTO, ProfileSet};

/// The key a CA is read from when `dbbind.io/ca` names none.
pub const DEFAULT_CA_KEY: &str = "ca.crt";
const MAX_ALIAS_LEN: usize = 30;
const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotationError {
    #[error(
        "annotation {} is not allowed: a password must come from a Secret; name it in dbbind.io/secret (and map an unusual key name with dbbind.io/keys: password=<key>)",
        echo(.key)
    )]
    Password { key: String },
    #[error("unknown annotation {}; known annotations: {known}", echo(.key))]
    Unknown { key: String, known: String },
    #[error(
        "annotation {}: dbbind.io/{base} applies to the whole pod and takes no \".<alias>\" suffix",
        echo(.key)
    )]
    PodKeyWithAlias { key: String, base: String },
    #[error(
        "annotation {}: alias {} must be a DNS label of at most 30 characters ([a-z0-9]([-a-z0-9]*[a-z0-9])?)",
        echo(.key),
        echo(.alias)
    )]
    BadAlias { key: String, alias: String },
    #[error(
        "annotation {}: alias \"db\" is the default binding's name; use the annotations without a suffix",
        echo(.key)
    )]
    ReservedAlias { key: String },
    #[error("annotation {}: {problem}", echo(.key))]
    BadValue { key: String, problem: String },
    #[error("binding {binding:?} has {keys} but no {secret_key} naming its Secret")]
    BindingWithoutSecret {
        binding: String,
        keys: String,
        secret_key: String,
    },
    #[error(
        "{keys} given, but no binding is declared; add dbbind.io/secret naming the Secret to bind"
    )]
    NoBinding { keys: String },
}

impl From<AnnotationError> for Denial {
    fn from(error: AnnotationError) -> Denial {
        Denial::new(error)
    }
}

/// Reads a pod's annotations into what it asks for.
pub fn parse_annotations(
    annotations: &BTreeMap<String, String>,
    profiles: &ProfileSet,
) -> Result<PodRequest, AnnotationError> {
    // Opting out wins over everything else, even over malformed neighbours: the pod's owner
    // said "leave this pod alone".
    if let Some(value) = annotations.get(keys::INJECT) {
        match value.as_str() {
            "false" => return Ok(PodRequest::OptedOut),
            "true" => {}
            _ => {
                return Err(bad_value(
                    keys::INJECT,
                    format!("{} is not allowed; use \"true\" or \"false\"", echo(value)),
                ));
            }
        }
    }

    let mut drafts: BTreeMap<Option<String>, Draft> = BTreeMap::new();
    let mut containers = None;
    let mut on_conflict = OnConflict::default();
    let mut restart_on_rotation = false;
    let mut pod_keys_seen = Vec::new();

    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(keys::PREFIX) else {
            continue;
        };
        if keys::is_written_by_dbbind(key) {
            continue;
        }
        let (base, alias) = match name.split_once('.') {
            Some((base, alias)) => (base, Some(alias)),
            None => (name, None),
        };
        if base == "password" {
            return Err(AnnotationError::Password { key: key.clone() });
        }
        if POD_KEYS.contains(&base) {
            if alias.is_some() {
                return Err(AnnotationError::PodKeyWithAlias {
                    key: key.clone(),
                    base: base.to_owned(),
                });
            }
            pod_keys_seen.push(key.clone());
            match base {
                pod_key::CONTAINERS => containers = Some(parse_containers(key, value)?),
                pod_key::ON_CONFLICT => on_conflict = parse_on_conflict(key, value)?,
                pod_key::RESTART_ON_ROTATION => restart_on_rotation = parse_bool(key, value)?,
                _ => {} // inject: handled above
            }
            continue;
        }
        if !BINDING_KEYS.contains(&base) {
            return Err(AnnotationError::Unknown {
                key: key.clone(),
                known: known_keys(),
            });
        }
        if let Some(alias) = alias {
            if alias == DEFAULT_BINDING_NAME {
                return Err(AnnotationError::ReservedAlias { key: key.clone() });
            }
            if !is_dns_label(alias, MAX_ALIAS_LEN) {
                return Err(AnnotationError::BadAlias {
                    key: key.clone(),
                    alias: alias.to_owned(),
                });
            }
        }
        let draft = drafts.entry(alias.map(str::to_owned)).or_default();
        draft.keys_seen.push(key.clone());
        draft.apply(base, key, value, alias.is_some(), profiles)?;
    }

    if drafts.is_empty() {
        return match pod_keys_seen.as_slice() {
            [] => Ok(PodRequest::NotRequested),
            // `inject: "true"` alone asks for nothing that could be wrong.
            [only] if only == keys::INJECT => Ok(PodRequest::NotRequested),
            keys => Err(AnnotationError::NoBinding {
                keys: keys.join(", "),
            }),
        };
    }

    let mut bindings = Vec::with_capacity(drafts.len());
    for (alias, draft) in drafts {
        bindings.push(draft.finish(alias)?);
    }
    Ok(PodRequest::Bind(BindingRequests {
        bindings,
        containers,
        on_conflict,
        restart_on_rotation,
    }))
}

fn known_keys() -> String {
    let binding = BINDING_KEYS
        .iter()
        .map(|k| format!("{}[.<alias>]", keys::binding_key(k, None)));
    let pod = POD_KEYS.iter().map(|k| keys::binding_key(k, None));
    binding.chain(pod).collect::<Vec<_>>().join(", ")
}

fn bad_value(key: &str, problem: String) -> AnnotationError {
    AnnotationError::BadValue {
        key: key.to_owned(),
        problem,
    }
}

/// A binding being assembled from its annotations.
#[derive(Default)]
struct Draft {
    keys_seen: Vec<String>,
    secret: Option<String>,
    profile: Option<String>,
    literals: BTreeMap<Field, String>,
    keys: BTreeMap<Field, String>,
    env: Option<EnvSets>,
    files: bool,
    endpoint: Option<EndpointRole>,
    pooler: Option<String>,
    ca: Option<TlsRef>,
    client_cert: Option<String>,
}

impl Draft {
    fn apply(
        &mut self,
        base: &str,
        key: &str,
        value: &str,
        named: bool,
        profiles: &ProfileSet,
    ) -> Result<(), AnnotationError> {
        match base {
            "secret" => self.secret = Some(parse_secret_name(key, value)?),
            "profile" => self.profile = parse_profile(key, value, profiles)?,
            "keys" => self.keys = parse_key_map(key, value)?,
            "env" => self.env = Some(parse_env(key, value, named)?),
            "files" => self.files = parse_bool(key, value)?,
            "endpoint" => self.endpoint = Some(parse_endpoint(key, value)?),
            "pooler" => self.pooler = Some(parse_pooler(key, value)?),
            "ca" => self.ca = Some(parse_ca(key, value)?),
            "client-cert" => self.client_cert = Some(parse_secret_name(key, value)?),
            _ => {
                if let Some(field) = Field::from_name(base) {
                    let literal = parse_literal(field, key, value)?;
                    self.literals.insert(field, literal);
                }
            }
        }
        Ok(())
    }

    fn finish(self, alias: Option<String>) -> Result<BindingRequest, AnnotationError> {
        let Some(secret) = self.secret else {
            let binding = alias.as_deref().unwrap_or(DEFAULT_BINDING_NAME).to_owned();
            let secret_key = keys::binding_key("secret", alias.as_deref());
            return Err(AnnotationError::BindingWithoutSecret {
                binding,
                keys: self.keys_seen.join(", "),
                secret_key,
            });
        };
        if self.pooler.is_some() && self.endpoint != Some(EndpointRole::Pooler) {
            let pooler_key = keys::binding_key("pooler", alias.as_deref());
            let endpoint_key = keys::binding_key("endpoint", alias.as_deref());
            return Err(bad_value(
                &pooler_key,
                format!(
                    "names the pooler for {endpoint_key}: pooler, which this binding does not ask for"
                ),
            ));
        }
        Ok(BindingRequest {
            alias,
            secret,
            profile: self.profile,
            literals: self.literals,
            keys: self.keys,
            env: self.env.unwrap_or_else(EnvSets::postgres_only),
            files: self.files,
            endpoint: self.endpoint,
            pooler: self.pooler,
            ca: self.ca,
            client_cert: self.client_cert,
        })
    }
}

/// `secret:<name>[/<key>]` or `configmap:<name>[/<key>]`; the key defaults to `ca.crt`.
fn parse_ca(key: &str, value: &str) -> Result<TlsRef, AnnotationError> {
    let usage =
        "use secret:<name>[/<key>] or configmap:<name>[/<key>] (the key defaults to ca.crt)";
    let Some((kind, rest)) = value.split_once(':') else {
        return Err(bad_value(
            key,
            format!("{} is not a CA source; {usage}", echo(value)),
        ));
    };
    let (name, ca_key) = rest.split_once('/').unwrap_or((rest, DEFAULT_CA_KEY));
    if !is_dns_subdomain(name) {
        return Err(bad_value(
            key,
            format!(
                "{} is not a valid object name (a DNS subdomain: lower case letters, digits, '-' and '.'); {usage}",
                echo(name)
            ),
        ));
    }
    if !is_secret_key(ca_key) {
        return Err(bad_value(
            key,
            format!(
                "{} is not a valid key (letters, digits, '-', '_' and '.'); {usage}",
                echo(ca_key)
            ),
        ));
    }
    let object = match kind {
        "secret" => TlsObject::Secret(name.to_owned()),
        "configmap" => TlsObject::ConfigMap(name.to_owned()),
        _ => {
            return Err(bad_value(
                key,
                format!("{} is not a CA source kind; {usage}", echo(kind)),
            ));
        }
    };
    Ok(TlsRef {
        object,
        key: ca_key.to_owned(),
    })
}

fn parse_secret_name(key: &str, value: &str) -> Result<String, AnnotationError> {
    if value.is_empty() {
        return Err(bad_value(
            key,
            "must name a Secret in the pod's namespace".to_owned(),
        ));
    }
    if !is_dns_subdomain(value) {
        return Err(bad_value(
            key,
            format!(
                "{} is not a valid Secret name (a DNS subdomain: lower case letters, digits, '-' and '.')",
                echo(value)
            ),
        ));
    }
    Ok(value.to_owned())
}

fn parse_profile(
    key: &str,
    value: &str,
    profiles: &ProfileSet,
) -> Result<Option<String>, AnnotationError> {
    if value == AUTO {
        return Ok(None);
    }
    if profiles.get(value).is_none() {
        return Err(bad_value(
            key,
            format!(
                "unknown profile {}; profiles: {AUTO}, {}",
                echo(value),
                profiles.names().join(", ")
            ),
        ));
    }
    Ok(Some(value.to_owned()))
}

fn parse_literal(field: Field, key: &str, value: &str) -> Result<String, AnnotationError> {
    let problem = match field {
        Field::Port => match value.parse::<u16>() {
            Ok(port) if port > 0 && value.bytes().all(|b| b.is_ascii_digit()) => None,
            _ => Some(format!("{} is not a port number (1-65535)", echo(value))),
        },
        Field::Sslmode => (!SSLMODES.contains(&value)).then(|| {
            format!(
                "{} is not an sslmode; use one of {}",
                echo(value),
                SSLMODES.join(", ")
            )
        }),
        Field::Host => (value.is_empty()
            || value.len() > 253
            || value.contains(char::is_whitespace))
        .then(|| {
            "must be a host name or address without spaces, at most 253 characters".to_owned()
        }),
        _ => (value.is_empty() || value.len() > 63 || value.contains(char::is_control))
            .then(|| format!("must be a {field} name of 1 to 63 characters")),
    };
    match problem {
        Some(problem) => Err(bad_value(key, problem)),
        None => Ok(value.to_owned()),
    }
}

/// Comma-separated items, trimmed; an empty item is an error.
fn split_list<'a>(key: &str, value: &'a str) -> Result<Vec<&'a str>, AnnotationError> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(bad_value(
            key,
            format!("{} has an empty entry", echo(value)),
        ));
    }
    Ok(items)
}

fn parse_key_map(key: &str, value: &str) -> Result<BTreeMap<Field, String>, AnnotationError> {
    let mut map = BTreeMap::new();
    for item in split_list(key, value)? {
        let Some((field_name, secret_key)) = item.split_once('=') else {
            return Err(bad_value(
                key,
                format!("{} is not a field=secretKey pair", echo(item)),
            ));
        };
        let (field_name, secret_key) = (field_name.trim(), secret_key.trim());
        let Some(field) = Field::from_name(field_name) else {
            return Err(bad_value(
                key,
                format!(
                    "unknown field {}; fields: {}",
                    echo(field_name),
                    crate::field::join_fields(&Field::ALL)
                ),
            ));
        };
        if !is_secret_key(secret_key) {
            return Err(bad_value(
                key,
                format!(
                    "{} is not a valid Secret key ([-._a-zA-Z0-9]+)",
                    echo(secret_key)
                ),
            ));
        }
        if map.insert(field, secret_key.to_owned()).is_some() {
            return Err(bad_value(key, format!("field {field} is mapped twice")));
        }
    }
    Ok(map)
}

fn parse_env(key: &str, value: &str, named: bool) -> Result<EnvSets, AnnotationError> {
    let mut sets = EnvSets::NONE;
    let items = split_list(key, value)?;
    for item in &items {
        if *item == NO_SETS {
            if items.len() == 1 {
                continue;
            }
            return Err(bad_value(
                key,
                format!("\"{NO_SETS}\" cannot be combined with other sets"),
            ));
        }
        let Some(set) = EnvSet::from_name(item) else {
            let names: Vec<&str> = EnvSet::ALL.iter().map(|set| set.name()).collect();
            return Err(bad_value(
                key,
                format!(
                    "unknown set {}; use {} or {NO_SETS}",
                    echo(item),
                    names.join(", ")
                ),
            ));
        };
        if let (true, Some(why)) = (named, set.default_binding_only()) {
            return Err(bad_value(key, why.to_owned()));
        }
        if !sets.insert(set) {
            return Err(bad_value(key, format!("{} is listed twice", echo(item))));
        }
    }
    Ok(sets)
}

fn parse_endpoint(key: &str, value: &str) -> Result<EndpointRole, AnnotationError> {
    EndpointRole::from_name(value).ok_or_else(|| {
        bad_value(
            key,
            format!(
                "{} is not an endpoint role; use rw (the primary), ro (replicas), r (any instance) or pooler (the operator's connection pooler)",
                echo(value)
            ),
        )
    })
}

/// The name of the operator's pooler resource (a DNS label, as its Service's name is).
fn parse_pooler(key: &str, value: &str) -> Result<String, AnnotationError> {
    if !is_dns_label(value, 63) {
        return Err(bad_value(
            key,
            format!(
                "{} is not a pooler name (the name of the operator's Pooler, a DNS label)",
                echo(value)
            ),
        ));
    }
    Ok(value.to_owned())
}

fn parse_bool(key: &str, value: &str) -> Result<bool, AnnotationError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_value(
            key,
            format!("{} is not allowed; use \"true\" or \"false\"", echo(value)),
        )),
    }
}

fn parse_containers(key: &str, value: &str) -> Result<Vec<String>, AnnotationError> {
    let mut names: Vec<String> = Vec::new();
    for item in split_list(key, value)? {
        if !is_dns_label(item, 63) {
            return Err(bad_value(
                key,
                format!("{} is not a container name", echo(item)),
            ));
        }
        if names.iter().any(|name| name == item) {
            return Err(bad_value(
                key,
                format!("container {} is listed twice", echo(item)),
            ));
        }
        names.push(item.to_owned());
    }
    Ok(names)
}

fn parse_on_conflict(key: &str, value: &str) -> Result<OnConflict, AnnotationError> {
    match value {
        "keep" => Ok(OnConflict::Keep),
        "deny" => Ok(OnConflict::Deny),
        _ => Err(bad_value(
            key,
            format!("{} is not allowed; use \"keep\" or \"deny\"", echo(value)),
        )),
    }
}

#[cfg(test)]
mod tests;
