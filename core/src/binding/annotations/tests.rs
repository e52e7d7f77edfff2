use std::collections::BTreeMap;

use super::*;
use crate::binding::{BindingRequest, OnConflict, PodRequest};
use crate::env_set::{EnvSet, EnvSets};
use crate::field::Field;
use crate::profile::ProfileSet;

fn parse(pairs: &[(&str, &str)]) -> Result<PodRequest, AnnotationError> {
    let annotations: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    parse_annotations(&annotations, &ProfileSet::builtin())
}

fn bindings(pairs: &[(&str, &str)]) -> crate::binding::BindingRequests {
    match parse(pairs).unwrap() {
        PodRequest::Bind(requests) => requests,
        other => panic!("expected bindings, got {other:?}"),
    }
}

#[test]
fn the_default_binding_comes_first_then_aliases_in_order() {
    let requests = bindings(&[
        ("dbbind.io/secret.reporting", "reports"),
        ("dbbind.io/secret", "main"),
        ("dbbind.io/secret.audit", "audit"),
    ]);
    let names: Vec<&str> = requests.bindings.iter().map(BindingRequest::name).collect();
    assert_eq!(names, ["db", "audit", "reporting"]);
    assert_eq!(requests.on_conflict, OnConflict::Keep);
    assert_eq!(requests.containers, None);
}

#[test]
fn every_key_is_read() {
    let requests = bindings(&[
        ("dbbind.io/secret", "main"),
        ("dbbind.io/profile", "generic"),
        ("dbbind.io/host", "pgbouncer.shop.svc"),
        ("dbbind.io/port", "6432"),
        ("dbbind.io/database", "orders"),
        ("dbbind.io/user", "orders_app"),
        ("dbbind.io/sslmode", "verify-full"),
        ("dbbind.io/keys", "user = login, password=pw"),
        ("dbbind.io/env", "libpq, database-url"),
        ("dbbind.io/files", "true"),
        ("dbbind.io/containers", "app , worker"),
        ("dbbind.io/on-conflict", "deny"),
        ("dbbind.io/inject", "true"),
    ]);
    let binding = &requests.bindings[0];
    assert_eq!(binding.profile.as_deref(), Some("generic"));
    assert_eq!(binding.literals[&Field::Host], "pgbouncer.shop.svc");
    assert_eq!(binding.literals[&Field::Port], "6432");
    assert_eq!(binding.literals[&Field::Sslmode], "verify-full");
    assert_eq!(binding.keys[&Field::User], "login");
    assert_eq!(binding.keys[&Field::Password], "pw");
    assert_eq!(
        binding.env,
        EnvSets::from_iter([EnvSet::Libpq, EnvSet::DatabaseUrl])
    );
    assert!(binding.files);
    assert_eq!(
        requests.containers.as_deref(),
        Some(&["app".to_owned(), "worker".to_owned()][..])
    );
    assert_eq!(requests.on_conflict, OnConflict::Deny);
}

#[test]
fn auto_is_no_explicit_profile_and_none_is_no_env() {
    let requests = bindings(&[
        ("dbbind.io/secret", "main"),
        ("dbbind.io/profile", "auto"),
        ("dbbind.io/env", "none"),
    ]);
    assert_eq!(requests.bindings[0].profile, None);
    assert_eq!(requests.bindings[0].env, EnvSets::NONE);
}

#[test]
fn dbbinds_own_annotations_are_not_input() {
    let requests = bindings(&[
        ("dbbind.io/secret", "main"),
        ("dbbind.io/status", "injected"),
        ("dbbind.io/bindings", "db=main/generic"),
        ("dbbind.io/value.db.port", "5432"),
        ("other.io/thing", "x"),
    ]);
    assert_eq!(requests.bindings.len(), 1);
    assert_eq!(
        parse(&[("dbbind.io/status", "injected")]).unwrap(),
        PodRequest::NotRequested
    );
}
