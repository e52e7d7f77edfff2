//! What the fault checks share: the certificate Secret and caBundles as the API server holds them, pods created through the API server, reviews posted to one replica, and a prober that counts answers.

use super::*;

/// The certificate Secret's keys, decoded.
pub(crate) async fn cert_secret(client: &kube::Client) -> Result<Option<BTreeMap<String, String>>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "dbbind");
    Ok(secrets.get_opt(CERT_SECRET).await?.map(|secret| {
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()))
            .collect()
    }))
}

/// The certificate Secret's `ca-bundle.crt`: what a client of the replicas should trust.
pub(crate) async fn stored_bundle(client: &kube::Client) -> Result<String> {
    let secret = cert_secret(client)
        .await?
        .ok_or_else(|| anyhow!("no certificate Secret"))?;
    Ok(secret.get("ca-bundle.crt").cloned().unwrap_or_default())
}

/// The caBundle of every webhook of both configurations.
pub(crate) async fn ca_bundles(client: &kube::Client) -> Result<Vec<String>> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let decode = |bundle: Option<k8s_openapi::ByteString>| {
        String::from_utf8_lossy(&bundle.map(|b| b.0).unwrap_or_default()).into_owned()
    };
    let mut bundles: Vec<String> = (mutating.get("dbbind").await?.webhooks)
        .unwrap_or_default()
        .into_iter()
        .map(|webhook| decode(webhook.client_config.ca_bundle))
        .collect();
    bundles.extend(
        (validating.get("dbbind-workloads").await?.webhooks)
            .unwrap_or_default()
            .into_iter()
            .map(|webhook| decode(webhook.client_config.ca_bundle)),
    );
    Ok(bundles)
}

pub(crate) fn certificates(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .flatten()
        .map(|der| der.to_vec())
        .collect()
}

/// A bare Pod with these annotations, created through the API server in `namespace`.
pub(crate) async fn create_pod_in(
    client: &kube::Client,
    namespace: &str,
    annotations: &[(&str, &str)],
) -> std::result::Result<Pod, kube::Error> {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)))
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{namespace}-"), "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]},
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
}

pub(crate) async fn create_pod(
    client: &kube::Client,
    annotations: &[(&str, &str)],
) -> std::result::Result<Pod, kube::Error> {
    create_pod_in(client, NAMESPACE, annotations).await
}

/// Where the Pod's `POSTGRES_HOST` comes from: the Secret and key it references.
pub(crate) fn host_reference(pod: &Pod) -> Option<(String, String)> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let env = container.env.as_ref()?;
    let host = env.iter().find(|var| var.name == "POSTGRES_HOST")?;
    let key = host.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((key.name.clone(), key.key.clone()))
}

pub(crate) async fn expect_bound(
    client: &kube::Client,
    secret: &str,
    host_key: &str,
) -> Result<()> {
    let pod = create_pod(client, &[("dbbind.io/secret", secret)]).await?;
    let found = host_reference(&pod);
    if found != Some((secret.to_owned(), host_key.to_owned())) {
        return Err(anyhow!(
            "a Pod bound to {secret}: POSTGRES_HOST from {found:?}, expected key {host_key}"
        ));
    }
    Ok(())
}

/// An AdmissionReview of a Pod CREATE in the opted-in namespace bound to `secret`, as the API
/// server sends it (a captured one, `tests/fixtures/admission/`).
pub(crate) fn review(secret: &str, uid: &str) -> Result<Value> {
    review_in(NAMESPACE, secret, uid)
}

pub(crate) fn review_in(namespace: &str, secret: &str, uid: &str) -> Result<Value> {
    let path = tools::repo_root().join("tests/fixtures/admission/create-replicaset-pod.json");
    let mut review: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    review["request"]["uid"] = json!(uid);
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["annotations"] = json!({"dbbind.io/secret": secret});
    Ok(review)
}

/// Sends a review straight to every replica, verifying its certificate against `roots_pem`:
/// each must allow it with a patch that binds `POSTGRES_HOST`, and be ready.
pub(crate) async fn every_replica_binds(faults: &Faults, roots_pem: &str, uid: &str) -> Result<()> {
    for replica in &faults.replicas {
        replica_binds(replica, roots_pem, uid).await?;
    }
    Ok(())
}

pub(crate) async fn replica_binds(replica: &Dbbind, roots_pem: &str, uid: &str) -> Result<()> {
    let (status, answer) = post_review(
        replica.listen_port,
        roots_pem,
        &review(GENERIC_SECRET, uid)?,
    )
    .await?;
    let response = &answer["response"];
    let patch = STANDARD
        .decode(response["patch"].as_str().unwrap_or_default())
        .map_err(|e| anyhow!("patch: {e}"))?;
    if status != 200
        || response["allowed"] != true
        || !String::from_utf8_lossy(&patch).contains("POSTGRES_HOST")
    {
        return Err(anyhow!(
            "replica on port {} answered {status}: {answer}",
            replica.listen_port
        ));
    }
    let (ready, body) = replica.admin_get("/readyz")?;
    if ready != 200 {
        return Err(anyhow!(
            "replica on port {} not ready: {body}",
            replica.listen_port
        ));
    }
    Ok(())
}

/// A Secret created after a fault must become bindable: the replicas' Secret caches recovered.
/// Returns how long that took.
pub(crate) async fn new_secret_becomes_bindable(faults: &Faults, name: &str) -> Result<Duration> {
    let client = faults.plane.client().await?;
    apply(
        &faults.plane,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nstringData: {{host: {name}.db.internal, port: '5432', database: app, username: app, password: fault-password}}\n"
        ),
    )?;
    let started = Instant::now();
    let mut last = String::new();
    // Every replica's cache must have it: pods go through the forwarder in turn, so ask each
    // replica directly too.
    while started.elapsed() < Duration::from_secs(90) {
        let through_api = create_pod(&client, &[("dbbind.io/secret", name)]).await;
        let direct = async {
            let roots = stored_bundle(&client).await?;
            let mut all = true;
            for replica in &faults.replicas {
                let (_, answer) =
                    post_review(replica.listen_port, &roots, &review(name, "recovery")?).await?;
                all &= answer["response"]["allowed"] == true;
            }
            Ok::<_, Error>(all)
        };
        match (through_api, direct.await) {
            (Ok(pod), Ok(true)) if host_reference(&pod).is_some() => return Ok(started.elapsed()),
            (pod, direct) => last = format!("{:?} / {:?}", pod.map(|_| ()), direct),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(anyhow!(
        "a Secret created after the fault was not bindable within 90 s; last: {last}\n{}",
        faults.logs()
    ))
}

/// Creates Pods through the API server every 100 ms until stopped: the user's view of an
/// outage. Returns how many were created and every failure.
pub(crate) struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Prober {
    pub(crate) fn start(client: kube::Client) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut created, mut failures) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                match create_pod(&client, &[("dbbind.io/secret", GENERIC_SECRET)]).await {
                    Ok(pod) if host_reference(&pod).is_some() => created += 1,
                    Ok(_) => failures.push("a Pod was admitted unbound".to_owned()),
                    Err(error) => failures.push(error.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (created, failures)
        });
        Prober { stop, task }
    }

    pub(crate) async fn finish(self) -> Result<(u32, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.map_err(|e| anyhow!("prober: {e}"))
    }
}
