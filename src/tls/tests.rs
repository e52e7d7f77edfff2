use std::time::Duration;

use time::OffsetDateTime;

use super::generate::{SubjectNames, issue_serving, new_ca};
use super::*;

fn names() -> SubjectNames {
    SubjectNames::for_service("dbbind", "dbbind", &[], &["127.0.0.1".parse().unwrap()])
}

#[test]
fn a_generated_pair_parses_and_a_mismatched_one_is_refused() {
    let now = OffsetDateTime::now_utc();
    let ca = new_ca("test CA", Duration::from_secs(3600), now).unwrap();
    let one = issue_serving(&ca, &names(), Duration::from_secs(600), now).unwrap();
    let two = issue_serving(&ca, &names(), Duration::from_secs(600), now).unwrap();

    let cert = ServingCert::from_pem(one.cert_pem.as_bytes(), one.key_pem.as_bytes()).unwrap();
    let expected = (now + Duration::from_secs(600)).unix_timestamp();
    assert!(
        (cert.not_after - expected).abs() <= 1,
        "{} vs {expected}",
        cert.not_after
    );

    let mixed = ServingCert::from_pem(one.cert_pem.as_bytes(), two.key_pem.as_bytes());
    assert!(matches!(mixed, Err(TlsError::KeyMismatch)), "{mixed:?}");
    let half = &one.cert_pem[..one.cert_pem.len() / 2];
    assert!(ServingCert::from_pem(half.as_bytes(), one.key_pem.as_bytes()).is_err());
    assert!(matches!(
        ServingCert::from_pem(b"", one.key_pem.as_bytes()),
        Err(TlsError::NoCertificate)
    ));
}

#[test]
fn the_store_serves_the_latest_pair() {
    let now = OffsetDateTime::now_utc();
    let ca = new_ca("test CA", Duration::from_secs(3600), now).unwrap();
    let store = CertStore::new();
    assert!(!store.is_loaded());
    for validity in [600, 1200] {
        let pair = issue_serving(&ca, &names(), Duration::from_secs(validity), now).unwrap();
        store
            .set(ServingCert::from_pem(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes()).unwrap());
    }
    let current = store.current().unwrap();
    assert_eq!(
        current.not_after,
        (now + Duration::from_secs(1200)).unix_timestamp()
    );
}

#[test]
fn service_names_cover_every_form_the_api_server_uses() {
    let names = SubjectNames::for_service(
        "dbbind",
        "platform",
        &["dbbind.example.com".to_owned(), "dbbind".to_owned()],
        &[],
    );
    assert_eq!(
        names.dns,
        [
            "dbbind",
            "dbbind.platform",
            "dbbind.platform.svc",
            "dbbind.platform.svc.cluster.local",
            "dbbind.example.com"
        ]
    );
}
