use super::*;
use crate::field::Field;
use crate::secret::SecretView;

#[test]
fn builtins_parse_and_are_described() {
    let set = ProfileSet::builtin();
    assert_eq!(
        set.names(),
        [
            "servicebinding",
            "cnpg",
            "edb",
            "crunchy",
            "crunchy-pgbouncer",
            "zalando",
            "bitnami",
            "bitnami-ha",
            "osba",
            "cockroachdb",
            "stackgres",
            "aiven",
            "kubeblocks",
            "crossplane",
            "a8s",
            "vault-database",
            "rds",
            "generic",
            "url"
        ]
    );
    for profile in set.iter() {
        assert!(!profile.description.is_empty(), "{}", profile.name);
        assert!(profile.field(Field::Password).is_some() || profile.name == "url");
    }
}

#[test]
fn the_yaml_form_round_trips() {
    let set = ProfileSet::builtin();
    let reparsed = parse_profiles(&set.to_yaml(), "round-trip").unwrap();
    assert_eq!(reparsed.len(), set.names().len());
    let again = ProfileSet { profiles: reparsed };
    assert_eq!(again.to_yaml(), set.to_yaml());
}

#[test]
fn a_user_file_replaces_in_place_and_adds_in_front() {
    let text = r#"
profiles:
- name: bitnami
  description: our Bitnami releases keep the host in the Secret
  detect:
  - labels: {app.kubernetes.io/name: postgresql}
  fields:
    host: {keys: [host]}
    user: {default: postgres}
    password: {keys: [postgres-password]}
- name: acme
  description: ACME's database operator
  detect:
  - owner: {group: db.acme.example, kind: Database}
  fields:
    host: {keys: [server]}
    user: {keys: [login]}
    password: {keys: [secret]}
"#;
    let set = ProfileSet::with_overlay(text, "user.yaml").unwrap();
    let names = set.names();
    assert_eq!(names[0], "acme");
    assert_eq!(
        names.iter().position(|n| *n == "bitnami"),
        Some(7),
        "{names:?}"
    );
    assert_eq!(
        set.get("bitnami").unwrap().field(Field::Host).unwrap().keys,
        ["host"]
    );

    let acme = SecretView {
        name: "orders".into(),
        owners: vec![crate::secret::OwnerKind::from_api_version(
            "db.acme.example/v1",
            "Database",
        )],
        keys: ["server", "login", "secret"].map(String::from).into(),
        ..SecretView::default()
    };
    assert_eq!(set.detect(&acme).unwrap().name, "acme");
}

#[test]
fn invalid_files_are_refused_with_the_reason() {
    let cases = [
        (
            "profiles:\n- name: x\n  fields: {}\n  colour: red\n",
            "unknown field `colour`",
        ),
        (
            "profiles:\n- name: Bad_Name\n  fields: {}\n",
            "name must be a DNS label",
        ),
        (
            "profiles:\n- name: auto\n  fields: {}\n",
            "\"auto\" is reserved",
        ),
        (
            "profiles:\n- name: x\n  fields:\n    password: {default: hunter2}\n",
            "field password carries a credential",
        ),
        (
            "profiles:\n- name: x\n  fields:\n    host: {}\n",
            "field host names no keys",
        ),
        (
            "profiles:\n- name: x\n  fields:\n    host: {keys: [a/b]}\n",
            "\"a/b\" is not a valid Secret key",
        ),
        (
            "profiles:\n- name: x\n  fields:\n    colour: {keys: [c]}\n",
            "unknown variant `colour`",
        ),
        (
            "profiles:\n- name: x\n  detect:\n  - {}\n  fields: {}\n",
            "must state at least one condition",
        ),
        (
            "profiles:\n- name: x\n  detect:\n  - fields: [host]\n  fields: {}\n",
            "names field host, for which the profile lists no keys",
        ),
        (
            "profiles:\n- name: x\n  fields:\n    host: {fromSecretName: '('}\n",
            "regex parse error",
        ),
        (
            "profiles:\n- name: x\n  fields:\n    host: {fromSecretName: '(a)(b)'}\n",
            "more than one capture group",
        ),
        (
            "profiles:\n- name: x\n  fields: {}\n- name: x\n  fields: {}\n",
            "defined twice",
        ),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let error = ProfileSet::with_overlay(text, "user.yaml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("profiles file user.yaml"), "{error}");
        assert!(error.contains(expected), "case {index}: {error}");
    }
}

#[test]
fn secret_name_patterns_extract_their_group_or_the_whole_match() {
    let zalando =
        SecretNamePattern::new(r"^[^.]+\.([^.]+)\.credentials\.postgresql\.acid\.zalan\.do$")
            .unwrap();
    assert_eq!(
        zalando.extract("foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do"),
        Some("acid-minimal-cluster")
    );
    assert_eq!(zalando.extract("something-else"), None);
    let whole = SecretNamePattern::new("^[a-z]+").unwrap();
    assert_eq!(whole.extract("abc-1"), Some("abc"));
}

#[test]
fn a_template_makes_a_service_name_from_the_secrets_name_and_needs_its_pattern() {
    let text = "profiles:\n- name: ha\n  fields:\n    host: {fromSecretName: '^(.+)-postgresql$', template: '{match}-pgpool'}\n    user: {default: postgres}\n    password: {keys: [password]}\n";
    let set = ProfileSet::with_overlay(text, "user.yaml").unwrap();
    let host = set.get("ha").unwrap().field(Field::Host).unwrap();
    assert_eq!(
        host.derive_from_name("ledger-postgresql-ha-postgresql")
            .as_deref(),
        Some("ledger-postgresql-ha-pgpool")
    );
    assert_eq!(host.derive_from_name("unrelated"), None);
    for bad in [
        "{fromSecretName: '^(.+)$', template: 'no-placeholder'}",
        "{default: x, template: '{match}-pgpool'}",
    ] {
        let text = format!("profiles:\n- name: ha\n  fields:\n    host: {bad}\n");
        let error = ProfileSet::with_overlay(&text, "user.yaml").unwrap_err();
        assert!(
            error.to_string().contains("template needs fromSecretName"),
            "{error}"
        );
    }
}
