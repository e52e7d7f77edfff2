//! What the rotation plan reads of a certificate: its validity, its names, its issuer.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::tls::generate::SubjectNames;

/// What the plan needs to know of a certificate.
pub(super) struct CertFacts {
    der: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

impl CertFacts {
    pub(super) fn from_pem(pem: &[u8]) -> Result<CertFacts, String> {
        let der = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or_else(|| "no certificate".to_owned())?
            .map_err(|e| e.to_string())?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
        Ok(CertFacts {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            der: der.to_vec(),
        })
    }

    fn parsed(&self) -> Option<X509Certificate<'_>> {
        X509Certificate::from_der(&self.der)
            .ok()
            .map(|(_, cert)| cert)
    }

    /// Two thirds of the lifetime (as issued, or as the policy now wants, whichever is shorter)
    /// have passed.
    pub(super) fn due(&self, now: OffsetDateTime, wanted: Duration) -> bool {
        let lifetime = (self.not_after - self.not_before)
            .min(i64::try_from(wanted.as_secs()).unwrap_or(i64::MAX));
        now.unix_timestamp() >= self.not_after - lifetime / 3
    }

    pub(super) fn names_match(&self, names: &SubjectNames) -> bool {
        let Some(cert) = self.parsed() else {
            return false;
        };
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(name) => dns.push((*name).to_owned()),
                    GeneralName::IPAddress(bytes) => ips.push(bytes.to_vec()),
                    _ => {}
                }
            }
        }
        let wanted_ips: Vec<Vec<u8>> = names
            .ips
            .iter()
            .map(|ip| match ip {
                std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
            })
            .collect();
        dns.sort();
        ips.sort();
        let mut wanted_dns = names.dns.clone();
        wanted_dns.sort();
        let mut wanted_ips = wanted_ips;
        wanted_ips.sort();
        dns == wanted_dns && ips == wanted_ips
    }

    pub(super) fn issued_by(&self, ca: &CertFacts) -> bool {
        match (self.parsed(), ca.parsed()) {
            (Some(cert), Some(ca)) => cert.verify_signature(Some(ca.public_key())).is_ok(),
            _ => false,
        }
    }
}
