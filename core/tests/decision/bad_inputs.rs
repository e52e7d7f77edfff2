//! docs/design.md §5 and more: each bad input gets a precise denial, and nothing is patched.

use dbbind_core::decision::Decision;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::support::*;

const KNOWN: &str = "dbbind.io/secret[.<alias>], dbbind.io/profile[.<alias>], dbbind.io/host[.<alias>], dbbind.io/port[.<alias>], dbbind.io/database[.<alias>], dbbind.io/user[.<alias>], dbbind.io/sslmode[.<alias>], dbbind.io/keys[.<alias>], dbbind.io/env[.<alias>], dbbind.io/files[.<alias>], dbbind.io/endpoint[.<alias>], dbbind.io/pooler[.<alias>], dbbind.io/ca[.<alias>], dbbind.io/client-cert[.<alias>], dbbind.io/containers, dbbind.io/on-conflict, dbbind.io/inject, dbbind.io/restart-on-rotation";

/// Annotations on a pod with containers `app` and `sidecar`, in namespace `shop` where the
/// fixture Secrets `orders-db-conn` (generic) and `orders-db-master` (rds, no host) exist.
fn deny_message(annotations: &[(&str, &str)]) -> String {
    deny_pod(&pod(annotations, &["app", "sidecar"]))
}

fn deny_pod(pod: &Pod) -> String {
    let store = store_of(&[
        &fixture_secret("generic-external.yaml"),
        &fixture_secret("rds-managed-master.yaml"),
        &fixture_secret("zalando-credentials.yaml"),
        &odd_secret(),
    ]);
    // Zalando's fixture lives in "default"; the others in "shop".
    let namespace = if pod_annotation(pod, "dbbind.io/secret").is_some_and(|s| s.contains("zalan"))
    {
        "default"
    } else {
        "shop"
    };
    denial(&decide(pod, namespace, &store))
}

fn pod_annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a String> {
    pod.metadata.annotations.as_ref()?.get(key)
}

/// A Secret no profile recognises.
fn odd_secret() -> k8s_openapi::api::core::v1::Secret {
    serde_json::from_value(json!({
        "metadata": {"name": "odd", "namespace": "shop"},
        "data": {"login": "eA==", "secret-token": "eA=="},
    }))
    .unwrap()
}

#[test]
fn annotation_errors() {
    let table: &[(&[(&str, &str)], &str)] = &[
        (
            &[("dbbind.io/password", "hunter2")],
            "dbbind: annotation \"dbbind.io/password\" is not allowed: a password must come from a Secret; name it in dbbind.io/secret (and map an unusual key name with dbbind.io/keys: password=<key>)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/password.reporting", "hunter2"),
            ],
            "dbbind: annotation \"dbbind.io/password.reporting\" is not allowed: a password must come from a Secret; name it in dbbind.io/secret (and map an unusual key name with dbbind.io/keys: password=<key>)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/pasword", "hunter2"),
            ],
            &format!(
                "dbbind: unknown annotation \"dbbind.io/pasword\"; known annotations: {KNOWN}"
            ),
        ),
        (
            &[("dbbind.io/secret", "")],
            "dbbind: annotation \"dbbind.io/secret\": must name a Secret in the pod's namespace",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/pooler", "orders-pooler-rw"),
            ],
            "dbbind: annotation \"dbbind.io/pooler\": names the pooler for dbbind.io/endpoint: pooler, which this binding does not ask for",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/endpoint", "pooler"),
                ("dbbind.io/pooler", "Orders_Pooler"),
            ],
            "dbbind: annotation \"dbbind.io/pooler\": \"Orders_Pooler\" is not a pooler name (the name of the operator's Pooler, a DNS label)",
        ),
        (
            &[("dbbind.io/secret", "Orders_DB")],
            "dbbind: annotation \"dbbind.io/secret\": \"Orders_DB\" is not a valid Secret name (a DNS subdomain: lower case letters, digits, '-' and '.')",
        ),
        (
            &[(
                "dbbind.io/secret.abcdefghij-abcdefghij-abcdefghij",
                "orders-db-conn",
            )],
            "dbbind: annotation \"dbbind.io/secret.abcdefghij-abcdefghij-abcdefghij\": alias \"abcdefghij-abcdefghij-abcdefghij\" must be a DNS label of at most 30 characters ([a-z0-9]([-a-z0-9]*[a-z0-9])?)",
        ),
        (
            &[("dbbind.io/secret.Reporting", "orders-db-conn")],
            "dbbind: annotation \"dbbind.io/secret.Reporting\": alias \"Reporting\" must be a DNS label of at most 30 characters ([a-z0-9]([-a-z0-9]*[a-z0-9])?)",
        ),
        (
            &[("dbbind.io/secret.db", "orders-db-conn")],
            "dbbind: annotation \"dbbind.io/secret.db\": alias \"db\" is the default binding's name; use the annotations without a suffix",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/profile", "mysql"),
            ],
            "dbbind: annotation \"dbbind.io/profile\": unknown profile \"mysql\"; profiles: auto, servicebinding, cnpg, edb, crunchy, crunchy-pgbouncer, zalando, bitnami, bitnami-ha, osba, cockroachdb, stackgres, aiven, kubeblocks, crossplane, a8s, vault-database, rds, generic, url",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/port", "abc"),
            ],
            "dbbind: annotation \"dbbind.io/port\": \"abc\" is not a port number (1-65535)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/port", "0"),
            ],
            "dbbind: annotation \"dbbind.io/port\": \"0\" is not a port number (1-65535)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/port", "70000"),
            ],
            "dbbind: annotation \"dbbind.io/port\": \"70000\" is not a port number (1-65535)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/port", "+5432"),
            ],
            "dbbind: annotation \"dbbind.io/port\": \"+5432\" is not a port number (1-65535)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/host", "pg bouncer"),
            ],
            "dbbind: annotation \"dbbind.io/host\": must be a host name or address without spaces, at most 253 characters",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/user", ""),
            ],
            "dbbind: annotation \"dbbind.io/user\": must be a user name of 1 to 63 characters",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/sslmode", "sometimes"),
            ],
            "dbbind: annotation \"dbbind.io/sslmode\": \"sometimes\" is not an sslmode; use one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/containers", "app,app"),
            ],
            "dbbind: annotation \"dbbind.io/containers\": container \"app\" is listed twice",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/containers", "app,,sidecar"),
            ],
            "dbbind: annotation \"dbbind.io/containers\": \"app,,sidecar\" has an empty entry",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/containers", "worker"),
            ],
            "dbbind: annotation \"dbbind.io/containers\" names container \"worker\", which the pod does not have; its containers and init containers: [app, sidecar]",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/containers.app", "app"),
            ],
            "dbbind: annotation \"dbbind.io/containers.app\": dbbind.io/containers applies to the whole pod and takes no \".<alias>\" suffix",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/on-conflict", "maybe"),
            ],
            "dbbind: annotation \"dbbind.io/on-conflict\": \"maybe\" is not allowed; use \"keep\" or \"deny\"",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/inject", "maybe"),
            ],
            "dbbind: annotation \"dbbind.io/inject\": \"maybe\" is not allowed; use \"true\" or \"false\"",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/files", "yes"),
            ],
            "dbbind: annotation \"dbbind.io/files\": \"yes\" is not allowed; use \"true\" or \"false\"",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/env", "postgres,mysql"),
            ],
            "dbbind: annotation \"dbbind.io/env\": unknown set \"mysql\"; use postgres, libpq, database-url, spring, quarkus, jdbc, dotnet or none",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/env", "none,postgres"),
            ],
            "dbbind: annotation \"dbbind.io/env\": \"none\" cannot be combined with other sets",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/env", "postgres,postgres"),
            ],
            "dbbind: annotation \"dbbind.io/env\": \"postgres\" is listed twice",
        ),
        (
            &[
                ("dbbind.io/secret.reporting", "orders-db-conn"),
                ("dbbind.io/env.reporting", "libpq"),
            ],
            "dbbind: annotation \"dbbind.io/env.reporting\": the libpq set (PGHOST, …) is for the default binding only: libpq reads one connection from its variables",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/keys", "user"),
            ],
            "dbbind: annotation \"dbbind.io/keys\": \"user\" is not a field=secretKey pair",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/keys", "login=username"),
            ],
            "dbbind: annotation \"dbbind.io/keys\": unknown field \"login\"; fields: host, port, database, user, password, uri, sslmode",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/keys", "user=a/b"),
            ],
            "dbbind: annotation \"dbbind.io/keys\": \"a/b\" is not a valid Secret key ([-._a-zA-Z0-9]+)",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/keys", "user=a, user=b"),
            ],
            "dbbind: annotation \"dbbind.io/keys\": field user is mapped twice",
        ),
        (
            &[
                ("dbbind.io/profile.reporting", "generic"),
                ("dbbind.io/secret", "orders-db-conn"),
            ],
            "dbbind: binding \"reporting\" has dbbind.io/profile.reporting but no dbbind.io/secret.reporting naming its Secret",
        ),
        (
            &[("dbbind.io/on-conflict", "deny")],
            "dbbind: dbbind.io/on-conflict given, but no binding is declared; add dbbind.io/secret naming the Secret to bind",
        ),
    ];
    for (annotations, expected) in table {
        assert_eq!(&deny_message(annotations), expected, "{annotations:?}");
    }
}

#[test]
fn resolution_errors() {
    let table: &[(&[(&str, &str)], &str)] = &[
        (
            &[("dbbind.io/secret", "missing-db")],
            "dbbind: Secret \"missing-db\" not found in namespace \"shop\": cannot detect a profile for a missing Secret; create the Secret first, or name a profile in \"dbbind.io/profile\"",
        ),
        (
            &[("dbbind.io/secret.reporting", "missing-db")],
            "dbbind: Secret \"missing-db\" not found in namespace \"shop\": cannot detect a profile for a missing Secret; create the Secret first, or name a profile in \"dbbind.io/profile.reporting\"",
        ),
        (
            &[("dbbind.io/secret", "orders-db-master")],
            "dbbind: binding \"db\": required field host has no source: profile \"rds\" tried keys [host] in Secret \"orders-db-master\", which has keys [password, username]; set \"dbbind.io/host\", or map a key with \"dbbind.io/keys\"",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/keys", "password=db-password"),
            ],
            "dbbind: annotation \"dbbind.io/keys\" maps password to key \"db-password\", which Secret \"orders-db-conn\" does not have; keys present: [database, host, password, port, username]",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/profile", "url"),
            ],
            "dbbind: binding \"db\": required field uri has no source: profile \"url\" tried keys [DATABASE_URL, uri, url, POSTGRES_URL] in Secret \"orders-db-conn\", which has keys [database, host, password, port, username]; map a key with \"dbbind.io/keys\": uri=<key>",
        ),
        (
            &[(
                "dbbind.io/secret",
                "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
            )],
            "dbbind: binding \"db\": required field database has no source: profile \"zalando\" reads it from no Secret key; set \"dbbind.io/database\", or map a key with \"dbbind.io/keys\"",
        ),
        (
            &[
                ("dbbind.io/secret", "orders-db-conn"),
                ("dbbind.io/endpoint", "ro"),
            ],
            "dbbind: annotation \"dbbind.io/endpoint\": profile \"generic\" has no endpoint roles; profiles that have them: cnpg, edb, crunchy, zalando, stackgres",
        ),
        (
            &[
                (
                    "dbbind.io/secret",
                    "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
                ),
                ("dbbind.io/endpoint", "r"),
            ],
            "dbbind: annotation \"dbbind.io/endpoint\": profile \"zalando\" has no \"r\" endpoint; its roles: rw, ro",
        ),
        (
            &[
                (
                    "dbbind.io/secret",
                    "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
                ),
                ("dbbind.io/endpoint", "ro"),
                ("dbbind.io/host", "hippo-replicas"),
            ],
            "dbbind: annotations \"dbbind.io/endpoint\" and \"dbbind.io/host\" both choose the host; keep one",
        ),
        (
            &[
                ("dbbind.io/secret", "not-a-cluster"),
                ("dbbind.io/profile", "cnpg"),
                ("dbbind.io/endpoint", "ro"),
            ],
            "dbbind: annotation \"dbbind.io/endpoint\": cannot tell the database cluster of Secret \"not-a-cluster\": it has no label \"cnpg.io/cluster\" and a name profile \"cnpg\" does not recognise; set \"dbbind.io/host\" instead",
        ),
        (
            &[
                ("dbbind.io/secret", "pg-main-app"),
                ("dbbind.io/profile", "cnpg"),
                ("dbbind.io/endpoint", "pooler"),
            ],
            "dbbind: annotation \"dbbind.io/endpoint\": profile \"cnpg\" reaches the operator's pooler by its name: set \"dbbind.io/pooler\" to the pooler's name",
        ),
        (
            &[
                (
                    "dbbind.io/secret",
                    "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
                ),
                ("dbbind.io/endpoint", "pooler"),
            ],
            "dbbind: annotation \"dbbind.io/endpoint\": profile \"zalando\" has no \"pooler\" endpoint; its roles: rw, ro",
        ),
    ];
    for (annotations, expected) in table {
        assert_eq!(&deny_message(annotations), expected, "{annotations:?}");
    }
}

#[test]
fn an_unrecognised_secret_is_denied_with_its_keys_and_what_was_tried() {
    let message = deny_message(&[("dbbind.io/secret", "odd")]);
    assert!(
        message.starts_with("dbbind: cannot detect a profile for Secret \"odd\" (type Opaque, keys [login, secret-token]); tried: servicebinding (type servicebinding.io/postgresql); cnpg (label cnpg.io/cluster or label app.kubernetes.io/managed-by=cloudnative-pg or owner postgresql.cnpg.io/Cluster); "),
        "{message}"
    );
    assert!(
        message.ends_with("; generic (keys for host, user, password); url (only keys of DATABASE_URL/uri/url/POSTGRES_URL); name a profile in \"dbbind.io/profile\""),
        "{message}"
    );
    assert!(
        !message.contains("crunchy-pgbouncer"),
        "never auto-detected: {message}"
    );
}

/// A pod whose containers already define some of what dbbind would write.
fn pod_with(
    annotations: &[(&str, &str)],
    container: serde_json::Value,
    volumes: serde_json::Value,
) -> Pod {
    let mut pod = to_json(&pod(annotations, &[]));
    pod["spec"]["containers"] = json!([container]);
    if !volumes.is_null() {
        pod["spec"]["volumes"] = volumes;
    }
    serde_json::from_value(pod).unwrap()
}

#[test]
fn conflicts_and_reserved_names() {
    let own_host = json!({"name": "app", "image": "app:1", "env": [{"name": "POSTGRES_HOST", "value": "localhost"}]});
    let message = deny_pod(&pod_with(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/on-conflict", "deny"),
        ],
        own_host,
        serde_json::Value::Null,
    ));
    assert_eq!(
        message,
        "dbbind: container \"app\" already defines POSTGRES_HOST, and dbbind.io/on-conflict is \"deny\""
    );

    let relative_root = json!({"name": "app", "image": "app:1", "env": [{"name": "SERVICE_BINDING_ROOT", "value": "bindings"}]});
    let message = deny_pod(&pod_with(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/files", "true"),
        ],
        relative_root,
        serde_json::Value::Null,
    ));
    assert_eq!(
        message,
        "dbbind: container \"app\" sets SERVICE_BINDING_ROOT to something other than an absolute path; dbbind needs a literal path to know where to mount the binding files"
    );

    let message = deny_pod(&pod_with(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/files", "true"),
        ],
        json!({"name": "app", "image": "app:1"}),
        json!([{"name": "dbbind-db", "emptyDir": {}}]),
    ));
    assert_eq!(
        message,
        "dbbind: the pod already has a volume named \"dbbind-db\", a name dbbind reserves for binding \"db\"'s files"
    );
}

#[test]
fn keep_leaves_the_containers_definition_and_warns() {
    let pod = pod_with(
        &[("dbbind.io/secret", "orders-db-conn")],
        json!({"name": "app", "image": "app:1", "env": [{"name": "POSTGRES_HOST", "value": "localhost"}]}),
        serde_json::Value::Null,
    );
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let decision = decide(&pod, "shop", &store);
    assert!(warnings(&decision).contains(
        &"dbbind: container \"app\" already defines POSTGRES_HOST; kept its own definition (dbbind.io/on-conflict: keep)".to_owned()
    ));
    let env = env_summary(&apply(&pod, &decision), "app");
    assert_eq!(env[0], "POSTGRES_PORT=secret:orders-db-conn/port");
    assert!(env.contains(&"POSTGRES_HOST=localhost".to_owned()));
    assert!(!env.iter().any(|e| e.starts_with("POSTGRES_HOST=secret")));
}

#[test]
fn missing_secret_with_explicit_profile_is_admitted_with_a_warning() {
    let pod = pod(
        &[
            ("dbbind.io/secret", "later-db"),
            ("dbbind.io/profile", "generic"),
        ],
        &["app"],
    );
    let decision = decide(&pod, "shop", &store_of(&[]));
    assert_eq!(
        warnings(&decision)[0],
        "dbbind: Secret \"later-db\" not found in namespace \"shop\"; the pod refers to it through profile \"generic\" and starts once it exists"
    );
    let env = env_summary(&apply(&pod, &decision), "app");
    assert_eq!(
        env,
        vec![
            "POSTGRES_HOST=secret:later-db/host",
            "POSTGRES_PORT=secret:later-db/port?",
            "POSTGRES_DB=secret:later-db/database?",
            "POSTGRES_USER=secret:later-db/username",
            "POSTGRES_PASSWORD=secret:later-db/password",
            "POSTGRES_URL=secret:later-db/uri?",
            "POSTGRES_SSLMODE=secret:later-db/sslmode?",
        ]
    );
}

#[test]
fn pods_that_ask_for_nothing_are_left_alone() {
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    for annotations in [
        &[][..],
        &[("team", "shop")][..],
        &[
            ("dbbind.io/inject", "false"),
            ("dbbind.io/secret", "orders-db-conn"),
        ][..],
        // Opting out wins even over malformed neighbours.
        &[("dbbind.io/inject", "false"), ("dbbind.io/port", "abc")][..],
        &[("dbbind.io/inject", "true")][..],
        &[("dbbind.io/status", "injected")][..],
    ] {
        let decision = decide(&pod(annotations, &["app"]), "shop", &store);
        assert_eq!(decision, Decision::unchanged(), "{annotations:?}");
    }
}

#[test]
fn restart_on_rotation_is_a_pod_key_and_files_only_is_warned() {
    let store = store_of(&[&fixture_secret("generic-external.yaml")]);
    let by_env = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/restart-on-rotation", "true"),
        ],
        &["app"],
    );
    let decision = decide(&by_env, "shop", &store);
    assert!(
        !warnings(&decision)
            .iter()
            .any(|warning| warning.contains("restart-on-rotation")),
        "{:?}",
        warnings(&decision)
    );
    assert!(patch_ops(&decision) > 0);

    let files_only = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/env", "none"),
            ("dbbind.io/files", "true"),
            ("dbbind.io/restart-on-rotation", "true"),
        ],
        &["app"],
    );
    assert_eq!(
        warnings(&decide(&files_only, "shop", &store))[0],
        "dbbind: dbbind.io/restart-on-rotation: this pod binds by files only, which the kubelet updates in place when the Secret changes; no restart is needed and none will be made"
    );

    let bad = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/restart-on-rotation", "yes"),
        ],
        &["app"],
    );
    assert_eq!(
        denial(&decide(&bad, "shop", &store)),
        "dbbind: annotation \"dbbind.io/restart-on-rotation\": \"yes\" is not allowed; use \"true\" or \"false\""
    );
    // dbbind's own rollout annotation comes back on the template and its pods: never unknown
    // (found on the real node: the workload check denied dbbind's own rollout patch).
    let rolled = pod(
        &[
            ("dbbind.io/secret", "orders-db-conn"),
            ("dbbind.io/restart-on-rotation", "true"),
            ("dbbind.io/restartedAt", "2026-12-02T16:00:45Z"),
        ],
        &["app"],
    );
    assert!(patch_ops(&decide(&rolled, "shop", &store)) > 0);
    let alone = pod(&[("dbbind.io/restart-on-rotation", "true")], &["app"]);
    assert!(denial(&decide(&alone, "shop", &store)).contains("no binding is declared"));
}
