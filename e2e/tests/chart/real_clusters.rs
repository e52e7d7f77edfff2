//! Values real clusters need: networking, security contexts, the PDB, deadlines.

use super::*;

fn pod_spec(objects: &[Value]) -> Value {
    find(objects, "Deployment", "dbbind")["spec"]["template"]["spec"].clone()
}

fn env_value(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].clone())
}

/// Values real clusters need, as cert-manager's and Kyverno's charts have them: the host
/// network with ports of one's choosing, DNS policy, more flags and environment, security
/// contexts, and where the NetworkPolicy admits from.
#[test]
fn values_real_clusters_need() {
    // The host network (EKS with a CNI of its own, GKE private clusters' port 10250).
    let host = pod_spec(
        &render(&[
            "hostNetwork=true",
            "ports.webhook=10250",
            "ports.admin=10251",
        ])
        .unwrap(),
    );
    assert_eq!(host["hostNetwork"], true);
    assert_eq!(host["dnsPolicy"], "ClusterFirstWithHostNet");
    let container = &host["containers"][0];
    assert_eq!(
        env_value(container, "DBBIND_LISTEN"),
        Some(json!("0.0.0.0:10250"))
    );
    assert_eq!(
        env_value(container, "DBBIND_ADMIN_LISTEN"),
        Some(json!("0.0.0.0:10251"))
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "webhook", "containerPort": 10250}, {"name": "admin", "containerPort": 10251}])
    );
    // The Service still answers on 443 and sends to the named port.
    let objects = render(&["hostNetwork=true", "ports.webhook=10250"]).unwrap();
    assert_eq!(
        find(&objects, "Service", "dbbind")["spec"]["ports"][0],
        json!({"name": "webhook", "port": 443, "targetPort": "webhook"})
    );
    let default = pod_spec(&render(&[]).unwrap());
    assert!(default["hostNetwork"].is_null() && default["dnsPolicy"].is_null());
    assert_eq!(
        pod_spec(&render(&["dnsPolicy=Default"]).unwrap())["dnsPolicy"],
        "Default"
    );

    // More flags and environment: for serve, and (the environment) for the hooks too, which
    // reach the API server the same way.
    let objects = render(&[
        "extraArgs={--max-connections=2048}",
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST",
        "extraEnv[0].value=10.1.2.3",
    ])
    .unwrap();
    let container = &pod_spec(&objects)["containers"][0];
    assert_eq!(
        container["args"],
        json!(["serve", "--max-connections=2048"])
    );
    assert_eq!(
        env_value(container, "KUBERNETES_SERVICE_HOST"),
        Some(json!("10.1.2.3"))
    );
    let job =
        &find(&objects, "Job", "dbbind-unregister")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(job, "KUBERNETES_SERVICE_HOST"),
        Some(json!("10.1.2.3"))
    );
    let test = &find(&objects, "Pod", "dbbind-test")["spec"]["containers"][0];
    assert_eq!(
        env_value(test, "KUBERNETES_SERVICE_HOST"),
        Some(json!("10.1.2.3"))
    );

    // Security contexts are values, with the locked-down defaults.
    let spec = pod_spec(
        &render(&[
            "podSecurityContext.runAsUser=1001",
            "podSecurityContext.fsGroup=1001",
            "securityContext.readOnlyRootFilesystem=false",
            "priorityClassName=system-cluster-critical",
        ])
        .unwrap(),
    );
    assert_eq!(spec["securityContext"]["runAsUser"], 1001);
    assert_eq!(spec["securityContext"]["fsGroup"], 1001);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        false
    );
    assert_eq!(
        spec["containers"][0]["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");

    // The NetworkPolicy admits the webhook and admin ports from the sources given, each.
    let objects = render(&[
        "networkPolicy.enabled=true",
        "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/16",
        "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ])
    .unwrap();
    assert_eq!(
        find(&objects, "NetworkPolicy", "dbbind")["spec"]["ingress"],
        json!([
            {"ports": [{"port": "webhook", "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]},
            {"ports": [{"port": "admin", "protocol": "TCP"}], "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        ])
    );
    let open = render(&["networkPolicy.enabled=true"]).unwrap();
    let ingress = &find(&open, "NetworkPolicy", "dbbind")["spec"]["ingress"];
    assert!(ingress[0]["from"].is_null() && ingress[1]["from"].is_null());

    // An umbrella chart's global values are accepted.
    render(&["global.imageRegistry=registry.example.com"]).unwrap();
}

/// The PodDisruptionBudget is rendered only when one replica can still be evicted: a single
/// replica never blocks a node drain.
#[test]
fn the_pdb_is_rendered_only_when_a_drain_can_satisfy_it() {
    let pdbs = |sets: &[&str]| {
        render(sets)
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .count()
    };
    assert_eq!(pdbs(&[]), 1);
    assert_eq!(pdbs(&["replicaCount=1"]), 0);
    assert_eq!(
        pdbs(&["replicaCount=3", "podDisruptionBudget.minAvailable=3"]),
        0
    );
    assert_eq!(
        pdbs(&["replicaCount=3", "podDisruptionBudget.minAvailable=2"]),
        1
    );
    assert_eq!(
        pdbs(&["replicaCount=1", "podDisruptionBudget.minAvailable=50%"]),
        0
    );
    assert_eq!(
        pdbs(&["replicaCount=2", "podDisruptionBudget.minAvailable=50%"]),
        1
    );
    assert_eq!(pdbs(&["podDisruptionBudget.enabled=false"]), 0);
}

/// dbbind's request deadline stays below every webhook's timeout: two seconds less than the
/// shorter one, whichever that is.
#[test]
fn the_request_deadline_is_below_every_webhook_timeout() {
    let deadline = |sets: &[&str]| {
        env_value(
            &pod_spec(&render(sets).unwrap())["containers"][0],
            "DBBIND_REQUEST_TIMEOUT",
        )
    };
    assert_eq!(deadline(&[]), Some(json!("3s")));
    assert_eq!(
        deadline(&["webhook.workloads.timeoutSeconds=15"]),
        Some(json!("8s"))
    );
    assert_eq!(
        deadline(&[
            "webhook.timeoutSeconds=4",
            "webhook.workloads.timeoutSeconds=30"
        ]),
        Some(json!("2s"))
    );
    assert_eq!(
        deadline(&["webhook.workloads.enabled=false"]),
        Some(json!("8s"))
    );
    for sets in [
        vec![],
        vec![
            "webhook.timeoutSeconds=3",
            "webhook.workloads.timeoutSeconds=3",
        ],
    ] {
        let objects = render(&sets).unwrap();
        let seconds: u64 = env_value(
            &pod_spec(&objects)["containers"][0],
            "DBBIND_REQUEST_TIMEOUT",
        )
        .unwrap()
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
        let mutating = &find(&objects, "MutatingWebhookConfiguration", "dbbind")["webhooks"];
        let validating = &find(
            &objects,
            "ValidatingWebhookConfiguration",
            "dbbind-workloads",
        )["webhooks"];
        for webhook in mutating
            .as_array()
            .unwrap()
            .iter()
            .chain(validating.as_array().unwrap())
        {
            let timeout = webhook["timeoutSeconds"].as_u64().unwrap();
            assert!(
                seconds < timeout,
                "{sets:?}: deadline {seconds}s, {} timeout {timeout}s",
                webhook["name"]
            );
        }
    }
}
