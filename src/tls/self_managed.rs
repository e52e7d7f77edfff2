//! Self-managed certificates: dbbind makes its own CA and short-lived serving certificate, keeps
//! them in a Secret of its namespace, keeps the `caBundle` of its webhook configurations (the
//! Pod webhook's MutatingWebhookConfiguration and the workload check's
//! ValidatingWebhookConfiguration) current, and rotates before expiry.
//!
//! Several replicas run this at once. The Secret is the single source of truth and is written
//! with optimistic concurrency (create, or replace at the resourceVersion read): a replica that
//! loses a race re-reads and adopts the winner's certificates. Every replica reconciles the
//! webhook's `caBundle` to the Secret's bundle before it serves from it, so they converge. A
//! writer adds its new CA to the `caBundle` (merging, never dropping another writer's CA) and
//! waits for the API server to see it *before* it stores a certificate signed by that CA, and
//! the bundle keeps the previous CA while it is valid, so no replica serves a certificate the
//! API server does not trust yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::generate::{PemPair, SubjectNames, issue_serving, new_ca};
use super::{CertStore, OnLoaded, ServingCert, TlsError};
use crate::reload::Recheck;
use cert_facts::CertFacts;

pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const CA_BUNDLE_KEY: &str = "ca-bundle.crt";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// What the certificates must be.
#[derive(Clone, Debug)]
pub struct Policy {
    pub names: SubjectNames,
    pub serving_validity: Duration,
    pub ca_validity: Duration,
}

/// The certificate material kept in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    pub ca: PemPair,
    /// PEM certificates the API server should trust: the current CA, then older ones still valid.
    pub bundle: String,
    pub serving: PemPair,
}

/// What to do with the material found.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// New material, and why.
    Renew {
        material: Material,
        reason: String,
    },
}

/// Decides whether the material needs renewing. A certificate is renewed once two thirds of its
/// lifetime have passed; the serving certificate also when its names or its CA changed.
///
/// `trusted` is the bundle the webhook configuration carries now; it matters only when there is
/// no material (a first install, or a Secret deleted or emptied): its CAs that are still valid
/// stay in the new bundle, so the certificates other replicas still serve until their next pass
/// stay trusted instead of failing every admission they answer.
pub fn plan(
    existing: Option<&Material>,
    trusted: &str,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<Plan, TlsError> {
    let Some(existing) = existing else {
        let ca = new_ca(&ca_name(now), policy.ca_validity, now)?;
        let serving = issue_serving(&ca, &policy.names, policy.serving_validity, now)?;
        let bundle = merged(&ca.cert_pem, trusted, now);
        return Ok(Plan::Renew {
            material: Material {
                ca,
                bundle,
                serving,
            },
            reason: "no certificates yet".to_owned(),
        });
    };

    let ca = CertFacts::from_pem(existing.ca.cert_pem.as_bytes());
    let ca_reason = match &ca {
        Err(error) => Some(format!("the CA cannot be read ({error})")),
        Ok(ca) if ca.due(now, policy.ca_validity) => Some("the CA is due for rotation".to_owned()),
        Ok(_) => None,
    };
    if let Some(reason) = ca_reason {
        let new = new_ca(&ca_name(now), policy.ca_validity, now)?;
        let serving = issue_serving(&new, &policy.names, policy.serving_validity, now)?;
        let bundle = merged(&new.cert_pem, &existing.bundle, now);
        return Ok(Plan::Renew {
            material: Material {
                ca: new,
                bundle,
                serving,
            },
            reason,
        });
    }

    let serving_reason = match CertFacts::from_pem(existing.serving.cert_pem.as_bytes()) {
        Err(error) => Some(format!("the serving certificate cannot be read ({error})")),
        Ok(serving) if serving.due(now, policy.serving_validity) => {
            Some("the serving certificate is due for renewal".to_owned())
        }
        Ok(serving) if !serving.names_match(&policy.names) => {
            Some("the serving certificate's names changed".to_owned())
        }
        Ok(serving) if !ca.as_ref().is_ok_and(|ca| serving.issued_by(ca)) => {
            Some("the serving certificate is not signed by the current CA".to_owned())
        }
        Ok(_) => None,
    };
    let bundle = merged(&existing.ca.cert_pem, &existing.bundle, now);
    match serving_reason {
        Some(reason) => Ok(Plan::Renew {
            material: Material {
                ca: existing.ca.clone(),
                bundle,
                serving: issue_serving(&existing.ca, &policy.names, policy.serving_validity, now)?,
            },
            reason,
        }),
        None if bundle != existing.bundle => Ok(Plan::Renew {
            material: Material {
                bundle,
                ..existing.clone()
            },
            reason: "the CA bundle changed (an old CA expired)".to_owned(),
        }),
        None => Ok(Plan::Keep),
    }
}

fn ca_name(now: OffsetDateTime) -> String {
    format!("dbbind CA {}", now.unix_timestamp())
}

/// `bundle` as it is, followed by each CA of `more` that it lacks and that is still valid at
/// `now`: given the current CA and the old bundle, the current CA first, then every other
/// still-valid CA of the old bundle.
fn merged(bundle: &str, more: &str, now: OffsetDateTime) -> String {
    let mut known: Vec<_> = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .flatten()
        .collect();
    let mut pems = vec![bundle.trim_end().to_owned()];
    for der in CertificateDer::pem_slice_iter(more.as_bytes()).flatten() {
        let still_valid = super::not_after(&der).is_ok_and(|t| t > now.unix_timestamp());
        if still_valid && !known.contains(&der) {
            pems.push(to_pem(&der));
            known.push(der);
        }
    }
    let mut bundle = pems.join("\n");
    bundle.push('\n');
    bundle
}

/// PEM with LF line endings, like rcgen's: the pem crate defaults to CRLF, and a bundle should
/// not mix the two.
fn to_pem(der: &[u8]) -> String {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), lf)
        .trim_end()
        .to_owned()
}

/// Where the certificates live and which webhook trusts them.
#[derive(Clone, Debug)]
pub struct Location {
    pub namespace: String,
    pub secret_name: String,
    /// The MutatingWebhookConfiguration of the Pod webhook.
    pub webhook_config_name: String,
    /// The ValidatingWebhookConfiguration of the workload check, if installed.
    pub validating_webhook_config_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SelfManagedError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("Secret {0} lacks key {1}")]
    MissingKey(String, &'static str),
}

fn material_of(secret: &Secret) -> Result<Material, SelfManagedError> {
    let data = secret.data.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let get = |key: &'static str| {
        data.get(key)
            .map(|value| String::from_utf8_lossy(&value.0).into_owned())
            .ok_or_else(|| SelfManagedError::MissingKey(name.clone(), key))
    };
    Ok(Material {
        ca: PemPair {
            cert_pem: get(CA_CERT_KEY)?,
            key_pem: get(CA_KEY_KEY)?,
        },
        bundle: get(CA_BUNDLE_KEY)?,
        serving: PemPair {
            cert_pem: get(TLS_CERT_KEY)?,
            key_pem: get(TLS_KEY_KEY)?,
        },
    })
}

/// The certificate Secret holding `material`. An existing Secret keeps its metadata (another
/// tool's labels and annotations, such as Helm's ownership, and the resourceVersion read, for
/// optimistic concurrency); only its data changes.
fn secret_of(location: &Location, material: &Material, existing: Option<&Secret>) -> Secret {
    let entry = |value: &str| ByteString(value.as_bytes().to_vec());
    let data = BTreeMap::from([
        (CA_CERT_KEY.to_owned(), entry(&material.ca.cert_pem)),
        (CA_KEY_KEY.to_owned(), entry(&material.ca.key_pem)),
        (CA_BUNDLE_KEY.to_owned(), entry(&material.bundle)),
        (TLS_CERT_KEY.to_owned(), entry(&material.serving.cert_pem)),
        (TLS_KEY_KEY.to_owned(), entry(&material.serving.key_pem)),
    ]);
    let mut metadata = existing
        .map(|secret| secret.metadata.clone())
        .unwrap_or_else(|| ObjectMeta {
            name: Some(location.secret_name.clone()),
            namespace: Some(location.namespace.clone()),
            ..ObjectMeta::default()
        });
    metadata.managed_fields = None;
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .entry("app.kubernetes.io/managed-by".to_owned())
        .or_insert_with(|| "dbbind".to_owned());
    Secret {
        metadata,
        // The type is immutable: an existing Secret keeps its own.
        type_: existing
            .and_then(|secret| secret.type_.clone())
            .or_else(|| Some("kubernetes.io/tls".to_owned())),
        data: Some(data),
        ..Secret::default()
    }
}

/// A webhook configuration whose caBundles dbbind keeps current.
trait WebhookConfiguration:
    kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned + Serialize
{
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig>;
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        let webhooks = self.webhooks.iter_mut().flatten();
        webhooks.map(|webhook| &mut webhook.client_config).collect()
    }
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        let webhooks = self.webhooks.iter_mut().flatten();
        webhooks.map(|webhook| &mut webhook.client_config).collect()
    }
}

/// What a pass makes the webhooks' caBundles trust.
#[derive(Clone, Copy, Debug)]
enum Trust<'a> {
    /// Exactly the stored bundle: a pass that has the Secret (so an operator who removes a CA
    /// from `ca-bundle.crt` removes it from the webhooks too).
    Exactly(&'a str),
    /// The renewed bundle plus every still-valid CA a caBundle holds already: a writer, before
    /// it stores the Secret. Another replica may be renewing at the same moment, and until one
    /// of them has won the Secret neither's CA may be dropped, or the winner would serve a
    /// certificate the loser's write had just made untrusted.
    AtLeast(&'a str, OffsetDateTime),
}

impl Trust<'_> {
    fn bundle_for(self, current: &str) -> String {
        match self {
            Trust::Exactly(bundle) => bundle.to_owned(),
            Trust::AtLeast(bundle, now) => merged(bundle, current, now),
        }
    }
}

/// Write conflicts on a webhook configuration retried at once before a pass gives up.
const SYNC_ATTEMPTS: u32 = 3;

/// Brings every webhook's caBundle in the configuration `name` to what `trust` asks, re-reading
/// and retrying a write conflict at once. Returns the first webhook's caBundle as it was before
/// (empty when unset). A missing configuration is not an error (it may not be installed yet).
async fn sync_ca_bundle<K: WebhookConfiguration>(
    api: &Api<K>,
    name: &str,
    trust: Trust<'_>,
) -> Result<String, SelfManagedError> {
    let kind = K::kind(&());
    let mut attempt = 1;
    loop {
        let Some(mut config) = api.get_opt(name).await? else {
            tracing::warn!(webhook_configuration = %name, %kind, "webhook configuration not found; caBundle not set");
            return Ok(String::new());
        };
        let mut before = None;
        let mut changed = false;
        for client_config in config.client_configs() {
            let current = client_config
                .ca_bundle
                .as_ref()
                .map(|bundle| String::from_utf8_lossy(&bundle.0).into_owned())
                .unwrap_or_default();
            let wanted = trust.bundle_for(&current);
            if wanted != current {
                client_config.ca_bundle = Some(ByteString(wanted.into_bytes()));
                changed = true;
            }
            before.get_or_insert(current);
        }
        let before = before.unwrap_or_default();
        if !changed {
            return Ok(before);
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => {
                tracing::info!(webhook_configuration = %name, %kind, "caBundle updated");
                return Ok(before);
            }
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < SYNC_ATTEMPTS => {
                tracing::info!(webhook_configuration = %name, %kind, "caBundle update conflicted; re-reading");
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Keeps certificates current against the API server.
pub struct Manager {
    pub secrets: Api<Secret>,
    pub webhooks: Api<MutatingWebhookConfiguration>,
    /// Where the workload check's configuration is, when
    /// [`Location::validating_webhook_config_name`] names one.
    pub validating_webhooks: Api<ValidatingWebhookConfiguration>,
    pub location: Location,
    pub policy: Policy,
    pub store: Arc<CertStore>,
    /// Told the notAfter after each pass (the expiry metric).
    pub on_loaded: Option<OnLoaded>,
    /// How long a writer waits between adding a new CA to a caBundle that trusted another one
    /// and storing certificates signed by it ([`CA_SETTLE`] in `dbbind serve`).
    pub ca_settle: Duration,
}

/// The wait after a caBundle gains a CA (a rotation, or a deleted Secret regenerated): the API
/// server's view of webhook configurations lags writes by well under a second.
pub const CA_SETTLE: Duration = Duration::from_secs(2);

/// Whether `ca_pem` is new to a bundle that already trusted some CA: the case in which serving a
/// certificate signed by it too early would fail admissions. A first install trusts nothing yet
/// and serves nothing either, so it does not wait.
fn adds_a_ca(trusted: &str, ca_pem: &str) -> bool {
    let trusted: Vec<_> = CertificateDer::pem_slice_iter(trusted.as_bytes())
        .flatten()
        .collect();
    let Some(Ok(ca)) = CertificateDer::pem_slice_iter(ca_pem.as_bytes()).next() else {
        return false;
    };
    !trusted.is_empty() && !trusted.contains(&ca)
}

impl Manager {
    /// One pass: read the Secret, renew if due (webhook first, then the Secret), load the
    /// serving certificate, and bring the webhook's caBundle in line. Returns the notAfter served.
    pub async fn reconcile(&self) -> Result<i64, SelfManagedError> {
        loop {
            let found = self.secrets.get_opt(&self.location.secret_name).await?;
            let existing = match &found {
                Some(secret) => match material_of(secret) {
                    Ok(material) => Some(material),
                    Err(error) => {
                        tracing::warn!(%error, "certificate Secret is incomplete; replacing it");
                        None
                    }
                },
                None => None,
            };
            let trusted = match &existing {
                Some(material) => material.bundle.clone(),
                None => self.trusted_bundle().await?,
            };
            let material = match plan(
                existing.as_ref(),
                &trusted,
                &self.policy,
                OffsetDateTime::now_utc(),
            )? {
                Plan::Keep => existing.ok_or(SelfManagedError::MissingKey(
                    self.location.secret_name.clone(),
                    TLS_CERT_KEY,
                ))?,
                Plan::Renew { material, reason } => {
                    tracing::info!(%reason, secret = %self.location.secret_name, "renewing certificates");
                    let now = OffsetDateTime::now_utc();
                    let before = self
                        .sync_ca_bundle(Trust::AtLeast(&material.bundle, now))
                        .await?;
                    self.settle_if_new(&before, &material.ca.cert_pem, "storing")
                        .await;
                    let secret = secret_of(&self.location, &material, found.as_ref());
                    let written = match &found {
                        Some(_) => {
                            self.secrets
                                .replace(
                                    &self.location.secret_name,
                                    &PostParams::default(),
                                    &secret,
                                )
                                .await
                        }
                        None => self.secrets.create(&PostParams::default(), &secret).await,
                    };
                    match written {
                        Ok(_) => material,
                        // Another replica wrote first: adopt what it wrote.
                        Err(kube::Error::Api(status)) if status.code == 409 => {
                            tracing::info!(
                                "another replica updated the certificates first; re-reading"
                            );
                            continue;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            };
            let serving = ServingCert::from_pem(
                material.serving.cert_pem.as_bytes(),
                material.serving.key_pem.as_bytes(),
            )?;
            // The webhooks trust the Secret's bundle before this replica serves from it: a
            // pass of another replica that read the Secret just before it was renewed may have
            // set the caBundle back to the previous bundle.
            let before = self
                .sync_ca_bundle(Trust::Exactly(&material.bundle))
                .await?;
            self.settle_if_new(&before, &material.ca.cert_pem, "serving")
                .await;
            let not_after = serving.not_after;
            let changed = self
                .store
                .current()
                .is_none_or(|current| current.key.cert != serving.key.cert);
            if changed {
                self.store.set(serving);
                tracing::info!(
                    not_after,
                    "serving certificate loaded from the certificate Secret"
                );
            }
            return Ok(not_after);
        }
    }

    /// The Pod webhook's caBundle as it is now (empty when unset or not installed).
    async fn trusted_bundle(&self) -> Result<String, SelfManagedError> {
        let config = self
            .webhooks
            .get_opt(&self.location.webhook_config_name)
            .await?;
        Ok(config
            .and_then(|config| config.webhooks?.into_iter().next())
            .and_then(|webhook| webhook.client_config.ca_bundle)
            .map(|bundle| String::from_utf8_lossy(&bundle.0).into_owned())
            .unwrap_or_default())
    }

    /// Brings the caBundle of every webhook in dbbind's configurations (the Pod webhook's, and
    /// the workload check's when there is one) to what `trust` asks. Returns the Pod webhook's
    /// caBundle as it was: that webhook is the one whose failures block pods.
    async fn sync_ca_bundle(&self, trust: Trust<'_>) -> Result<String, SelfManagedError> {
        let before =
            sync_ca_bundle(&self.webhooks, &self.location.webhook_config_name, trust).await?;
        if let Some(name) = &self.location.validating_webhook_config_name {
            sync_ca_bundle(&self.validating_webhooks, name, trust).await?;
        }
        Ok(before)
    }

    /// Waits [`Manager::ca_settle`] when the caBundle just gained `ca_pem`: the API server reads
    /// webhook configurations through a cache of its own, and must see the new CA before any
    /// replica serves a certificate signed by it.
    async fn settle_if_new(&self, before: &str, ca_pem: &str, next: &str) {
        if adds_a_ca(before, ca_pem) {
            tracing::info!(wait = ?self.ca_settle, "caBundle gained a CA; waiting before {next} certificates it signed");
            tokio::time::sleep(self.ca_settle).await;
        }
    }
}

impl Recheck for Manager {
    async fn recheck(&mut self) {
        match self.reconcile().await {
            Ok(not_after) => {
                if let Some(on_loaded) = &self.on_loaded {
                    on_loaded(not_after);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "self-managed certificates not reconciled; retrying")
            }
        }
    }
}

mod cert_facts;
#[cfg(test)]
mod tests;
