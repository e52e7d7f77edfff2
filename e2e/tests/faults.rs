//! Faults of the real control plane, against dbbind installed as production runs it: two
//! replicas behind one address (a round-robin TCP forwarder stands for the Service), certificates
//! self-managed in a Secret, a profiles file, the webhook configurations of `webhook-config/`
//! registered with no caBundle. No node is needed: the Pods are created through the API server,
//! which calls the webhook, and are never scheduled.
//!
//! The trials run in order on one environment: the replicas racing on first start, a profiles
//! file replaced by an invalid one, the certificate Secret deleted, the API server killed and
//! restarted, etcd paused and resumed; then a canary sweep: Secrets of every example's shape
//! with marker values, bound every way (every profile, every name set, files, TLS, denials and
//! warnings, Deployments through the workload check, Events), after which not one marker byte
//! may appear in a Pod, an Event, a kubectl message, a replica's log (at trace level), its
//! metrics or its admin endpoints.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dbbind::rotation::leader::{Leadership, LeaseSettings};
use dbbind_e2e::cluster::ControlPlane;
use dbbind_e2e::forward::Forwarder;
use dbbind_e2e::scenarios::{example_secret_object, opted_in_namespace};
use dbbind_e2e::tools::{self, free_port};
use dbbind_e2e::webhook::{
    Dbbind, connect_verified, post_review, serves_certificate_of, shipped_configuration,
};
use dbbind_e2e::{Error, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use libtest_mimic::{Arguments, Failed, Trial};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

const NAMESPACE: &str = "faults";
const GENERIC_SECRET: &str = "orders-db-conn";
const CERT_SECRET: &str = "dbbind-tls";

/// A profile of the operator's own, and a Secret of its shape.
const PROFILES: &str = "profiles:
- name: acme
  description: ACME's database operator
  detect:
  - keys: [server, login, secret]
  fields:
    host: {keys: [server]}
    user: {keys: [login]}
    password: {keys: [secret]}
    database: {fromSecretName: '^(.+)-db$'}
";
const ACME_SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: acme-db, namespace: faults}
stringData: {server: acme.db.internal, login: acme_app, secret: acme-password}
";

struct Faults {
    plane: ControlPlane,
    replicas: Vec<Dbbind>,
    profiles_file: PathBuf,
    _front: Forwarder,
}

impl Faults {
    fn start() -> Result<Faults> {
        let plane = ControlPlane::start()?;
        apply(
            &plane,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: dbbind}\n",
        )?;
        opted_in_namespace(&plane, NAMESPACE)?;
        let mut generic = example_secret_object("external-generic")?;
        generic["metadata"]["namespace"] = json!(NAMESPACE);
        apply(&plane, &generic.to_string())?;
        apply(&plane, ACME_SECRET)?;
        let profiles_file = plane.dir.path().join("profiles.yaml");
        std::fs::write(&profiles_file, PROFILES)?;

        // Registered as the chart does in self-managed mode: no caBundle until a replica sets it.
        let front = free_port()?;
        for (file, path) in [
            ("mutatingwebhookconfiguration.yaml", "/mutate"),
            ("validatingwebhookconfiguration.yaml", "/validate"),
        ] {
            apply(&plane, &shipped_configuration(file, front, path, None)?)?;
        }

        // Both replicas start at once and race to create the certificate Secret.
        let flags: Vec<String> = [
            "--namespace=dbbind",
            "--namespace-selector=dbbind.io/inject=enabled",
            "--extra-ip-addresses=127.0.0.1",
            "--cert-check-interval=1s",
            "--profiles-reload-interval=1s",
            // Everything any crate logs, for the canary sweep.
            "--log-level=trace",
            // Restart on rotation too, under the canary sweep's eyes (its own Lease: the
            // leader-election trial uses the default one).
            "--restart-on-rotation",
            "--rotation-lease-name=dbbind-replicas-rotation",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--profiles-file={}", profiles_file.display())])
        .collect();
        let binary = tools::dbbind()?;
        let mut replicas = Vec::new();
        for name in ["dbbind-a", "dbbind-b"] {
            replicas.push(Dbbind::spawn(&plane, &binary, name, &flags)?);
        }
        let targets = replicas
            .iter()
            .map(|replica| SocketAddr::from((Ipv4Addr::LOCALHOST, replica.listen_port)))
            .collect();
        let front =
            Forwarder::round_robin(SocketAddr::from((Ipv4Addr::LOCALHOST, front)), targets)?;
        for replica in &mut replicas {
            replica.wait_ready()?;
        }
        // Pods need the namespace's default ServiceAccount, which the controller manager makes.
        wait_until(
            "the default ServiceAccount in faults",
            Duration::from_secs(60),
            || Ok(plane.kubectl_ok(&["get", "serviceaccount", "default", "-n", NAMESPACE])),
        )?;
        Ok(Faults {
            plane,
            replicas,
            profiles_file,
            _front: front,
        })
    }

    fn logs(&self) -> String {
        self.replicas.iter().map(Dbbind::log).collect()
    }
}

fn apply(plane: &ControlPlane, manifest: &str) -> Result<()> {
    let applied = plane.kubectl_run(&["apply", "-f", "-"], Some(manifest))?;
    if applied.success {
        Ok(())
    } else {
        Err(Error::new(format!("kubectl apply: {}", applied.stderr)))
    }
}

fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if done()? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(Error::new(format!("{what}: not within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The certificate Secret's keys, decoded.
async fn cert_secret(client: &kube::Client) -> Result<Option<BTreeMap<String, String>>> {
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
async fn stored_bundle(client: &kube::Client) -> Result<String> {
    let secret = cert_secret(client)
        .await?
        .ok_or_else(|| Error::new("no certificate Secret"))?;
    Ok(secret.get("ca-bundle.crt").cloned().unwrap_or_default())
}

/// The caBundle of every webhook of both configurations.
async fn ca_bundles(client: &kube::Client) -> Result<Vec<String>> {
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

fn certificates(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .flatten()
        .map(|der| der.to_vec())
        .collect()
}

/// A bare Pod with these annotations, created through the API server in `namespace`.
async fn create_pod_in(
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

async fn create_pod(
    client: &kube::Client,
    annotations: &[(&str, &str)],
) -> std::result::Result<Pod, kube::Error> {
    create_pod_in(client, NAMESPACE, annotations).await
}

/// Where the Pod's `POSTGRES_HOST` comes from: the Secret and key it references.
fn host_reference(pod: &Pod) -> Option<(String, String)> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let env = container.env.as_ref()?;
    let host = env.iter().find(|var| var.name == "POSTGRES_HOST")?;
    let key = host.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((key.name.clone(), key.key.clone()))
}

async fn expect_bound(client: &kube::Client, secret: &str, host_key: &str) -> Result<()> {
    let pod = create_pod(client, &[("dbbind.io/secret", secret)]).await?;
    let found = host_reference(&pod);
    if found != Some((secret.to_owned(), host_key.to_owned())) {
        return Err(Error::new(format!(
            "a Pod bound to {secret}: POSTGRES_HOST from {found:?}, expected key {host_key}"
        )));
    }
    Ok(())
}

/// An AdmissionReview of a Pod CREATE in the opted-in namespace bound to `secret`, as the API
/// server sends it (a captured one, `tests/fixtures/admission/`).
fn review(secret: &str, uid: &str) -> Result<Value> {
    review_in(NAMESPACE, secret, uid)
}

fn review_in(namespace: &str, secret: &str, uid: &str) -> Result<Value> {
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
async fn every_replica_binds(faults: &Faults, roots_pem: &str, uid: &str) -> Result<()> {
    for replica in &faults.replicas {
        replica_binds(replica, roots_pem, uid).await?;
    }
    Ok(())
}

async fn replica_binds(replica: &Dbbind, roots_pem: &str, uid: &str) -> Result<()> {
    let (status, answer) = post_review(
        replica.listen_port,
        roots_pem,
        &review(GENERIC_SECRET, uid)?,
    )
    .await?;
    let response = &answer["response"];
    let patch = STANDARD
        .decode(response["patch"].as_str().unwrap_or_default())
        .map_err(|e| Error::new(format!("patch: {e}")))?;
    if status != 200
        || response["allowed"] != true
        || !String::from_utf8_lossy(&patch).contains("POSTGRES_HOST")
    {
        return Err(Error::new(format!(
            "replica on port {} answered {status}: {answer}",
            replica.listen_port
        )));
    }
    let (ready, body) = replica.admin_get("/readyz")?;
    if ready != 200 {
        return Err(Error::new(format!(
            "replica on port {} not ready: {body}",
            replica.listen_port
        )));
    }
    Ok(())
}

/// A Secret created after a fault must become bindable: the replicas' Secret caches recovered.
/// Returns how long that took.
async fn new_secret_becomes_bindable(faults: &Faults, name: &str) -> Result<Duration> {
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
    Err(Error::new(format!(
        "a Secret created after the fault was not bindable within 90 s; last: {last}\n{}",
        faults.logs()
    )))
}

/// Creates Pods through the API server every 100 ms until stopped: the user's view of an
/// outage. Returns how many were created and every failure.
struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Prober {
    fn start(client: kube::Client) -> Prober {
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

    async fn finish(self) -> Result<(u32, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .map_err(|e| Error::new(format!("prober: {e}")))
    }
}

async fn replicas_race_on_first_start(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let secret = cert_secret(&client)
        .await?
        .ok_or_else(|| Error::new("no certificate Secret after both replicas started"))?;
    let ca = &secret["ca.crt"];
    if certificates(&secret["ca-bundle.crt"]).len() != 1 {
        return Err(Error::new("a first install's bundle holds one CA"));
    }
    for replica in &faults.replicas {
        if !serves_certificate_of(replica.listen_port, ca).await {
            return Err(Error::new(format!(
                "replica on port {} does not serve a certificate of the stored CA",
                replica.listen_port
            )));
        }
    }
    let bundles = ca_bundles(&client).await?;
    if bundles.len() < 2 || bundles.iter().any(|b| b != &secret["ca-bundle.crt"]) {
        return Err(Error::new(format!(
            "both configurations should trust exactly the stored bundle; {} webhooks, {} equal",
            bundles.len(),
            bundles
                .iter()
                .filter(|b| *b == &secret["ca-bundle.crt"])
                .count()
        )));
    }
    expect_bound(&client, GENERIC_SECRET, "host").await?;
    every_replica_binds(faults, ca, "race").await
}

async fn invalid_profiles_file_keeps_the_old_profiles(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    expect_bound(&client, "acme-db", "server").await?;

    // A ConfigMap update swaps the file whole: write beside it, then rename.
    let swap = |text: &str| -> Result<()> {
        let next = faults.profiles_file.with_extension("next");
        std::fs::write(&next, text)?;
        Ok(std::fs::rename(&next, &faults.profiles_file)?)
    };
    swap("profiles:\n- name: acme\n  fields: [this is not a mapping\n")?;
    let valid = |value: u8| {
        let line = format!("\ndbbind_profiles_file_valid {value}\n");
        move |replica: &Dbbind| {
            replica
                .admin_get("/metrics")
                .is_ok_and(|(_, m)| m.contains(&line))
        }
    };
    wait_until(
        "dbbind_profiles_file_valid 0 on both replicas",
        Duration::from_secs(20),
        || Ok(faults.replicas.iter().all(valid(0))),
    )?;
    for replica in &faults.replicas {
        if !replica.log().contains("profiles file not reloaded") {
            return Err(Error::new(format!(
                "replica on port {} did not log why the profiles file was not reloaded",
                replica.listen_port
            )));
        }
    }
    // The previous profiles stay in effect.
    expect_bound(&client, "acme-db", "server").await?;

    swap(PROFILES)?;
    wait_until(
        "dbbind_profiles_file_valid 1 again",
        Duration::from_secs(20),
        || Ok(faults.replicas.iter().all(valid(1))),
    )?;
    Ok(())
}

async fn deleted_certificate_secret_is_regenerated(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let before = cert_secret(&client)
        .await?
        .ok_or_else(|| Error::new("no certificate Secret"))?;
    let prober = Prober::start(client.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let deleted = faults
        .plane
        .kubectl_run(&["delete", "secret", CERT_SECRET, "-n", "dbbind"], None)?;
    if !deleted.success {
        return Err(Error::new(format!("kubectl delete: {}", deleted.stderr)));
    }
    // Until both replicas serve the new certificate, every one of them must serve a certificate
    // the webhook configuration trusts, read just before.
    let started = Instant::now();
    let mut untrusted = Vec::new();
    let after = loop {
        let bundles = ca_bundles(&client).await?;
        let trusted = bundles.first().map(String::as_str).unwrap_or_default();
        for replica in &faults.replicas {
            if !serves_certificate_of(replica.listen_port, trusted).await {
                untrusted.push(format!(
                    "{:?} after the deletion, replica on port {} served a certificate the caBundle did not trust",
                    started.elapsed(),
                    replica.listen_port
                ));
            }
        }
        if let Some(after) = cert_secret(&client).await?
            && after["ca.crt"] != before["ca.crt"]
        {
            let mut all = true;
            for replica in &faults.replicas {
                all &= serves_certificate_of(replica.listen_port, &after["ca.crt"]).await;
            }
            let bundles = ca_bundles(&client).await?;
            if all && bundles.iter().all(|b| b == &after["ca-bundle.crt"]) {
                break after;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            let (_, failures) = prober.finish().await?;
            return Err(Error::new(format!(
                "the certificate Secret was not regenerated and served within 30 s; failures: {failures:?}\n{}",
                faults.logs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (created, failures) = prober.finish().await?;

    let mut problems = Vec::new();
    // The old CA stays trusted until it expires: a replica slow to notice keeps being trusted.
    let bundle = certificates(&after["ca-bundle.crt"]);
    let old_ca = certificates(&before["ca.crt"]);
    if !bundle.contains(&old_ca[0]) || bundle.len() != 2 {
        problems.push(format!(
            "the regenerated bundle should hold the new CA and the old one; it holds {} CAs",
            bundle.len()
        ));
    }
    if created < 10 {
        problems.push(format!("only {created} Pods created"));
    }
    problems.extend(failures.iter().map(|f| format!("a Pod create failed: {f}")));
    problems.extend(untrusted);
    if !problems.is_empty() {
        return Err(Error::new(problems.join("\n")));
    }
    every_replica_binds(faults, &after["ca.crt"], "regenerated").await?;
    eprintln!(
        "certificate Secret deleted: regenerated and served by both replicas after {recovered:?}; {created} Pods created meanwhile, 0 failed"
    );
    Ok(())
}

/// Every 0.5 s for `rounds` rounds, each replica binds a review sent straight to it.
async fn answered_from_cache(faults: &Faults, roots: &str, label: &str, rounds: u32) -> Result<()> {
    for round in 0..rounds {
        every_replica_binds(faults, roots, &format!("{label}-{round}")).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

async fn api_server_restart(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let roots = stored_bundle(&client).await?;
    faults.plane.kill_apiserver();
    // While it is down, admissions are answered from what the cache holds.
    answered_from_cache(faults, &roots, "apiserver-down", 10).await?;
    faults.plane.start_apiserver_again(2)?;
    let recovered = new_secret_becomes_bindable(faults, "after-restart").await?;
    if !faults.logs().contains("Secret watch failed") {
        return Err(Error::new(
            "no replica logged the Secret watch failing while the API server was down",
        ));
    }
    eprintln!(
        "API server down 5 s: every admission answered; a new Secret bindable {recovered:?} after the restart"
    );
    Ok(())
}

async fn etcd_paused(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let roots = stored_bundle(&client).await?;
    faults.plane.pause_etcd()?;
    let answered = answered_from_cache(faults, &roots, "etcd-paused", 16).await;
    faults.plane.resume_etcd()?;
    answered?;
    let recovered = new_secret_becomes_bindable(faults, "after-etcd-pause").await?;
    eprintln!(
        "etcd paused 8 s: every admission answered; a new Secret bindable {recovered:?} after it resumed"
    );
    Ok(())
}

/// Idle TLS connections opened against one replica (`--max-connections` 1,024 and
/// `--header-read-timeout` 5 s, the defaults).
const IDLE_CONNECTIONS: usize = 5_000;

/// What became of an idle connection.
enum Idle {
    /// Closed before its handshake finished: room made for a newer connection.
    ClosedInHandshake,
    /// Held open after the handshake for this long, until the server closed it.
    Held(Duration),
}

/// Opens a TLS connection, sends nothing, and waits for the server to close it.
async fn idle_connection(port: u16, roots: Arc<str>) -> Idle {
    use tokio::io::AsyncReadExt;
    let Ok(mut tls) = connect_verified(port, &roots).await else {
        return Idle::ClosedInHandshake;
    };
    let opened = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), tls.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Idle::Held(opened.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// 5,000 idle TLS connections against one replica: its cap holds (memory bounded), each held
/// connection is closed by the first-byte timeout or to make room, and a real client is served
/// by the flooded replica all through the flood, not only after it.
async fn idle_connections_are_shed(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let roots: Arc<str> = stored_bundle(&client).await?.into();
    // The flood's sockets are this process's; a failed connect must not pass for a refusal.
    dbbind_e2e::tools::enough_open_files(IDLE_CONNECTIONS + 2_000)?;
    let (target, other) = (&faults.replicas[0], &faults.replicas[1]);
    let port = target.listen_port;
    let before = target.rss_kib()?;
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    // 200 handshakes in flight at a time, as fast as the two cores allow.
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    for _ in 0..IDLE_CONNECTIONS {
        let (roots, gate) = (Arc::clone(&roots), Arc::clone(&gate));
        flood.spawn(async move {
            let permit = gate.acquire_owned().await;
            let idle = idle_connection(port, roots);
            drop(permit);
            idle.await
        });
    }
    replica_binds(other, &roots, "during-flood").await?;
    let mut peak = before;
    // Every 200 ms while the flood lasts, the flooded replica binds a pod.
    let (mut probes, mut failed_probes) = (0, Vec::new());
    let (mut in_a_row, mut most_in_a_row) = (0, 0);
    let (mut closed_in_handshake, mut held) = (0, Vec::new());
    while !flood.is_empty() {
        peak = peak.max(target.rss_kib()?);
        probes += 1;
        if let Err(error) = replica_binds(target, &roots, &format!("flood-{probes}")).await {
            failed_probes.push(format!("{:?}: {error}", started.elapsed()));
            in_a_row += 1;
            most_in_a_row = most_in_a_row.max(in_a_row);
        } else {
            in_a_row = 0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Some(done) = flood.try_join_next() {
            match done.map_err(|e| Error::new(format!("idle connection task: {e}")))? {
                Idle::ClosedInHandshake => closed_in_handshake += 1,
                Idle::Held(open) => held.push(open),
            }
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err(Error::new("5,000 idle connections not shed within 180 s"));
        }
    }
    let flood_lasted = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.rss_kib()?;
    replica_binds(target, &roots, "after-flood").await?;
    let longest = held.iter().max().copied().unwrap_or_default();
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections in {flood_lasted:?}: {} held after their handshake (the longest {longest:?}), {closed_in_handshake} closed in their handshake; the flooded replica bound {} of {probes} pods meanwhile; RSS {} MiB before, {} MiB at the peak, {} MiB after",
        held.len(),
        probes - failed_probes.len(),
        before / 1024,
        peak / 1024,
        after / 1024
    );
    // Each held connection is closed by --header-read-timeout (5 s) after its handshake, or
    // sooner to make room.
    if longest > Duration::from_secs(8) {
        return Err(Error::new(format!(
            "an idle connection was held {longest:?}, beyond --header-read-timeout"
        )));
    }
    // The cap bounds memory: 1,024 connections of about 25 KiB, whatever the flood.
    if growth_mib > 64 {
        return Err(Error::new(format!(
            "RSS grew by {growth_mib} MiB under the flood"
        )));
    }
    // Served all through the flood, not only after it (before connections made room, the
    // replica answered nothing until the idle ones timed out, 5 s in). The flood's 200
    // handshakes at a time saturate both cores, client and server alike, so a probe's own
    // handshake can now and then starve past a second and be taken for a silent one: a
    // probe may fail, never two in a row, and nine in ten must pass.
    for failure in &failed_probes {
        eprintln!("a probe during the flood failed: {failure}");
    }
    if most_in_a_row > 1 || failed_probes.len() * 10 > probes {
        return Err(Error::new(format!(
            "the flooded replica failed {} of {probes} admissions during the flood ({most_in_a_row} in a row): {}",
            failed_probes.len(),
            failed_probes.join("; ")
        )));
    }
    Ok(())
}

/// Waits until exactly one of the replicas still present leads; returns its index.
async fn sole_leader(replicas: &[Option<Leadership>], within: Duration) -> Result<usize> {
    let started = Instant::now();
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].as_ref().is_some_and(Leadership::is_leader))
            .collect();
        if let [only] = leading.as_slice() {
            return Ok(*only);
        }
        if leading.len() > 1 {
            return Err(Error::new(format!(
                "{} replicas lead at once",
                leading.len()
            )));
        }
        if started.elapsed() > within {
            return Err(Error::new(format!("no leader within {within:?}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rotation controller's leader election on a real Lease: one of three leads; when the
/// leader leaves (its Lease released) or dies (its Lease left to run out), exactly one other
/// takes over, within about one Lease duration: the candidates wait for the expiry they read.
async fn one_leader_and_hand_over(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let settings = |identity: &str| LeaseSettings {
        namespace: "dbbind".to_owned(),
        name: "dbbind-rotation".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(4),
        grace: Duration::from_secs(2),
    };
    let mut replicas = Vec::new();
    for identity in ["replica-a", "replica-b", "replica-c"] {
        replicas.push(Some(
            Leadership::join(client.clone(), &settings(identity))
                .await
                .map_err(|e| Error::new(e.to_string()))?,
        ));
    }
    let first = sole_leader(&replicas, Duration::from_secs(20)).await?;
    // Leaving on shutdown.
    let left = Instant::now();
    if let Some(leader) = replicas[first].take() {
        leader
            .leave(Duration::from_secs(5))
            .await
            .map_err(|e| Error::new(e.to_string()))?;
    }
    let second = sole_leader(&replicas, Duration::from_secs(20)).await?;
    let handed_over = left.elapsed();

    // Dying: no release; the survivor leads once the Lease has run out (4 s).
    let died = Instant::now();
    if let Some(leader) = replicas[second].take() {
        leader.abandon();
    }
    sole_leader(&replicas, Duration::from_secs(30)).await?;
    let took_over = died.elapsed();
    eprintln!(
        "Lease (4 s): a leader that left was replaced after {handed_over:?}, one that died after {took_over:?}"
    );
    // The Lease's duration, plus the up to 1 s a candidate waits after forcing an expired
    // Lease free, plus the API server's round trips.
    let bound = Duration::from_secs(4 + 3);
    if handed_over > bound || took_over > bound {
        return Err(Error::new(format!(
            "leadership moved after {handed_over:?} (left) and {took_over:?} (died); a 4 s Lease should move within {bound:?}"
        )));
    }
    for leadership in replicas.into_iter().flatten() {
        leadership
            .leave(Duration::from_secs(5))
            .await
            .map_err(|e| Error::new(e.to_string()))?;
    }
    Ok(())
}

const CANARY: &str = "canary";

/// An example's name and its Secret.
type ExampleSecret = (String, Value);

/// The examples' Secrets, moved to the canary namespace with every value replaced by a marker
/// of its own; returns the Secrets and the markers.
fn canary_secrets() -> Result<(Vec<ExampleSecret>, Vec<String>)> {
    let mut secrets = Vec::new();
    let mut markers = Vec::new();
    let mut examples: Vec<_> = std::fs::read_dir(tools::repo_root().join("examples"))?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    examples.sort();
    for path in examples {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut secret = example_secret_object(&name)?;
        secret["metadata"]["namespace"] = json!(CANARY);
        for (index, value) in secret["data"]
            .as_object_mut()
            .into_iter()
            .flat_map(|data| data.values_mut())
            .enumerate()
        {
            let marker = format!("CANARY{:03}q{index:02}Z", markers.len());
            *value = json!(STANDARD.encode(&marker));
            markers.push(marker);
        }
        secrets.push((name, secret));
    }
    Ok((secrets, markers))
}

/// Whether `kubectl <args> -o json` shows `text`.
fn shows(plane: &ControlPlane, args: &[&str], text: &str) -> Result<bool> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    Ok(plane.kubectl_run(&args, None)?.stdout.contains(text))
}

/// A Deployment of one pod in the canary namespace with these template annotations.
fn canary_deployment(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": CANARY},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}}})
}

/// `kubectl apply` of `object`; what kubectl printed (its warnings included), for the sweep.
fn apply_capturing(plane: &ControlPlane, object: &Value) -> Result<String> {
    let applied = plane.kubectl_run(&["apply", "-f", "-"], Some(&object.to_string()))?;
    Ok(format!("{}{}", applied.stdout, applied.stderr))
}

/// Fails naming where a marker (as written, or base64-encoded as a Secret's data holds it)
/// appears in `text`.
fn assert_no_marker(text: &str, markers: &[String], place: &str) -> Result<()> {
    for marker in markers {
        for form in [marker.clone(), STANDARD.encode(marker)] {
            if let Some(at) = text.find(&form) {
                let start = at.saturating_sub(200);
                return Err(Error::new(format!(
                    "a Secret value reached {place}: …{}…",
                    text.get(start..at + form.len()).unwrap_or(&form)
                )));
            }
        }
    }
    Ok(())
}

/// The built-in profiles' names, as `core/src/profile/builtin.yaml` lists them.
fn builtin_profiles() -> Result<Vec<String>> {
    let path = tools::repo_root().join("core/src/profile/builtin.yaml");
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|line| line.strip_prefix("- name: "))
        .map(|name| name.trim().to_owned())
        .collect())
}

async fn canary_sweep(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    opted_in_namespace(&faults.plane, CANARY)?;
    wait_until(
        "the default ServiceAccount in canary",
        Duration::from_secs(60),
        || {
            Ok(faults
                .plane
                .kubectl_ok(&["get", "serviceaccount", "default", "-n", CANARY]))
        },
    )?;
    let (secrets, markers) = canary_secrets()?;
    for (_, secret) in &secrets {
        apply(&faults.plane, &secret.to_string())?;
    }
    // A Secret of type kubernetes.io/tls with marker values: the client certificate.
    let tls_marker = "CANARYTLSq00Z".to_owned();
    apply(
        &faults.plane,
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "canary-client", "namespace": CANARY},
            "data": {"tls.crt": STANDARD.encode(&tls_marker), "tls.key": STANDARD.encode(&tls_marker), "ca.crt": STANDARD.encode(&tls_marker)}})
        .to_string(),
    )?;
    let mut markers = markers;
    markers.push(tls_marker);
    // Both replicas' caches must hold the Secrets before the sweep, or it would only see "not
    // found": the generic one binds on each.
    let roots = stored_bundle(&client).await?;
    let started = Instant::now();
    loop {
        let mut unbound = None;
        for replica in &faults.replicas {
            let review = review_in(CANARY, GENERIC_SECRET, "cached")?;
            let (_, answer) = post_review(replica.listen_port, &roots, &review).await?;
            if !answer["response"]["patch"].is_string() {
                unbound = Some(answer);
            }
        }
        let Some(answer) = unbound else { break };
        if started.elapsed() > Duration::from_secs(30) {
            return Err(Error::new(format!(
                "the canary Secrets never reached both replicas' caches: {answer}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut profiles = builtin_profiles()?;
    profiles.push("acme".to_owned());
    let mut seen = String::new();
    let (mut bound, mut denied) = (0, 0);
    let everything = "postgres,libpq,database-url,spring,quarkus,jdbc,dotnet";
    for (example, secret) in &secrets {
        let name = secret["metadata"]["name"].as_str().unwrap_or_default();
        let mut variants: Vec<Vec<(&str, String)>> = vec![
            vec![],
            vec![
                ("dbbind.io/env", everything.to_owned()),
                ("dbbind.io/files", "true".to_owned()),
            ],
            vec![
                ("dbbind.io/sslmode", "verify-full".to_owned()),
                ("dbbind.io/ca", format!("secret:{name}")),
                ("dbbind.io/client-cert", "canary-client".to_owned()),
                ("dbbind.io/files", "true".to_owned()),
            ],
            vec![("dbbind.io/ca", "secret:canary-client".to_owned())],
            vec![("dbbind.io/endpoint", "ro".to_owned())],
            vec![("dbbind.io/keys", "password=absent-key".to_owned())],
            vec![("dbbind.io/client-cert", name.to_owned())],
        ];
        variants.extend(
            profiles
                .iter()
                .map(|profile| vec![("dbbind.io/profile", profile.clone())]),
        );
        for variant in variants {
            let mut annotations = vec![("dbbind.io/secret", name.to_owned())];
            annotations.extend(variant);
            let annotations: Vec<(&str, &str)> =
                annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match create_pod_in(&client, CANARY, &annotations).await {
                Ok(pod) => {
                    bound += 1;
                    seen.push_str(&serde_json::to_string(&pod)?);
                }
                Err(error) => {
                    denied += 1;
                    seen.push_str(&error.to_string());
                }
            }
        }
        // The example's own Deployment through kubectl: the workload check at apply, the
        // ReplicaSet's Pods through the Pod webhook, Events on the ReplicaSet.
        let text =
            std::fs::read_to_string(tools::repo_root().join(format!("examples/{example}.yaml")))?;
        for mut document in dbbind_e2e::yaml_documents(&text)? {
            if document["kind"] == "Secret" {
                continue;
            }
            document["metadata"]["namespace"] = json!(CANARY);
            seen.push_str(&apply_capturing(&faults.plane, &document)?);
        }
    }
    if bound < secrets.len() || denied < secrets.len() {
        return Err(Error::new(format!(
            "the sweep should both bind and deny: {bound} bound, {denied} denied"
        )));
    }
    // A Deployment whose every Pod is denied leaves BindingDenied Events on its ReplicaSet.
    let denied_deployment = canary_deployment(
        "canary-denied",
        json!({"dbbind.io/secret": secrets[0].1["metadata"]["name"], "dbbind.io/keys": "password=absent-key"}),
    );
    seen.push_str(&apply_capturing(&faults.plane, &denied_deployment)?);
    wait_until("a BindingDenied Event", Duration::from_secs(30), || {
        let events = faults
            .plane
            .kubectl_run(&["get", "events", "-n", CANARY, "-o", "json"], None)?;
        Ok(events.stdout.contains("BindingDenied"))
    })?;

    // Restart on rotation: an opted-in Deployment reading the generic Secret through env (its
    // pod is bound and stays Pending: no node) is rolled when the password becomes a new
    // marker; the digest, the pod list and the patch must not leak it either.
    let rotated_deployment = canary_deployment(
        "canary-rotated",
        json!({"dbbind.io/secret": GENERIC_SECRET, "dbbind.io/restart-on-rotation": "true"}),
    );
    seen.push_str(&apply_capturing(&faults.plane, &rotated_deployment)?);
    wait_until(
        "the opted-in Deployment's bound pod",
        Duration::from_secs(30),
        || {
            shows(
                &faults.plane,
                &["get", "pods", "-n", CANARY, "-l", "app=canary-rotated"],
                "dbbind.io/bindings",
            )
        },
    )?;
    let rotated_marker = "CANARYROTq99Z".to_owned();
    let mut generic = secrets
        .iter()
        .find(|(_, secret)| secret["metadata"]["name"] == GENERIC_SECRET)
        .map(|(_, secret)| secret.clone())
        .ok_or_else(|| Error::new("no generic Secret in the sweep"))?;
    generic["data"]["password"] = json!(STANDARD.encode(&rotated_marker));
    markers.push(rotated_marker);
    apply(&faults.plane, &generic.to_string())?;
    wait_until(
        "the rollout of the opted-in Deployment",
        Duration::from_secs(30),
        || {
            shows(
                &faults.plane,
                &["get", "deployment", "canary-rotated", "-n", CANARY],
                "dbbind.io/restartedAt",
            )
        },
    )?;

    // The sweep is only worth something if the markers are in the cluster and the logs are
    // at trace level (every request and watch event the replicas saw).
    let stored = Api::<Secret>::namespaced(client.clone(), CANARY)
        .get("canary-client")
        .await?;
    let stored = serde_json::to_string(&stored)?;
    if assert_no_marker(&stored, &markers, "the canary Secret").is_ok() {
        return Err(Error::new("the canary Secret holds no marker"));
    }
    if !faults
        .replicas
        .iter()
        .all(|r| r.log().contains("\"level\":\"TRACE\""))
    {
        return Err(Error::new("the replicas do not log at trace level"));
    }
    assert_no_marker(&seen, &markers, "a Pod or a kubectl message")?;
    let objects = faults.plane.kubectl_run(
        &[
            "get",
            "pods,replicasets,deployments,events",
            "-n",
            CANARY,
            "-o",
            "json",
        ],
        None,
    )?;
    if !objects.success {
        return Err(Error::new(format!("kubectl get: {}", objects.stderr)));
    }
    assert_no_marker(&objects.stdout, &markers, "the canary namespace's objects")?;
    for replica in &faults.replicas {
        for path in ["/metrics", "/readyz", "/livez"] {
            let (_, body) = replica.admin_get(path)?;
            assert_no_marker(
                &body,
                &markers,
                &format!("{path} on port {}", replica.admin_port),
            )?;
        }
        let log = replica.log();
        assert_no_marker(
            &log,
            &markers,
            &format!("the log of the replica on port {}", replica.listen_port),
        )?;
    }
    eprintln!(
        "canary: {} Secrets, {} markers, {bound} Pods bound, {denied} denied, {} log bytes scanned: no marker",
        secrets.len() + 1,
        markers.len(),
        faults.replicas.iter().map(|r| r.log().len()).sum::<usize>()
    );
    Ok(())
}

type Check = for<'a> fn(
    &'a mut Faults,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>>;

const TRIALS: &[(&str, Check)] = &[
    ("replicas_race_on_first_start", |f| {
        Box::pin(replicas_race_on_first_start(f))
    }),
    ("invalid_profiles_file_keeps_the_old_profiles", |f| {
        Box::pin(invalid_profiles_file_keeps_the_old_profiles(f))
    }),
    ("deleted_certificate_secret_is_regenerated", |f| {
        Box::pin(deleted_certificate_secret_is_regenerated(f))
    }),
    ("api_server_restart", |f| Box::pin(api_server_restart(f))),
    ("etcd_paused", |f| Box::pin(etcd_paused(f))),
    ("idle_connections_are_shed", |f| {
        Box::pin(idle_connections_are_shed(f))
    }),
    ("one_leader_and_hand_over", |f| {
        Box::pin(one_leader_and_hand_over(f))
    }),
    ("canary_sweep", |f| Box::pin(canary_sweep(f))),
];

fn main() {
    dbbind_e2e::process::stop_all_on_signal();
    let mut arguments = Arguments::from_args();
    arguments.test_threads = Some(1);
    let runtime = Arc::new(Runtime::new().expect("a tokio runtime"));
    let faults = match Faults::start() {
        Ok(faults) => Arc::new(Mutex::new(faults)),
        Err(error) => {
            eprintln!("the faults environment did not start: {error}");
            std::process::exit(1);
        }
    };
    let trials = TRIALS
        .iter()
        .map(|&(name, check)| {
            let (runtime, faults) = (Arc::clone(&runtime), Arc::clone(&faults));
            Trial::test(format!("fault::{name}"), move || {
                let mut faults = faults
                    .lock()
                    .map_err(|_| Failed::from("environment poisoned"))?;
                runtime
                    .block_on(check(&mut faults))
                    .map_err(|e| Failed::from(e.to_string()))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    drop(faults);
    conclusion.exit();
}
