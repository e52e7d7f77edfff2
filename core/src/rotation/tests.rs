use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn owner(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        controller: Some(controller),
        block_owner_deletion: None,
    }
}

/// The restart target of pod `pod` (uid `uid-<pod>`) in namespace shop.
fn target(
    pod: &str,
    owner: Option<&OwnerReference>,
    replica_set_owner: impl Fn(&str) -> Option<OwnerReference>,
) -> Restart {
    let uid = format!("uid-{pod}");
    restart_target(
        "shop",
        PodRef {
            name: pod,
            uid: &uid,
        },
        owner,
        replica_set_owner,
    )
}

fn spec(value: serde_json::Value) -> PodSpec {
    serde_json::from_value(value).unwrap()
}

#[test]
fn only_true_opts_in() {
    assert!(opted_in(&annotations(&[(RESTART_ON_ROTATION, "true")])));
    for value in ["false", "True", "yes", ""] {
        assert!(
            !opted_in(&annotations(&[(RESTART_ON_ROTATION, value)])),
            "{value}"
        );
    }
    assert!(!opted_in(&annotations(&[])));
}

#[test]
fn bound_secrets_are_read_from_the_bindings_annotation() {
    let pod = annotations(&[(
        BINDINGS,
        "db=orders-db/generic,reporting=reports.credentials.postgresql.acid.zalan.do/zalando",
    )]);
    let secrets: Vec<_> = bound_secrets(&pod).into_iter().collect();
    assert_eq!(
        secrets,
        ["orders-db", "reports.credentials.postgresql.acid.zalan.do"]
    );
    assert!(bound_secrets(&annotations(&[(BINDINGS, "garbage,=/x")])).is_empty());
    assert!(bound_secrets(&annotations(&[])).is_empty());
}

#[test]
fn only_secrets_read_through_the_environment_need_a_restart() {
    let pod_spec = spec(json!({
        "initContainers": [{"name": "migrate", "envFrom": [{"secretRef": {"name": "migrations"}}]}],
        "containers": [
            {"name": "app", "env": [
                {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "orders-db", "key": "password"}}},
                {"name": "PLAIN", "value": "x"},
            ]},
            {"name": "sidecar"},
        ],
        "volumes": [{"name": "db", "projected": {"sources": [{"secret": {"name": "files-db"}}]}}],
    }));
    let env: Vec<_> = env_secrets(&pod_spec).into_iter().collect();
    assert_eq!(env, ["migrations", "orders-db"]);

    let bindings = "db=orders-db/generic,files=files-db/generic";
    let opted = annotations(&[(BINDINGS, bindings), (RESTART_ON_ROTATION, "true")]);
    let needing: Vec<_> = secrets_needing_restart(&opted, &pod_spec)
        .into_iter()
        .collect();
    // files-db is bound by files only; migrations is not dbbind's to restart for.
    assert_eq!(needing, ["orders-db"]);
    let not_opted = annotations(&[(BINDINGS, bindings)]);
    assert!(secrets_needing_restart(&not_opted, &pod_spec).is_empty());
}

#[test]
fn the_owner_walk_finds_the_top_controller() {
    let no_lookup = |_: &str| -> Option<OwnerReference> { panic!("no ReplicaSet lookup expected") };
    let rollout = |kind, name: &str| {
        Restart::Rollout(Workload {
            namespace: "shop".to_owned(),
            kind,
            name: name.to_owned(),
        })
    };
    let event = |api_version: &str, kind: &str, name: &str| {
        Restart::EventOnly(Involved {
            namespace: "shop".to_owned(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: format!("uid-{name}"),
        })
    };

    // ReplicaSet → Deployment.
    let rs = owner("apps/v1", "ReplicaSet", "orders-7d9f", true);
    let rolled = target("orders-7d9f-x", Some(&rs), |name| {
        assert_eq!(name, "orders-7d9f");
        Some(owner("apps/v1", "Deployment", "orders", true))
    });
    assert_eq!(rolled, rollout(WorkloadKind::Deployment, "orders"));

    for (kind, expected) in [
        ("StatefulSet", WorkloadKind::StatefulSet),
        ("DaemonSet", WorkloadKind::DaemonSet),
    ] {
        let direct = owner("apps/v1", kind, "db-client", true);
        assert_eq!(
            target("p", Some(&direct), no_lookup),
            rollout(expected, "db-client")
        );
    }

    // What dbbind cannot roll gets an Event: a bare Pod, a Job, a bare ReplicaSet, a ReplicaSet
    // of another controller (an Argo Rollout), a custom controller.
    assert_eq!(
        target("lonely", None, no_lookup),
        event("v1", "Pod", "lonely")
    );
    let job = owner("batch/v1", "Job", "nightly-123", true);
    assert_eq!(
        target("p", Some(&job), no_lookup),
        event("batch/v1", "Job", "nightly-123")
    );
    assert_eq!(
        target("p", Some(&rs), |_| None),
        event("apps/v1", "ReplicaSet", "orders-7d9f")
    );
    assert_eq!(
        target("p", Some(&rs), |_| Some(owner(
            "argoproj.io/v1alpha1",
            "Rollout",
            "orders",
            true
        ))),
        event("argoproj.io/v1alpha1", "Rollout", "orders")
    );
    // A kind of the same name in another group is not apps/v1's.
    let lookalike = owner("example.com/v1", "Deployment", "x", true);
    assert_eq!(
        target("p", Some(&lookalike), no_lookup),
        event("example.com/v1", "Deployment", "x")
    );
}

#[test]
fn the_controller_is_the_owner_marked_so() {
    let owners = [
        owner("v1", "ConfigMap", "not-me", false),
        owner("apps/v1", "ReplicaSet", "me", true),
    ];
    assert_eq!(controller_of(&owners).unwrap().name, "me");
    assert!(controller_of(&owners[..1]).is_none());
}

#[test]
fn the_patch_annotates_the_template() {
    assert_eq!(
        restarted_at_patch("2026-12-02T10:00:00Z"),
        json!({"spec": {"template": {"metadata": {"annotations": {"dbbind.io/restartedAt": "2026-12-02T10:00:00Z"}}}}})
    );
}

fn workload(name: &str) -> Workload {
    Workload {
        namespace: "shop".to_owned(),
        kind: WorkloadKind::Deployment,
        name: name.to_owned(),
    }
}

#[test]
fn one_rollout_per_workload_however_many_pods_and_secrets() {
    let mut limiter = RolloutLimiter::new(60);
    // Three pods of orders, two Secrets rotated together; one pod of billing.
    for _ in 0..3 {
        limiter.offer(workload("orders"), "orders-db");
    }
    limiter.offer(workload("orders"), "reports-db");
    limiter.offer(workload("billing"), "orders-db");
    let due = limiter.due(1_000);
    assert_eq!(due.len(), 2);
    let orders = due.iter().find(|(w, _)| w.name == "orders").unwrap();
    assert_eq!(orders.1.len(), 2, "both Secrets named in one rollout");
    assert!(limiter.due(1_000).is_empty(), "nothing owed twice");
    assert_eq!(limiter.next_due(), None);
}

#[test]
fn a_rotation_within_the_interval_waits_and_coalesces() {
    let mut limiter = RolloutLimiter::new(60);
    limiter.offer(workload("orders"), "orders-db");
    assert_eq!(limiter.due(1_000).len(), 1);
    // Rotated again 10 s later, and once more: one rollout, when the interval has passed.
    limiter.offer(workload("orders"), "orders-db");
    limiter.offer(workload("orders"), "orders-db");
    assert_eq!(limiter.next_due(), Some(1_060));
    assert!(limiter.due(1_010).is_empty());
    assert!(limiter.due(1_059).is_empty());
    let due = limiter.due(1_060);
    assert_eq!(due.len(), 1);
    assert_eq!(limiter.next_due(), None);
    // Another workload is not held back by this one's interval.
    limiter.offer(workload("billing"), "orders-db");
    assert_eq!(limiter.due(1_061).len(), 1);
}
