//! `dbbind.io/endpoint` over the fixtures: each role's Service, the pooler, and the URL
//! composed for them.

use crate::fixtures::bind;

#[test]
fn endpoint_roles_name_the_operators_service_for_the_role() {
    let host = |file: &str, extra: &[(&str, &str)]| -> Vec<String> {
        let (env, _) = bind(file, extra);
        env.into_iter()
            .filter(|var| var.starts_with("POSTGRES_HOST=") || var.starts_with("DATABASE_URL="))
            .collect()
    };
    // CloudNativePG: the cluster from the Secret's name (this Secret has no cnpg.io/cluster
    // label); the Secret's own URI names the primary, so another role's URL is composed.
    assert_eq!(
        host(
            "cnpg-app.yaml",
            &[
                ("dbbind.io/endpoint", "ro"),
                ("dbbind.io/env", "postgres,database-url")
            ]
        ),
        [
            "POSTGRES_HOST=pg-main-ro",
            "DATABASE_URL=postgresql://$(POSTGRES_USER)@$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)",
        ]
    );
    // The pooler: CloudNativePG's Service has the Pooler's name; the Secret's URI names the
    // primary, so the URL is composed with the pooler's host.
    assert_eq!(
        host(
            "cnpg-app.yaml",
            &[
                ("dbbind.io/endpoint", "pooler"),
                ("dbbind.io/pooler", "pg-main-pooler-rw"),
                ("dbbind.io/env", "postgres,database-url")
            ]
        ),
        [
            "POSTGRES_HOST=pg-main-pooler-rw",
            "DATABASE_URL=postgresql://$(POSTGRES_USER)@$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)",
        ]
    );
    // Crunchy's and Percona's Secret holds PgBouncer's host, port and URI: read with
    // crunchy-pgbouncer.
    assert_eq!(
        host(
            "percona-pgv2-pguser.yaml",
            &[
                ("dbbind.io/endpoint", "pooler"),
                ("dbbind.io/env", "postgres,database-url")
            ]
        ),
        [
            "POSTGRES_HOST=secret:cluster1-pguser-shop/pgbouncer-host",
            "DATABASE_URL=secret:cluster1-pguser-shop/pgbouncer-uri",
        ]
    );
    // StackGres: the cluster is the Secret's name; its replicas' Service.
    assert_eq!(
        host("stackgres-cluster.yaml", &[("dbbind.io/endpoint", "ro")]),
        ["POSTGRES_HOST=pricing-replicas"]
    );
    // EDB: the same roles, the cluster from its <cluster>-app name.
    assert_eq!(
        host(
            "edb-app.yaml",
            &[
                ("dbbind.io/endpoint", "r"),
                ("dbbind.io/env", "postgres,database-url")
            ]
        ),
        [
            "POSTGRES_HOST=inventory-db-r",
            "DATABASE_URL=postgresql://$(POSTGRES_USER)@$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)",
        ]
    );
    assert_eq!(
        host(
            "cnpg-app.yaml",
            &[
                ("dbbind.io/endpoint", "rw"),
                ("dbbind.io/env", "postgres,database-url")
            ]
        ),
        [
            "POSTGRES_HOST=pg-main-rw",
            "DATABASE_URL=secret:pg-main-app/uri"
        ]
    );
    assert_eq!(
        host("cnpg-app.yaml", &[("dbbind.io/endpoint", "r")]),
        ["POSTGRES_HOST=pg-main-r"]
    );
    // Crunchy and Zalando: the cluster from the operator's label.
    assert_eq!(
        host("crunchy-pguser.yaml", &[("dbbind.io/endpoint", "ro")]),
        ["POSTGRES_HOST=hippo-replicas"]
    );
    assert_eq!(
        host(
            "zalando-credentials.yaml",
            &[("dbbind.io/endpoint", "ro"), ("dbbind.io/database", "foo")]
        ),
        ["POSTGRES_HOST=acid-minimal-cluster-repl"]
    );
}
