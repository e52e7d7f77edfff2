//! A binding's TLS files (docs/design.md §9): where its CA and client certificate come from.
//! First found wins: the annotations (`dbbind.io/ca`, `dbbind.io/client-cert`), keys of the
//! bound Secret the profile names, the operator's CA Secret the profile names.

use super::{BindingRequest, TlsObject};
use crate::field::TlsFile;
use crate::message::{Denial, Warning};
use crate::profile::{CLUSTER_PLACEHOLDER, Profile};
use crate::secret::{SecretLookup, SecretView};

/// The Secret type a client certificate must have: the API server then guarantees `tls.crt`
/// and `tls.key`.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// One TLS file to project, and the key of the object it is read from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsSource {
    pub file: TlsFile,
    pub object: TlsObject,
    pub key: String,
}

/// Where the binding's TLS files come from; empty when it has none.
pub(super) fn resolve_tls(
    request: &BindingRequest,
    profile: &Profile,
    secret: Option<&SecretView>,
    namespace: &str,
    secrets: &dyn SecretLookup,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<TlsSource>, Denial> {
    let mut files = Vec::new();
    let bound = || TlsObject::Secret(request.secret.clone());
    let find = |keys: &[String]| -> Option<String> {
        let secret = secret?;
        keys.iter().find(|key| secret.has_key(key)).cloned()
    };

    if let Some(ca) = &request.ca {
        let annotation = request.annotation("ca");
        if let TlsObject::Secret(name) = &ca.object {
            match secrets.get(namespace, name) {
                Some(view) if !view.has_key(&ca.key) => {
                    return Err(Denial::about_secret(format!(
                        "annotation {annotation:?} names key {:?} of Secret {name:?}, which it does not have; keys present: {}",
                        ca.key,
                        view.key_list()
                    )));
                }
                Some(_) => {}
                None => warnings.push(not_found(&annotation, name, namespace)),
            }
        }
        files.push(TlsSource {
            file: TlsFile::RootCert,
            object: ca.object.clone(),
            key: ca.key.clone(),
        });
    } else if let Some(key) = find(&profile.tls.ca_keys) {
        files.push(TlsSource {
            file: TlsFile::RootCert,
            object: bound(),
            key,
        });
    } else if let Some(ca) = operator_ca(request, profile, secret, namespace, secrets) {
        files.push(ca);
    }

    if let Some(name) = &request.client_cert {
        let annotation = request.annotation("client-cert");
        match secrets.get(namespace, name) {
            Some(view) if view.secret_type != TLS_SECRET_TYPE => {
                return Err(Denial::about_secret(format!(
                    "annotation {annotation:?} names Secret {name:?} of type {:?}; a client certificate must be a Secret of type {TLS_SECRET_TYPE} (kubectl create secret tls {name} --cert=… --key=…)",
                    crate::message::clip(&view.secret_type).to_string()
                )));
            }
            Some(_) => {}
            None => warnings.push(not_found(&annotation, name, namespace)),
        }
        for (file, key) in [(TlsFile::Cert, "tls.crt"), (TlsFile::Key, "tls.key")] {
            files.push(TlsSource {
                file,
                object: TlsObject::Secret(name.clone()),
                key: key.to_owned(),
            });
        }
    } else {
        match (find(&profile.tls.cert_keys), find(&profile.tls.key_keys)) {
            (Some(cert), Some(key)) => {
                files.push(TlsSource {
                    file: TlsFile::Cert,
                    object: bound(),
                    key: cert,
                });
                files.push(TlsSource {
                    file: TlsFile::Key,
                    object: bound(),
                    key,
                });
            }
            (Some(present), None) | (None, Some(present)) => {
                warnings.push(Warning::new(format!(
                    "binding {:?}: Secret {:?} has {present:?} but not the other half of a client certificate (certificate keys [{}], key keys [{}]); no client certificate is bound",
                    request.name(),
                    request.secret,
                    profile.tls.cert_keys.join(", "),
                    profile.tls.key_keys.join(", ")
                )));
            }
            (None, None) => {}
        }
    }
    Ok(files)
}

/// The operator's CA Secret, named after the cluster, when it exists with its key: an operator
/// may run with certificates of the user's own, and then there is no such Secret to wait for.
fn operator_ca(
    request: &BindingRequest,
    profile: &Profile,
    secret: Option<&SecretView>,
    namespace: &str,
    secrets: &dyn SecretLookup,
) -> Option<TlsSource> {
    let ca = profile.tls.ca_secret.as_ref()?;
    let cluster = profile
        .endpoints
        .as_ref()?
        .cluster(secret.map(|s| &s.labels), &request.secret)?;
    let name = ca.name.replace(CLUSTER_PLACEHOLDER, cluster);
    secrets
        .get(namespace, &name)
        .filter(|view| view.has_key(&ca.key))
        .map(|_| TlsSource {
            file: TlsFile::RootCert,
            object: TlsObject::Secret(name),
            key: ca.key.clone(),
        })
}

fn not_found(annotation: &str, name: &str, namespace: &str) -> Warning {
    Warning::new(format!(
        "annotation {annotation:?}: Secret {name:?} not found in namespace {namespace:?}; the pod starts once it exists"
    ))
}
