//! `dbbind unregister`: deletes dbbind's webhook configurations, so the API server stops
//! calling it, and waits for the API server to notice. The chart runs it as a `pre-delete`
//! hook: `helm uninstall` deletes a release's Service and Deployment before its webhook
//! configurations (kinds Helm does not order come last), and with `failurePolicy: Fail` every
//! pod create in an opted-in namespace would fail in between.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Api;
use kube::api::DeleteParams;

use crate::tls::setup::WebhookConfigNames;

/// The API server reads webhook configurations through an informer: a deletion takes effect
/// for admissions a moment later.
const SETTLE: Duration = Duration::from_secs(2);

/// Deletes both configurations (one already gone is not an error), then waits [`SETTLE`].
pub async fn unregister(args: &WebhookConfigNames) -> anyhow::Result<Vec<String>> {
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let mut done = Vec::new();
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    done.push(
        delete(
            &mutating,
            "MutatingWebhookConfiguration",
            &args.webhook_config_name,
        )
        .await?,
    );
    if !args.validating_webhook_config_name.is_empty() {
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client);
        done.push(
            delete(
                &validating,
                "ValidatingWebhookConfiguration",
                &args.validating_webhook_config_name,
            )
            .await?,
        );
    }
    tokio::time::sleep(SETTLE).await;
    Ok(done)
}

async fn delete<K>(api: &Api<K>, kind: &str, name: &str) -> anyhow::Result<String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(format!("deleted {kind} {name}")),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Ok(format!("{kind} {name} was not there"))
        }
        Err(error) => Err(error).with_context(|| format!("cannot delete {kind} {name}")),
    }
}
