//! Every Secret shape in `tests/fixtures/secrets/`: `auto` picks the profile named on the
//! fixture's first line, and the injected variables are exactly the expected ones.

use dbbind_core::decision::Decision;
use dbbind_core::secret::SecretView;

use crate::support::*;

#[test]
fn auto_detects_the_profile_named_in_each_fixture() {
    let profiles = builtin();
    let names = fixture_names();
    // Every profile `auto` can pick has a real-world shape to be picked from.
    let expected: std::collections::BTreeSet<String> =
        names.iter().map(|file| expected_profile(file)).collect();
    for profile in profiles.iter().filter(|profile| !profile.detect.is_empty()) {
        assert!(
            expected.contains(&profile.name),
            "no fixture shows the shape of profile {}",
            profile.name
        );
    }
    for file in names {
        let view = SecretView::from_secret(&fixture_secret(&file), "default");
        let detected = profiles.detect(&view).map(|p| p.name.clone());
        assert_eq!(
            detected.as_deref(),
            Some(expected_profile(&file).as_str()),
            "{file}"
        );
    }
}

/// The Secret cache keeps only the labels and owners the profiles read: every fixture must be
/// decided the same from that filtered view as from the whole Secret.
#[test]
fn the_profiles_shape_filter_keeps_everything_a_decision_reads() {
    let profiles = builtin();
    let filter = profiles.shape_filter();
    assert!(filter.keeps_label("cnpg.io/cluster"), "{filter:?}");
    assert!(!filter.keeps_label("helm.sh/chart"));
    for file in fixture_names() {
        let secret = fixture_secret(&file);
        let whole = SecretView::from_secret(&secret, "default");
        let filtered = filter.apply(whole.clone());
        let namespace = whole.namespace.clone();
        let pod = pod(&[("dbbind.io/secret", whole.name.as_str())], &["app"]);
        let by_whole = decide(&pod, &namespace, &[whole].into_iter().collect());
        let by_filtered = decide(&pod, &namespace, &[filtered].into_iter().collect());
        assert_eq!(by_whole, by_filtered, "{file}");
    }
}

/// Binds a fixture with `auto` (plus `extra` annotations) in its own namespace and returns the
/// `app` container's env and the profile that was used.
pub(crate) fn bind(file: &str, extra: &[(&str, &str)]) -> (Vec<String>, String) {
    let secret = fixture_secret(file);
    let name = secret.metadata.name.clone().unwrap();
    let namespace = secret.metadata.namespace.clone().unwrap();
    let mut annotations = vec![("dbbind.io/secret", name.as_str())];
    annotations.extend_from_slice(extra);
    let pod = pod(&annotations, &["app"]);
    let decision = decide(&pod, &namespace, &store_of(&[&secret]));
    let profile = match &decision {
        Decision::Allow { bindings, .. } => bindings[0].profile.clone(),
        Decision::Deny { denial, .. } => panic!("{file}: denied: {denial}"),
    };
    (env_summary(&apply(&pod, &decision), "app"), profile)
}

fn refs(secret: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(var, source)| match source.strip_prefix('=') {
            Some(literal) => format!("{var}={literal}"),
            None => format!("{var}=secret:{secret}/{source}"),
        })
        .collect()
}

/// (fixture, extra annotations, expected profile, expected env). A source starting with `=` is
/// a literal value; anything else is a key of the fixture's Secret.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    (
        "aiven-postgresql.yaml",
        &[],
        "aiven",
        &[
            ("POSTGRES_HOST", "POSTGRESQL_HOST"),
            ("POSTGRES_PORT", "POSTGRESQL_PORT"),
            ("POSTGRES_DB", "POSTGRESQL_DATABASE"),
            ("POSTGRES_USER", "POSTGRESQL_USER"),
            ("POSTGRES_PASSWORD", "POSTGRESQL_PASSWORD"),
            ("POSTGRES_URL", "POSTGRESQL_DATABASE_URI"),
            ("POSTGRES_SSLMODE", "POSTGRESQL_SSLMODE"),
        ],
    ),
    (
        "a8s-binding.yaml",
        &[],
        "a8s",
        &[
            ("POSTGRES_HOST", "instance_service"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "database"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "bitnami-custom-user.yaml",
        &[],
        "bitnami",
        &[
            ("POSTGRES_HOST", "=myapp-postgresql"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "=postgres"),
            ("POSTGRES_PASSWORD", "postgres-password"),
        ],
    ),
    (
        "bitnami-custom-user.yaml",
        &[("dbbind.io/user", "app"), ("dbbind.io/database", "appdb")],
        "bitnami",
        &[
            ("POSTGRES_HOST", "=myapp-postgresql"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=appdb"),
            ("POSTGRES_USER", "=app"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "bitnami-legacy-keys.yaml",
        &[],
        "bitnami",
        &[
            ("POSTGRES_HOST", "=myapp-postgresql"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "=postgres"),
            ("POSTGRES_PASSWORD", "postgresql-postgres-password"),
        ],
    ),
    (
        "bitnami-legacy-keys.yaml",
        &[("dbbind.io/user", "app")],
        "bitnami",
        &[
            ("POSTGRES_HOST", "=myapp-postgresql"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "=app"),
            ("POSTGRES_PASSWORD", "postgresql-password"),
        ],
    ),
    (
        "bitnami-ha-postgresql.yaml",
        &[],
        "bitnami-ha",
        &[
            ("POSTGRES_HOST", "=shop-db-postgresql-ha-pgpool"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "=postgres"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "bitnami-svcbind.yaml",
        &[],
        "servicebinding",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "database"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "cnpg-app.yaml",
        &[],
        "cnpg",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "edb-app.yaml",
        &[],
        "edb",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "cockroachdb-broker.yaml",
        &[],
        "cockroachdb",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "database"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "crossplane-rds-classic.yaml",
        &[],
        "crossplane",
        &[
            ("POSTGRES_HOST", "endpoint"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "crossplane-upjet-instance.yaml",
        &[("dbbind.io/database", "orders")],
        "crossplane",
        &[
            ("POSTGRES_HOST", "address"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "=orders"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "crunchy-pguser.yaml",
        &[],
        "crunchy",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "user"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "crunchy-pguser.yaml",
        &[("dbbind.io/profile", "crunchy-pgbouncer")],
        "crunchy-pgbouncer",
        &[
            ("POSTGRES_HOST", "pgbouncer-host"),
            ("POSTGRES_PORT", "pgbouncer-port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "user"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "pgbouncer-uri"),
        ],
    ),
    (
        "eso-database-url-only.yaml",
        &[],
        "url",
        &[("POSTGRES_URL", "DATABASE_URL")],
    ),
    (
        "eso-database-url-only.yaml",
        &[("dbbind.io/env", "database-url")],
        "url",
        &[("DATABASE_URL", "DATABASE_URL")],
    ),
    (
        "eso-rds-extract.yaml",
        &[],
        "rds",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "DATABASE_URL"),
        ],
    ),
    (
        "generic-external.yaml",
        &[],
        "generic",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "database"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "generic-uppercase-keys.yaml",
        &[],
        "generic",
        &[
            ("POSTGRES_HOST", "POSTGRES_HOST"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_USER", "POSTGRES_USERNAME"),
            ("POSTGRES_PASSWORD", "POSTGRES_PASSWORD"),
        ],
    ),
    (
        "kubeblocks-0x-conn-credential.yaml",
        &[],
        "kubeblocks",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "kubeblocks-1x-account.yaml",
        &[],
        "kubeblocks",
        &[
            ("POSTGRES_HOST", "=catalog-pg-postgresql"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "osba-azure-postgresql.yaml",
        &[],
        "osba",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "database"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "percona-pgv2-pguser.yaml",
        &[],
        "crunchy",
        &[
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "user"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
        ],
    ),
    (
        "percona-pgv2-pguser.yaml",
        &[("dbbind.io/profile", "crunchy-pgbouncer")],
        "crunchy-pgbouncer",
        &[
            ("POSTGRES_HOST", "pgbouncer-host"),
            ("POSTGRES_PORT", "pgbouncer-port"),
            ("POSTGRES_DB", "dbname"),
            ("POSTGRES_USER", "user"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "pgbouncer-uri"),
        ],
    ),
    (
        "rds-managed-master.yaml",
        &[
            (
                "dbbind.io/host",
                "orders.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com",
            ),
            ("dbbind.io/database", "orders"),
        ],
        "rds",
        &[
            (
                "POSTGRES_HOST",
                "=orders.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com",
            ),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=orders"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "servicebinding-postgresql.yaml",
        &[],
        "servicebinding",
        &[
            // The Secret's ca.crt is a TLS file: a volume for it, and its path.
            ("SERVICE_BINDING_ROOT", "=/bindings"),
            ("POSTGRES_HOST", "host"),
            ("POSTGRES_PORT", "port"),
            ("POSTGRES_DB", "database"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_URL", "uri"),
            ("POSTGRES_SSLMODE", "sslmode"),
            ("POSTGRES_SSLROOTCERT", "=/bindings/db/ca.crt"),
        ],
    ),
    (
        "stackgres-cluster.yaml",
        &[],
        "stackgres",
        &[
            ("POSTGRES_HOST", "=pricing"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=postgres"),
            ("POSTGRES_USER", "superuser-username"),
            ("POSTGRES_PASSWORD", "superuser-password"),
        ],
    ),
    (
        "vault-dynamic-database.yaml",
        &[("dbbind.io/host", "billing-db.internal.example.com")],
        "vault-database",
        &[
            ("POSTGRES_HOST", "=billing-db.internal.example.com"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
    (
        "zalando-credentials.yaml",
        &[("dbbind.io/database", "foo")],
        "zalando",
        &[
            ("POSTGRES_HOST", "=acid-minimal-cluster"),
            ("POSTGRES_PORT", "=5432"),
            ("POSTGRES_DB", "=foo"),
            ("POSTGRES_USER", "username"),
            ("POSTGRES_PASSWORD", "password"),
        ],
    ),
];

#[test]
fn each_fixture_injects_exactly_the_expected_variables() {
    let mut covered = std::collections::BTreeSet::new();
    for (file, extra, profile, expected) in CASES {
        let secret_name = fixture_secret(file).metadata.name.unwrap();
        let (env, used) = bind(file, extra);
        assert_eq!(&used, profile, "{file} {extra:?}");
        assert_eq!(env, refs(&secret_name, expected), "{file} {extra:?}");
        covered.insert(*file);
    }
    assert_eq!(
        covered.len(),
        fixture_names().len(),
        "a case for every fixture"
    );
}

#[test]
fn the_libpq_and_database_url_sets_follow_the_same_sources() {
    let (env, _) = bind(
        "generic-external.yaml",
        &[("dbbind.io/env", "libpq,database-url")],
    );
    let s = "orders-db-conn";
    assert_eq!(
        env,
        vec![
            format!("PGHOST=secret:{s}/host"),
            format!("PGPORT=secret:{s}/port"),
            format!("PGDATABASE=secret:{s}/database"),
            format!("PGUSER=secret:{s}/username"),
            format!("PGPASSWORD=secret:{s}/password"),
            "DATABASE_URL=postgresql://$(PGUSER)@$(PGHOST):$(PGPORT)/$(PGDATABASE)".to_owned(),
        ]
    );
}

/// `auto` is never silently wrong: over every fixture (one per provider and version), the
/// profile `auto` picks is the fixture's own. The matrix of every profile whose rules match each
/// fixture is printed (`cargo test -- --nocapture detection_matrix`), so a rule that starts
/// claiming another provider's Secret shows up here before it shows up in a cluster.
#[test]
fn detection_matrix() {
    let profiles = builtin();
    let mut wrong = Vec::new();
    for file in fixture_names() {
        let view = SecretView::from_secret(&fixture_secret(&file), "default");
        let matching = profiles.matching(&view);
        let row: Vec<String> = matching
            .iter()
            .map(|(name, rules)| format!("{name} [{}]", rules.join(" | ")))
            .collect();
        println!("{file:40} {}", row.join(", "));
        let expected = expected_profile(&file);
        if matching.first().map(|(name, _)| *name) != Some(expected.as_str()) {
            wrong.push(format!(
                "{file}: auto picks {:?}, not {expected}",
                matching.first()
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
