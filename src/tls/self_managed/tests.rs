use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn policy() -> Policy {
    Policy {
        names: SubjectNames::for_service("dbbind", "dbbind", &[], &[]),
        serving_validity: 7 * DAY,
        ca_validity: 365 * DAY,
    }
}

fn renewed(plan: Plan) -> (Material, String) {
    match plan {
        Plan::Renew { material, reason } => (material, reason),
        Plan::Keep => panic!("expected a renewal"),
    }
}

fn bundle_len(bundle: &str) -> usize {
    CertificateDer::pem_slice_iter(bundle.as_bytes()).count()
}

#[test]
fn nothing_yet_makes_a_ca_and_a_serving_certificate() {
    let now = OffsetDateTime::now_utc();
    let (material, reason) = renewed(plan(None, "", &policy(), now).unwrap());
    assert_eq!(reason, "no certificates yet");
    assert_eq!(material.bundle.trim_end(), material.ca.cert_pem.trim_end());
    ServingCert::from_pem(
        material.serving.cert_pem.as_bytes(),
        material.serving.key_pem.as_bytes(),
    )
    .unwrap();
    // Fresh material is kept.
    assert_eq!(
        plan(Some(&material), "", &policy(), now).unwrap(),
        Plan::Keep
    );
}

#[test]
fn the_serving_certificate_is_renewed_after_two_thirds_of_its_life() {
    let start = OffsetDateTime::now_utc();
    let (material, _) = renewed(plan(None, "", &policy(), start).unwrap());
    assert_eq!(
        plan(Some(&material), "", &policy(), start + 4 * DAY).unwrap(),
        Plan::Keep
    );
    let (renewed_material, reason) =
        renewed(plan(Some(&material), "", &policy(), start + 5 * DAY).unwrap());
    assert_eq!(reason, "the serving certificate is due for renewal");
    assert_eq!(renewed_material.ca, material.ca, "same CA");
    assert_eq!(renewed_material.bundle, material.bundle);
    assert_ne!(renewed_material.serving, material.serving);
}

#[test]
fn changed_names_or_a_foreign_serving_certificate_are_replaced() {
    let now = OffsetDateTime::now_utc();
    let (material, _) = renewed(plan(None, "", &policy(), now).unwrap());
    let mut wider = policy();
    wider.names.ips.push("127.0.0.1".parse().unwrap());
    let (_, reason) = renewed(plan(Some(&material), "", &wider, now).unwrap());
    assert_eq!(reason, "the serving certificate's names changed");

    let (other, _) = renewed(plan(None, "", &policy(), now).unwrap());
    let foreign = Material {
        serving: other.serving,
        ..material
    };
    let (_, reason) = renewed(plan(Some(&foreign), "", &policy(), now).unwrap());
    assert_eq!(
        reason,
        "the serving certificate is not signed by the current CA"
    );
}

#[test]
fn ca_rotation_keeps_the_old_ca_in_the_bundle_until_it_expires() {
    let start = OffsetDateTime::now_utc();
    let (first, _) = renewed(plan(None, "", &policy(), start).unwrap());
    let rotation = start + 250 * DAY;
    let (second, reason) = renewed(plan(Some(&first), "", &policy(), rotation).unwrap());
    assert_eq!(reason, "the CA is due for rotation");
    assert_ne!(second.ca, first.ca);
    assert_eq!(bundle_len(&second.bundle), 2, "new and old CA overlap");
    assert!(second.bundle.starts_with(second.ca.cert_pem.trim_end()));

    // Once the old CA has expired, it leaves the bundle.
    let later = start + 366 * DAY;
    let (third, reason) = renewed(plan(Some(&second), "", &policy(), later).unwrap());
    assert_eq!(bundle_len(&third.bundle), 1, "{reason}");
    assert_eq!(third.ca, second.ca);
}

#[test]
fn unreadable_material_starts_over() {
    let now = OffsetDateTime::now_utc();
    let (mut material, _) = renewed(plan(None, "", &policy(), now).unwrap());
    material.ca.cert_pem = "garbage".to_owned();
    let (_, reason) = renewed(plan(Some(&material), "", &policy(), now).unwrap());
    assert!(reason.starts_with("the CA cannot be read"), "{reason}");
}

#[test]
fn a_deleted_secret_keeps_the_cas_the_webhook_still_trusts() {
    let now = OffsetDateTime::now_utc();
    let (before, _) = renewed(plan(None, "", &policy(), now).unwrap());
    // The Secret is gone; the caBundle still trusts the CA other replicas serve from.
    let (after, _) = renewed(plan(None, &before.bundle, &policy(), now).unwrap());
    assert_ne!(after.ca, before.ca);
    assert_eq!(bundle_len(&after.bundle), 2);
    assert!(after.bundle.starts_with(after.ca.cert_pem.trim_end()));
    assert!(after.bundle.contains(before.ca.cert_pem.trim_end()));
    // Once that CA has expired it is dropped.
    let (later, _) = renewed(plan(None, &before.bundle, &policy(), now + 400 * DAY).unwrap());
    assert_eq!(bundle_len(&later.bundle), 1);
}

#[test]
fn only_a_ca_new_to_a_bundle_that_trusted_another_waits() {
    let now = OffsetDateTime::now_utc();
    let (first, _) = renewed(plan(None, "", &policy(), now).unwrap());
    let (second, _) = renewed(plan(None, "", &policy(), now).unwrap());
    assert!(!adds_a_ca("", &first.ca.cert_pem), "a first install");
    assert!(!adds_a_ca(&first.bundle, &first.ca.cert_pem), "a known CA");
    assert!(adds_a_ca(&first.bundle, &second.ca.cert_pem), "a new CA");
}
