//! The canary sweep: marker values bound every way, then looked for everywhere dbbind writes.

use super::*;

pub(crate) const CANARY: &str = "canary";

/// An example's name and its Secret.
pub(crate) type ExampleSecret = (String, Value);

/// The examples' Secrets, moved to the canary namespace with every value replaced by a marker
/// of its own; returns the Secrets and the markers.
pub(crate) fn canary_secrets() -> Result<(Vec<ExampleSecret>, Vec<String>)> {
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
pub(crate) fn shows(plane: &ControlPlane, args: &[&str], text: &str) -> Result<bool> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    Ok(plane.kubectl_outcome(&args, None)?.stdout.contains(text))
}

/// A Deployment of one pod in the canary namespace with these template annotations.
pub(crate) fn canary_deployment(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": CANARY},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}}})
}

/// `kubectl apply` of `object`; what kubectl printed (its warnings included), for the sweep.
pub(crate) fn apply_capturing(plane: &ControlPlane, object: &Value) -> Result<String> {
    let applied = plane.kubectl_outcome(&["apply", "-f", "-"], Some(&object.to_string()))?;
    Ok(format!("{}{}", applied.stdout, applied.stderr))
}

/// Fails naming where a marker (as written, or base64-encoded as a Secret's data holds it)
/// appears in `text`.
pub(crate) fn assert_no_marker(text: &str, markers: &[String], place: &str) -> Result<()> {
    for marker in markers {
        for form in [marker.clone(), STANDARD.encode(marker)] {
            if let Some(at) = text.find(&form) {
                let start = at.saturating_sub(200);
                return Err(anyhow!(
                    "a Secret value reached {place}: …{}…",
                    text.get(start..at + form.len()).unwrap_or(&form)
                ));
            }
        }
    }
    Ok(())
}

/// The built-in profiles' names, as `core/src/profile/builtin.yaml` lists them.
pub(crate) fn builtin_profiles() -> Result<Vec<String>> {
    let path = tools::repo_root().join("core/src/profile/builtin.yaml");
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|line| line.strip_prefix("- name: "))
        .map(|name| name.trim().to_owned())
        .collect())
}

pub(crate) async fn canary_sweep(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    opted_in_namespace(&faults.plane, CANARY)?;
    poll::until_sync(
        "the default ServiceAccount in canary",
        Duration::from_secs(60),
        || {
            Ok(faults
                .plane
                .kubectl_ok(&["get", "serviceaccount", "default", "-n", CANARY]))
        },
    )
    .await?;
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
            return Err(anyhow!(
                "the canary Secrets never reached both replicas' caches: {answer}"
            ));
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
        return Err(anyhow!(
            "the sweep should both bind and deny: {bound} bound, {denied} denied"
        ));
    }
    // A Deployment whose every Pod is denied leaves BindingDenied Events on its ReplicaSet.
    let denied_deployment = canary_deployment(
        "canary-denied",
        json!({"dbbind.io/secret": secrets[0].1["metadata"]["name"], "dbbind.io/keys": "password=absent-key"}),
    );
    seen.push_str(&apply_capturing(&faults.plane, &denied_deployment)?);
    poll::until_sync("a BindingDenied Event", Duration::from_secs(30), || {
        let events = faults
            .plane
            .kubectl_outcome(&["get", "events", "-n", CANARY, "-o", "json"], None)?;
        Ok(events.stdout.contains("BindingDenied"))
    })
    .await?;

    // Restart on rotation: an opted-in Deployment reading the generic Secret through env (its
    // pod is bound and stays Pending: no node) is rolled when the password becomes a new
    // marker; the digest, the pod list and the patch must not leak it either.
    let rotated_deployment = canary_deployment(
        "canary-rotated",
        json!({"dbbind.io/secret": GENERIC_SECRET, "dbbind.io/restart-on-rotation": "true"}),
    );
    seen.push_str(&apply_capturing(&faults.plane, &rotated_deployment)?);
    poll::until_sync(
        "the opted-in Deployment's bound pod",
        Duration::from_secs(30),
        || {
            shows(
                &faults.plane,
                &["get", "pods", "-n", CANARY, "-l", "app=canary-rotated"],
                "dbbind.io/bindings",
            )
        },
    )
    .await?;
    let rotated_marker = "CANARYROTq99Z".to_owned();
    let mut generic = secrets
        .iter()
        .find(|(_, secret)| secret["metadata"]["name"] == GENERIC_SECRET)
        .map(|(_, secret)| secret.clone())
        .ok_or_else(|| anyhow!("no generic Secret in the sweep"))?;
    generic["data"]["password"] = json!(STANDARD.encode(&rotated_marker));
    markers.push(rotated_marker);
    apply(&faults.plane, &generic.to_string())?;
    poll::until_sync(
        "the rollout of the opted-in Deployment",
        Duration::from_secs(30),
        || {
            shows(
                &faults.plane,
                &["get", "deployment", "canary-rotated", "-n", CANARY],
                "dbbind.io/restartedAt",
            )
        },
    )
    .await?;

    // The sweep is only worth something if the markers are in the cluster and the logs are
    // at trace level (every request and watch event the replicas saw).
    let stored = Api::<Secret>::namespaced(client.clone(), CANARY)
        .get("canary-client")
        .await?;
    let stored = serde_json::to_string(&stored)?;
    if assert_no_marker(&stored, &markers, "the canary Secret").is_ok() {
        return Err(anyhow!("the canary Secret holds no marker"));
    }
    if !faults
        .replicas
        .iter()
        .all(|r| r.log().contains("\"level\":\"TRACE\""))
    {
        return Err(anyhow!("the replicas do not log at trace level"));
    }
    assert_no_marker(&seen, &markers, "a Pod or a kubectl message")?;
    let objects = faults.plane.kubectl_outcome(
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
        return Err(anyhow!("kubectl get: {}", objects.stderr));
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
