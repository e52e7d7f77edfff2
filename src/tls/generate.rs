//! Generating a CA and serving certificates with rcgen (ECDSA P-256), for `dbbind certs` and for
//! self-managed certificates.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::TlsError;

/// Certificates are valid from a little before they are made, so a peer whose clock runs behind
/// does not reject a fresh one.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The names a serving certificate is valid for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl SubjectNames {
    /// The DNS names the API server may use for a Service (`name`, `name.ns`, `name.ns.svc`,
    /// `name.ns.svc.cluster.local`), plus extra names and addresses (a URL-registered webhook on
    /// 127.0.0.1 needs the IP).
    pub fn for_service(
        service: &str,
        namespace: &str,
        extra_dns: &[String],
        extra_ips: &[IpAddr],
    ) -> SubjectNames {
        let mut dns = vec![
            service.to_owned(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        for name in extra_dns {
            if !dns.contains(name) {
                dns.push(name.clone());
            }
        }
        SubjectNames {
            dns,
            ips: extra_ips.to_vec(),
        }
    }
}

/// A self-signed CA.
pub fn new_ca(
    common_name: &str,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<PemPair, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `names`, signed by `ca`.
pub fn issue_serving(
    ca: &PemPair,
    names: &SubjectNames,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<PemPair, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut params = CertificateParams::new(names.dns.clone())?;
    params
        .subject_alt_names
        .extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let common_name = names
        .dns
        .first()
        .cloned()
        .or_else(|| names.ips.first().map(ToString::to_string))
        .unwrap_or_else(|| "dbbind".to_owned());
    params.distinguished_name = name(&common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "dbbind");
    name
}
