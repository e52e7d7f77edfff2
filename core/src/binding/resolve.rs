//! Resolving a binding: which Secret key or literal provides each field (docs/design.md §3–§5).

use std::collections::BTreeMap;

use super::tls::{TlsSource, resolve_tls};
use super::{BindingRequest, EndpointRole};
use crate::env_set::BindingShape;
use crate::field::{Field, TlsFile, join_fields};
use crate::message::{Denial, Warning, clip, echo};
use crate::profile::{
    CLUSTER_PLACEHOLDER, FieldSource, POOLER_PLACEHOLDER, PoolerEndpoint, Profile, ProfileSet,
};
use crate::secret::{SecretLookup, SecretView};

/// Where one injected value comes from. Never the value of a Secret key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// A reference to a key of the binding's Secret. `optional` when the Secret was not found
    /// and the field is not required, so a Secret created later without that key does not keep
    /// the pod from starting.
    SecretKey { key: String, optional: bool },
    /// A non-secret literal: an annotation, a profile default, or a value derived from the
    /// Secret's name.
    Literal(String),
}

/// A binding with every field's source decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBinding {
    pub request: BindingRequest,
    /// The profile used (the detected one under `auto`).
    pub profile: String,
    pub fields: BTreeMap<Field, ValueSource>,
    /// TLS files to project (docs/design.md §9), in [`TlsFile`] order.
    pub tls: Vec<TlsSource>,
}

impl ResolvedBinding {
    pub fn source(&self, field: Field) -> Option<&ValueSource> {
        self.fields.get(&field)
    }

    /// What the binding's name sets depend on.
    pub fn shape(&self) -> BindingShape<'_> {
        BindingShape {
            alias: self.request.alias.as_deref(),
            has_uri: self.fields.contains_key(&Field::Uri),
        }
    }

    /// Whether the binding has a volume: its files were asked for, or it has TLS files.
    pub fn has_volume(&self) -> bool {
        self.request.files || !self.tls.is_empty()
    }

    pub fn has_tls(&self, file: TlsFile) -> bool {
        self.tls.iter().any(|source| source.file == file)
    }
}

/// The sslmode a bound CA implies when nothing names one: the CA is there to be checked.
pub const SSLMODE_WITH_CA: &str = "verify-full";

/// Resolves one binding against the Secrets of `namespace`. Warnings are appended to `warnings`.
pub fn resolve(
    request: &BindingRequest,
    namespace: &str,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
    warnings: &mut Vec<Warning>,
) -> Result<ResolvedBinding, Denial> {
    let secret = secrets.get(namespace, &request.secret);
    let profile = choose_profile(request, namespace, secret.as_ref(), profiles)?;

    let (endpoint, profile) = match endpoint(request, profile, secret.as_ref(), profiles)? {
        Some(Endpoint::Host(host)) => (Some(host), profile),
        // The pooler's own keys, through the profile that reads them.
        Some(Endpoint::Profile(pooled)) => (None, pooled),
        None => (None, profile),
    };
    let mut fields = BTreeMap::new();
    let mut missing = Vec::new();
    for field in Field::ALL {
        let source = match (&endpoint, field) {
            (Some(host), Field::Host) => Some(ValueSource::Literal(host.clone())),
            // The Secret's URI names the primary; another role's URL is composed instead.
            (Some(_), Field::Uri) if request.endpoint != Some(EndpointRole::ReadWrite) => None,
            _ => field_source(request, profile, secret.as_ref(), field)?,
        };
        match source {
            Some(source) => {
                fields.insert(field, source);
            }
            None if profile.required.contains(&field) => {
                return Err(required_field_denial(
                    request,
                    profile,
                    secret.as_ref(),
                    field,
                ));
            }
            None => missing.push(field),
        }
    }

    let tls = resolve_tls(
        request,
        profile,
        secret.as_ref(),
        namespace,
        secrets,
        warnings,
    )?;
    let has_ca = tls.iter().any(|source| source.file == TlsFile::RootCert);
    if has_ca && !fields.contains_key(&Field::Sslmode) {
        fields.insert(
            Field::Sslmode,
            ValueSource::Literal(SSLMODE_WITH_CA.to_owned()),
        );
        missing.retain(|field| *field != Field::Sslmode);
    }
    if let Some(ValueSource::Literal(mode)) = fields.get(&Field::Sslmode)
        && mode.starts_with("verify-")
        && !has_ca
    {
        warnings.push(Warning::new(format!(
            "binding {:?}: sslmode {mode} with no CA bound: libpq then reads ~/.postgresql/root.crt in the container, and fails if the image has none; bind the CA with {:?} (secret:<name>[/<key>] or configmap:<name>[/<key>])",
            request.name(),
            request.annotation("ca")
        )));
    }

    if secret.is_none() {
        warnings.push(Warning::new(format!(
            "Secret {:?} not found in namespace {namespace:?}; the pod refers to it through profile {:?} and starts once it exists",
            request.secret, profile.name
        )));
    }
    if !missing.is_empty() {
        warnings.push(Warning::new(format!(
            "binding {:?}: profile {:?} finds no {} in Secret {:?}; left out",
            request.name(),
            profile.name,
            join_fields(&missing),
            request.secret
        )));
    }
    if let Some(ValueSource::SecretKey { key, .. }) = fields.get(&Field::Uri) {
        let overridden: Vec<String> = [Field::Host, Field::Port, Field::Database, Field::User]
            .into_iter()
            .filter(|field| request.literals.contains_key(field))
            .map(|field| request.annotation(field.name()))
            .collect();
        if !overridden.is_empty() {
            warnings.push(Warning::new(format!(
                "binding {:?}: the URI comes from key {:?} of Secret {:?} and does not reflect {}",
                request.name(),
                key,
                request.secret,
                overridden.join(", ")
            )));
        }
    }

    Ok(ResolvedBinding {
        request: request.clone(),
        profile: profile.name.clone(),
        fields,
        tls,
    })
}

fn choose_profile<'p>(
    request: &BindingRequest,
    namespace: &str,
    secret: Option<&SecretView>,
    profiles: &'p ProfileSet,
) -> Result<&'p Profile, Denial> {
    if let Some(name) = &request.profile {
        // Annotation parsing already checked the name against this same set.
        return profiles.get(name).ok_or_else(|| {
            Denial::new(format!(
                "annotation {:?}: unknown profile {}",
                request.annotation("profile"),
                echo(name)
            ))
        });
    }
    let Some(secret) = secret else {
        return Err(Denial::about_secret(format!(
            "Secret {:?} not found in namespace {namespace:?}: cannot detect a profile for a missing Secret; create the Secret first, or name a profile in {:?}",
            request.secret,
            request.annotation("profile")
        )));
    };
    profiles.detect(secret).ok_or_else(|| {
        Denial::about_secret(format!(
            "cannot detect a profile for Secret {:?} (type {}, keys {}); tried: {}; name a profile in {:?}",
            secret.name,
            clip(&secret.secret_type),
            secret.key_list(),
            profiles.detection_summary(),
            request.annotation("profile")
        ))
    })
}

/// What `dbbind.io/endpoint` changes: the host (a role's Service), or, for a pooler read from
/// the Secret's own keys, the profile the fields are read with.
enum Endpoint<'p> {
    Host(String),
    Profile(&'p Profile),
}

/// The host of `dbbind.io/endpoint`'s role: the profile's Service for that role, named after
/// the database cluster, or its pooler. `None` without the annotation.
fn endpoint<'p>(
    request: &BindingRequest,
    profile: &Profile,
    secret: Option<&SecretView>,
    profiles: &'p ProfileSet,
) -> Result<Option<Endpoint<'p>>, Denial> {
    let Some(role) = request.endpoint else {
        return Ok(None);
    };
    let key = request.annotation("endpoint");
    let Some(endpoints) = &profile.endpoints else {
        let supporting: Vec<&str> = profiles
            .iter()
            .filter(|p| p.endpoints.is_some())
            .map(|p| p.name.as_str())
            .collect();
        return Err(Denial::new(format!(
            "annotation {key:?}: profile {:?} has no endpoint roles; profiles that have them: {}",
            profile.name,
            supporting.join(", ")
        )));
    };
    let unknown_role = || {
        Denial::new(format!(
            "annotation {key:?}: profile {:?} has no {:?} endpoint; its roles: {}",
            profile.name,
            role.name(),
            endpoints.roles().join(", ")
        ))
    };
    if request.literals.contains_key(&Field::Host) {
        return Err(Denial::new(format!(
            "annotations {key:?} and {:?} both choose the host; keep one",
            request.annotation("host")
        )));
    }
    if role == EndpointRole::Pooler {
        let pooler = endpoints.pooler.as_ref().ok_or_else(unknown_role)?;
        return pooler_endpoint(request, profile, pooler, profiles).map(Some);
    }
    let template = endpoints.template(role.name()).ok_or_else(unknown_role)?;
    let cluster = endpoints
        .cluster(secret.map(|s| &s.labels), &request.secret)
        .ok_or_else(|| {
            let label = endpoints
                .cluster_label
                .as_deref()
                .map(|label| format!("no label {label:?} and "))
                .unwrap_or_default();
            Denial::about_secret(format!(
                "annotation {key:?}: cannot tell the database cluster of Secret {:?}: it has {label}a name profile {:?} does not recognise; set {:?} instead",
                request.secret,
                profile.name,
                request.annotation("host")
            ))
        })?;
    Ok(Some(Endpoint::Host(
        template.replace(CLUSTER_PLACEHOLDER, cluster),
    )))
}

/// `dbbind.io/endpoint: pooler`: the pooler's keys through another profile, or its Service
/// named by `dbbind.io/pooler`.
fn pooler_endpoint<'p>(
    request: &BindingRequest,
    profile: &Profile,
    pooler: &PoolerEndpoint,
    profiles: &'p ProfileSet,
) -> Result<Endpoint<'p>, Denial> {
    let key = request.annotation("endpoint");
    if let Some(name) = &pooler.profile {
        return profiles.get(name).map(Endpoint::Profile).ok_or_else(|| {
            Denial::new(format!(
                "annotation {key:?}: profile {:?} reaches its pooler through profile {name:?}, which is not defined",
                profile.name
            ))
        });
    }
    let service = pooler.service.as_deref().unwrap_or(POOLER_PLACEHOLDER);
    let Some(name) = &request.pooler else {
        return Err(Denial::new(format!(
            "annotation {key:?}: profile {:?} reaches the operator's pooler by its name: set {:?} to the pooler's name",
            profile.name,
            request.annotation("pooler")
        )));
    };
    Ok(Endpoint::Host(service.replace(POOLER_PLACEHOLDER, name)))
}

/// One field's source, in the order: annotation literal, `dbbind.io/keys`, the profile's keys,
/// a value derived from the Secret's name, the profile's default.
fn field_source(
    request: &BindingRequest,
    profile: &Profile,
    secret: Option<&SecretView>,
    field: Field,
) -> Result<Option<ValueSource>, Denial> {
    if let Some(literal) = request.literals.get(&field) {
        return Ok(Some(ValueSource::Literal(literal.clone())));
    }
    if let Some(key) = request.keys.get(&field) {
        if let Some(secret) = secret
            && !secret.has_key(key)
        {
            return Err(Denial::about_secret(format!(
                "annotation {:?} maps {field} to key {:?}, which Secret {:?} does not have; keys present: {}",
                request.annotation("keys"),
                key,
                secret.name,
                secret.key_list()
            )));
        }
        // Named explicitly by the user: a reference the kubelet must resolve.
        return Ok(Some(ValueSource::SecretKey {
            key: key.clone(),
            optional: false,
        }));
    }
    let Some(source) = profile.field(field) else {
        return Ok(None);
    };
    let keys = keys_to_try(request, profile, source, field);
    let from_keys = match secret {
        Some(secret) => {
            keys.iter()
                .find(|key| secret.has_key(key))
                .map(|key| ValueSource::SecretKey {
                    key: (*key).clone(),
                    optional: false,
                })
        }
        // The Secret is not there yet: refer to the first key the profile would read.
        None => keys.first().map(|key| ValueSource::SecretKey {
            key: (*key).clone(),
            optional: !profile.required.contains(&field),
        }),
    };
    if from_keys.is_some() {
        return Ok(from_keys);
    }
    let derived = source
        .derive_from_name(&request.secret)
        .map(ValueSource::Literal);
    Ok(derived.or_else(|| source.default.clone().map(ValueSource::Literal)))
}

/// A profile's keys for a field. For a user other than the profile's default user, the keys
/// that hold that user's password come first (Bitnami's `password` beside `postgres-password`).
fn keys_to_try<'p>(
    request: &BindingRequest,
    profile: &'p Profile,
    source: &'p FieldSource,
    field: Field,
) -> Vec<&'p String> {
    let other_user = match (request.literals.get(&Field::User), profile.default_user()) {
        (Some(user), Some(default_user)) => user != default_user,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if field == Field::Password && other_user && !source.keys_for_other_user.is_empty() {
        return source.keys_for_other_user.iter().collect();
    }
    source.keys.iter().collect()
}

fn required_field_denial(
    request: &BindingRequest,
    profile: &Profile,
    secret: Option<&SecretView>,
    field: Field,
) -> Denial {
    let remedy = if Field::LITERAL_ANNOTATIONS.contains(&field) {
        format!(
            "set {:?}, or map a key with {:?}",
            request.annotation(field.name()),
            request.annotation("keys")
        )
    } else {
        format!(
            "map a key with {:?}: {field}=<key>",
            request.annotation("keys")
        )
    };
    let tried: Vec<&str> = profile.keys_of(field).collect();
    let looked = if tried.is_empty() {
        format!("profile {:?} reads it from no Secret key", profile.name)
    } else {
        let present = secret.map_or_else(|| "[]".to_owned(), SecretView::key_list);
        format!(
            "profile {:?} tried keys [{}] in Secret {:?}, which has keys {present}",
            profile.name,
            tried.join(", "),
            request.secret
        )
    };
    let message = format!(
        "binding {:?}: required field {field} has no source: {looked}; {remedy}",
        request.name(),
    );
    // With keys to try, a Secret that has one of them would do; without, only annotations can.
    if tried.is_empty() {
        Denial::new(message)
    } else {
        Denial::about_secret(message)
    }
}
