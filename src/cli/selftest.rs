//! `dbbind selftest`: proves an installed dbbind binds pods, the way a user's pod reaches it —
//! through the API server, its webhook configuration, the Service and dbbind's pods — with a
//! server-side dry run of an annotated Pod in an opted-in namespace. A dry run calls every
//! mutating webhook and stores nothing. The chart's `helm test` hook runs it.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use dbbind_core::keys::{self, BINDINGS, STATUS, STATUS_INJECTED};

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// The namespace to try; by default the first namespace --namespace-selector picks.
    #[arg(long, short = 'n', env = "DBBIND_SELFTEST_NAMESPACE")]
    pub namespace: Option<String>,
    /// The label that opts a namespace in.
    #[arg(
        long,
        env = "DBBIND_NAMESPACE_SELECTOR",
        default_value = keys::NAMESPACE_SELECTOR
    )]
    pub namespace_selector: String,
    /// The Secret the dry-run Pod names; it need not exist (the profile is explicit, so a
    /// missing Secret is a warning, not a denial).
    #[arg(long, default_value = "dbbind-selftest")]
    pub secret: String,
    /// How long to keep trying: a new installation's webhook may need a moment (its caBundle,
    /// its endpoints).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The check, as lines for stdout; an error when the dry-run Pod was not bound in time.
pub async fn selftest(args: &SelftestArgs) -> anyhow::Result<Vec<String>> {
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let namespace = match &args.namespace {
        Some(namespace) => namespace.clone(),
        None => {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let listed = namespaces
                .list_metadata(&ListParams::default().labels(&args.namespace_selector))
                .await
                .context("cannot list the opted-in namespaces")?;
            match listed.items.into_iter().find_map(|n| n.metadata.name) {
                Some(name) => name,
                None => bail!(
                    "no namespace is labelled {}: opt one in (kubectl label namespace NAME {}) and run the test again",
                    args.namespace_selector,
                    args.namespace_selector
                ),
            }
        }
    };
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = probe_pod(&args.secret)?;
    let dry_run = PostParams {
        dry_run: true,
        field_manager: Some("dbbind-selftest".to_owned()),
    };
    let started = tokio::time::Instant::now();
    loop {
        let outcome = match pods.create(&dry_run, &pod).await {
            Ok(created) => bound(&created, &args.secret),
            Err(error) => Err(anyhow::Error::new(error)),
        };
        match outcome {
            Ok(variable) => {
                return Ok(vec![format!(
                    "dbbind bound a Pod in namespace {namespace} (a dry run: nothing was created): {variable} from Secret {}",
                    args.secret
                )]);
            }
            Err(error) if started.elapsed() >= args.timeout => {
                return Err(error.context(format!(
                    "a dry-run Pod in namespace {namespace} was not bound within {}",
                    humantime::format_duration(args.timeout)
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// A Pod that asks for the Secret through an explicit profile, and passes the restricted Pod
/// Security Standard (a dry run is admitted like a real create).
fn probe_pod(secret: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "dbbind-selftest",
            "annotations": {"dbbind.io/secret": secret, "dbbind.io/profile": "generic"},
        },
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "selftest",
                "image": "dbbind-selftest.invalid/never-pulled",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))?)
}

/// `POSTGRES_HOST=<secretKeyRef>` when dbbind bound `pod` to `secret`, else why not.
fn bound(pod: &Pod, secret: &str) -> anyhow::Result<String> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(STATUS).map(String::as_str) != Some(STATUS_INJECTED) {
        bail!(
            "the Pod came back without {STATUS}: {STATUS_INJECTED} (is dbbind's webhook registered?)"
        );
    }
    let host = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|container| container.env.iter().flatten())
        .find(|var| var.name == "POSTGRES_HOST")
        .context("the Pod came back without POSTGRES_HOST")?;
    let reference = host
        .value_from
        .as_ref()
        .and_then(|from| from.secret_key_ref.as_ref())
        .context("POSTGRES_HOST is not a reference to the Secret")?;
    if reference.name != secret {
        bail!(
            "POSTGRES_HOST refers to Secret {}, not {secret}",
            reference.name
        );
    }
    Ok(format!(
        "POSTGRES_HOST from key {:?}, {BINDINGS}: {}",
        reference.key,
        annotations.get(BINDINGS).cloned().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned(annotations: serde_json::Value, env: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "dbbind-selftest", "annotations": annotations},
            "spec": {"containers": [{"name": "selftest", "env": env}]},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn a_pod_dbbind_bound_to_the_secret_passes() {
        let pod = returned(
            json!({STATUS: STATUS_INJECTED, BINDINGS: "db=dbbind-selftest/generic"}),
            json!([{"name": "POSTGRES_HOST", "valueFrom": {"secretKeyRef": {"name": "dbbind-selftest", "key": "host"}}}]),
        );
        let found = bound(&pod, "dbbind-selftest");
        assert!(
            found
                .as_ref()
                .is_ok_and(|text| text.contains("db=dbbind-selftest/generic")),
            "{found:?}"
        );
    }

    #[test]
    fn a_pod_dbbind_did_not_bind_fails_with_why() {
        let untouched = returned(json!({"dbbind.io/secret": "dbbind-selftest"}), json!([]));
        let error = bound(&untouched, "dbbind-selftest")
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("is dbbind's webhook registered?")),
            "{error:?}"
        );
        let literal = returned(
            json!({STATUS: STATUS_INJECTED}),
            json!([{"name": "POSTGRES_HOST", "value": "db.example"}]),
        );
        assert!(bound(&literal, "dbbind-selftest").is_err());
        let elsewhere = returned(
            json!({STATUS: STATUS_INJECTED}),
            json!([{"name": "POSTGRES_HOST", "valueFrom": {"secretKeyRef": {"name": "other", "key": "host"}}}]),
        );
        let error = bound(&elsewhere, "dbbind-selftest")
            .err()
            .map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("Secret other")),
            "{error:?}"
        );
    }

    #[test]
    fn the_probe_pod_asks_for_the_secret_through_an_explicit_profile() {
        let pod = probe_pod("s").ok();
        let annotations = pod
            .and_then(|pod| pod.metadata.annotations)
            .unwrap_or_default();
        assert_eq!(
            annotations.get("dbbind.io/secret").map(String::as_str),
            Some("s")
        );
        assert_eq!(
            annotations.get("dbbind.io/profile").map(String::as_str),
            Some("generic")
        );
    }
}
