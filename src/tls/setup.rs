//! TLS's flags of `dbbind serve`, and starting what they ask for: certificates from files, or
//! self-managed ones.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kube::Api;

use super::files::FileReloader;
use super::generate::SubjectNames;
use super::self_managed::{CA_SETTLE, Location, Manager, Policy};
use super::{CertStore, OnLoaded};
use crate::metrics::Metrics;
use crate::reload;
use crate::tasks::Tasks;

#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsFlags {
    /// Serving certificate (PEM chain). With --tls-key-file; re-read when it changes. Without
    /// both, dbbind manages its own certificates.
    #[arg(long, env = "DBBIND_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving certificate's private key (PEM).
    #[arg(long, env = "DBBIND_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "DBBIND_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
    /// Self-managed: the webhook Service, whose DNS names the certificate carries.
    #[arg(long, env = "DBBIND_SERVICE_NAME", default_value = "dbbind")]
    pub service_name: String,
    /// Self-managed: the Secret holding the CA and serving certificate.
    #[arg(long, env = "DBBIND_CERT_SECRET_NAME", default_value = "dbbind-tls")]
    pub cert_secret_name: String,
    /// Self-managed: the webhook configurations whose caBundles dbbind keeps current.
    #[command(flatten)]
    pub webhooks: WebhookConfigNames,
    /// Self-managed: extra DNS names for the serving certificate (comma separated).
    #[arg(long, env = "DBBIND_EXTRA_DNS_NAMES", value_delimiter = ',')]
    pub extra_dns_names: Vec<String>,
    /// Self-managed: IP addresses for the serving certificate (comma separated), e.g. 127.0.0.1
    /// for a URL-registered webhook.
    #[arg(long, env = "DBBIND_EXTRA_IP_ADDRESSES", value_delimiter = ',')]
    pub extra_ip_addresses: Vec<IpAddr>,
    /// Self-managed: lifetime of the serving certificate; renewed after two thirds of it.
    #[arg(long, env = "DBBIND_SERVING_CERT_VALIDITY", default_value = "7d", value_parser = humantime::parse_duration)]
    pub serving_cert_validity: Duration,
    /// Self-managed: lifetime of the CA; rotated after two thirds of it, the old CA staying in
    /// the caBundle while it is valid.
    #[arg(long, env = "DBBIND_CA_VALIDITY", default_value = "365d", value_parser = humantime::parse_duration)]
    pub ca_validity: Duration,
    /// Self-managed: how often the certificate Secret and caBundle are checked.
    #[arg(long, env = "DBBIND_CERT_CHECK_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub cert_check_interval: Duration,
}

/// dbbind's webhook configurations, by name: `serve` keeps their caBundles current (with
/// self-managed certificates), `unregister` deletes them.
#[derive(Clone, Debug, Args)]
pub struct WebhookConfigNames {
    /// The MutatingWebhookConfiguration (the Pod webhook).
    #[arg(long, env = "DBBIND_WEBHOOK_CONFIG_NAME", default_value = "dbbind")]
    pub webhook_config_name: String,
    /// The ValidatingWebhookConfiguration of the workload check; empty when it is not
    /// installed.
    #[arg(
        long,
        env = "DBBIND_VALIDATING_WEBHOOK_CONFIG_NAME",
        default_value = "dbbind-workloads"
    )]
    pub validating_webhook_config_name: String,
}

/// Certificates from files when both are given, otherwise self-managed in `namespace`
/// (dbbind's own).
pub fn start(
    flags: &TlsFlags,
    namespace: &str,
    client: kube::Client,
    certs: Arc<CertStore>,
    metrics: Arc<Metrics>,
    tasks: &mut Tasks,
) {
    let on_loaded: OnLoaded = Arc::new(move |not_after| metrics.set_certificate_expiry(not_after));
    if let (Some(cert), Some(key)) = (&flags.tls_cert_file, &flags.tls_key_file) {
        tracing::info!(cert = %cert.display(), key = %key.display(), "serving certificates from files");
        let reloader = FileReloader::new(cert, key, certs).with_on_loaded(on_loaded);
        tasks.spawn(
            "certificate files reload",
            reload::every(flags.tls_reload_interval, reloader),
        );
        return;
    }
    let names = SubjectNames::for_service(
        &flags.service_name,
        namespace,
        &flags.extra_dns_names,
        &flags.extra_ip_addresses,
    );
    tracing::info!(%namespace, secret = %flags.cert_secret_name, "self-managed certificates");
    let manager = Manager {
        secrets: Api::namespaced(client.clone(), namespace),
        webhooks: Api::all(client.clone()),
        validating_webhooks: Api::all(client),
        location: Location {
            namespace: namespace.to_owned(),
            secret_name: flags.cert_secret_name.clone(),
            webhook_config_name: flags.webhooks.webhook_config_name.clone(),
            validating_webhook_config_name: Some(&flags.webhooks.validating_webhook_config_name)
                .filter(|name| !name.is_empty())
                .cloned(),
        },
        policy: Policy {
            names,
            serving_validity: flags.serving_cert_validity,
            ca_validity: flags.ca_validity,
        },
        store: certs,
        on_loaded: Some(on_loaded),
        ca_settle: CA_SETTLE,
    };
    tasks.spawn(
        "self-managed certificates",
        reload::every(flags.cert_check_interval, manager),
    );
}
