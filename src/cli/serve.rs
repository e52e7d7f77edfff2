//! `dbbind serve`: flags (each with its environment variable) and the wiring of cache,
//! certificates, profiles and listeners.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dbbind_core::profile::ProfileSet;
use kube::Api;

use crate::cache::namespaces::{self, ClientWatches};
use crate::cache::{SecretCache, watch};
use crate::events::event_queue;
use crate::logging::{self, LogFormat};
use crate::metrics::Metrics;
use crate::profiles::SharedProfiles;
use crate::reload;
use crate::rotation::changed::ChangedSecrets;
use crate::rotation::controller::Controller;
use crate::rotation::leader::LeaseSettings;
use crate::server::open_files;
use crate::server::signals::Shutdown;
use crate::server::{
    ConnectionLimits, Limits, Parts, Readiness, ServeOptions, Server, WebhookState,
};
use crate::tasks::Tasks;
use crate::tls::files::FileReloader;
use crate::tls::generate::SubjectNames;
use crate::tls::self_managed::{CA_SETTLE, Location, Manager, Policy};
use crate::tls::{self, CertStore, OnLoaded};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    #[command(flatten)]
    pub tls: TlsFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub rotation: RotationFlags,
    #[command(flatten)]
    pub log: LogFlags,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Restart on rotation")]
pub struct RotationFlags {
    /// Roll the Deployments, StatefulSets and DaemonSets whose pods opted in with
    /// dbbind.io/restart-on-rotation when a Secret they read through env changes. Needs patch
    /// on those kinds, list on pods, get on ReplicaSets and a Lease (chart: rotation.enabled).
    #[arg(long, env = "DBBIND_RESTART_ON_ROTATION")]
    pub restart_on_rotation: bool,
    /// At most one rollout per workload in this interval; rotations meanwhile wait and make
    /// one rollout.
    #[arg(long, env = "DBBIND_ROTATION_MIN_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub rotation_min_interval: Duration,
    /// The Lease, in dbbind's namespace, whose holder is the one replica that acts on
    /// rotations.
    #[arg(
        long,
        env = "DBBIND_ROTATION_LEASE_NAME",
        default_value = "dbbind-rotation"
    )]
    pub rotation_lease_name: String,
}

/// How long the rotation Lease is held without renewal, and how long before its end the
/// holder renews it: a replica that dies is replaced as leader within 15 s.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(next_help_heading = "Secret cache")]
pub struct CacheFlags {
    /// Watch Secrets in these namespaces only (comma separated), so read access to Secrets is
    /// needed there only. They must cover every namespace that opts in. Default: all namespaces.
    #[arg(
        long,
        env = "DBBIND_WATCH_NAMESPACES",
        value_delimiter = ',',
        conflicts_with = "namespace_selector"
    )]
    pub watch_namespaces: Vec<String>,
    /// Watch Secrets only in the namespaces this label selector picks, following them as they
    /// are labelled and unlabelled (e.g. `dbbind.io/inject=enabled`, the webhook's own
    /// namespaceSelector): Secrets elsewhere are never listed. Needs list and watch on
    /// namespaces. Default: all namespaces.
    #[arg(long, env = "DBBIND_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerFlags {
    /// Admission listener (TLS only; HTTP/1.1 and HTTP/2).
    #[arg(long, env = "DBBIND_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Admin listener (plain HTTP): /livez, /readyz, /metrics.
    #[arg(long, env = "DBBIND_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Deadline for one admission request; keep it below the webhook's timeoutSeconds.
    #[arg(long, env = "DBBIND_REQUEST_TIMEOUT", default_value = "8s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Largest AdmissionReview body accepted, in bytes.
    #[arg(long, env = "DBBIND_MAX_BODY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Admission requests decided at once; more wait within their deadline.
    #[arg(long, env = "DBBIND_MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    pub max_concurrent_requests: usize,
    /// Bytes of request bodies held in memory at once, across all requests (at least
    /// --max-body-bytes); arriving bodies wait when it is spent.
    #[arg(long, env = "DBBIND_MAX_BUFFERED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_buffered_bytes: usize,
    /// Time a client has to send a request's whole body once its headers are in.
    #[arg(long, env = "DBBIND_BODY_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, env = "DBBIND_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Time an HTTP/1.1 client has to send a request's headers, and any client its first
    /// bytes after the TLS handshake.
    #[arg(long, env = "DBBIND_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// A connection from which nothing has been read for this long is closed.
    #[arg(long, env = "DBBIND_IDLE_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Admission connections open at once. One accepted beyond this takes the place of the
    /// connection that has shown least sign of being a client (a silent handshake, then one
    /// that never sent a request, then a handshake under way, then the one waiting longest
    /// since its last response); it is refused only when every one has a request in flight.
    #[arg(long, env = "DBBIND_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// After SIGTERM, how long to keep serving while /readyz reports false.
    #[arg(long, env = "DBBIND_SHUTDOWN_DRAIN", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_drain: Duration,
    /// After the drain, how long in-flight requests may take to finish.
    #[arg(long, env = "DBBIND_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Events queued for writing at most; when full, an Event is dropped (and counted) rather
    /// than delay an admission.
    #[arg(long, env = "DBBIND_EVENT_QUEUE_CAPACITY", default_value_t = 1024)]
    pub event_queue_capacity: usize,
    /// The same Event (owner, reason, message) is written at most once per this window.
    #[arg(long, env = "DBBIND_EVENT_DEDUP_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub event_dedup_window: Duration,
    /// How often --profiles-file is checked for changes.
    #[arg(long, env = "DBBIND_PROFILES_RELOAD_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub profiles_reload_interval: Duration,
}

#[derive(Debug, Args)]
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
    /// dbbind's namespace, where its certificate Secret (self-managed) and rotation Lease are
    /// (default: the service account's in a pod, the kubeconfig context's outside one).
    #[arg(long, env = "DBBIND_NAMESPACE")]
    pub namespace: Option<String>,
    /// Self-managed: the webhook Service, whose DNS names the certificate carries.
    #[arg(long, env = "DBBIND_SERVICE_NAME", default_value = "dbbind")]
    pub service_name: String,
    /// Self-managed: the Secret holding the CA and serving certificate.
    #[arg(long, env = "DBBIND_CERT_SECRET_NAME", default_value = "dbbind-tls")]
    pub cert_secret_name: String,
    /// Self-managed: the webhook configurations whose caBundles dbbind keeps current.
    #[command(flatten)]
    pub webhooks: super::WebhookConfigNames,
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

#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogFlags {
    /// json in a cluster, text on a terminal.
    #[arg(long, env = "DBBIND_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// A tracing env-filter directive, e.g. info or dbbind=debug,kube=info.
    #[arg(long, env = "DBBIND_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Runs the server until a shutdown signal; returns the exit code.
pub fn run(args: &ServeArgs, profiles: ProfileSet, profiles_file: Option<PathBuf>) -> u8 {
    if let Err(error) = logging::init(args.log.log_format, &args.log.log_level) {
        eprintln!("Error: {error}");
        return super::EXIT_BAD_INPUT;
    }
    tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return 1;
        }
    };
    match runtime.block_on(serve(args, profiles, profiles_file)) {
        Ok(()) => 0,
        Err(error) if error.is::<Forced>() => {
            tracing::warn!("second signal: exited without waiting for in-flight requests");
            EXIT_FORCED
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "dbbind serve failed");
            1
        }
    }
}

/// Exit code after a second SIGTERM or SIGINT, as a shell reports an interrupted command.
const EXIT_FORCED: u8 = 130;

/// A second shutdown signal arrived before the drain finished.
#[derive(Debug, thiserror::Error)]
#[error("a second shutdown signal arrived")]
struct Forced;

async fn serve(
    args: &ServeArgs,
    profiles: ProfileSet,
    profiles_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::install().context("cannot install signal handlers")?;
    let metrics = Arc::new(Metrics::new());
    let certs = CertStore::new();
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    // Every background task is held here; one that ends stops dbbind (see `tasks`).
    let mut tasks = Tasks::new();

    let profiles = SharedProfiles::new(profiles);
    if let Some(path) = profiles_file {
        let reloader = profiles.reloader(path, Arc::clone(&metrics));
        tasks.spawn(
            "profiles reload",
            reload::every(args.server.profiles_reload_interval, reloader),
        );
    }

    let restarts = args.rotation.restart_on_rotation;
    let rotations = restarts.then(|| Arc::new(ChangedSecrets::default()));
    let secrets = start_cache(
        &args.cache,
        &client,
        &profiles,
        &metrics,
        rotations.clone(),
        &mut tasks,
    );
    let cache_synced = {
        let secrets = secrets.clone();
        Box::new(move || secrets.is_synced())
    };

    start_certificates(
        args,
        client.clone(),
        Arc::clone(&certs),
        Arc::clone(&metrics),
        &mut tasks,
    )?;

    let readiness = Arc::new(Readiness::new(Arc::clone(&certs), cache_synced));
    let limits = Limits {
        max_body_bytes: args.server.max_body_bytes,
        request_timeout: args.server.request_timeout,
        max_concurrent: args.server.max_concurrent_requests,
        max_buffered_bytes: args.server.max_buffered_bytes,
        body_read_timeout: args.server.body_read_timeout,
    };
    // In a pod, HOSTNAME is the pod's name: which replica wrote an Event.
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "dbbind".to_owned());
    let (events, event_writer) = event_queue(
        args.server.event_queue_capacity,
        args.server.event_dedup_window,
        &instance,
        Arc::clone(&metrics),
    );
    tasks.spawn("Event writer", event_writer.run(client.clone()));
    if let Some(rotations) = rotations {
        let controller = Controller::new(
            client.clone(),
            rotations,
            events.clone(),
            Arc::clone(&metrics),
            args.rotation.rotation_min_interval,
        );
        let lease = LeaseSettings {
            namespace: dbbind_namespace(args, &client),
            name: args.rotation.rotation_lease_name.clone(),
            identity: leader_identity(&instance),
            duration: LEASE_DURATION,
            grace: LEASE_GRACE,
        };
        tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity,
            "restart on rotation: workloads that opt in are rolled when a Secret they read through env changes");
        tasks.spawn("rotation controller", controller.run(lease));
    }
    // Held until serve returns: the router's copy goes when the listener stops, during the
    // drain, and the writer must not end (and be taken for a failed task) before that.
    let _events_open = events.clone();
    let webhook = WebhookState::new(
        Arc::new(secrets.clone()),
        profiles,
        Arc::clone(&metrics),
        limits,
    )
    .with_events(events)
    .with_cache(secrets)
    .with_restarts_on_rotation(restarts);
    let open_files = open_files::raise_to_hard_limit();
    if !open_files::enough_for(args.server.max_connections, open_files) {
        tracing::warn!(
            open_files,
            max_connections = args.server.max_connections,
            "the open-files limit is below --max-connections plus a reserve: at the cap, new connections may be refused before an idle one can make room (raise the container's nofile limit, or lower --max-connections)"
        );
    }
    let server = Server::bind(ServeOptions {
        listen: args.server.listen,
        admin_listen: args.server.admin_listen,
        connections: ConnectionLimits {
            handshake_timeout: args.server.handshake_timeout,
            header_read_timeout: args.server.header_read_timeout,
            idle_timeout: args.server.idle_timeout,
            max_connections: args.server.max_connections,
        },
        shutdown_drain: args.server.shutdown_drain,
        shutdown_timeout: args.server.shutdown_timeout,
    })
    .await?;
    let parts = Parts {
        webhook,
        certs,
        readiness,
        metrics,
    };
    tokio::select! {
        served = server.run(parts, shutdown.requested()) => Ok(served?),
        () = shutdown.forced() => Err(Forced.into()),
        ended = tasks.first_ended() => Err(ended.into()),
    }
}

/// Starts the Secret watches of the cache's scope: the whole cluster, the namespaces of
/// `--watch-namespaces`, or those `--namespace-selector` picks.
fn start_cache(
    flags: &CacheFlags,
    client: &kube::Client,
    profiles: &SharedProfiles,
    metrics: &Arc<Metrics>,
    rotations: Option<Arc<ChangedSecrets>>,
    tasks: &mut Tasks,
) -> SecretCache {
    let filters = profiles.shape_filter();
    if let Some(selector) = &flags.namespace_selector {
        let cache = SecretCache::following_namespaces(rotations);
        let counted = cache.clone();
        let metrics = Arc::clone(metrics);
        let watches = ClientWatches {
            client: client.clone(),
            filters,
            on_change: Arc::new(move || metrics.set_cache_objects(counted.len())),
        };
        tasks.spawn(
            "namespace watch",
            namespaces::follow(
                Api::all(client.clone()),
                selector.clone(),
                cache.clone(),
                watches,
            ),
        );
        tracing::info!(%selector, "watching Secrets in the namespaces this selector picks");
        return cache;
    }
    if flags.watch_namespaces.is_empty() {
        let (cache, partition) = SecretCache::cluster(rotations);
        let counted = Arc::clone(&partition);
        let metrics = Arc::clone(metrics);
        tasks.spawn(
            "Secret watch",
            watch::run(partition, Api::all(client.clone()), filters, move || {
                metrics.set_cache_objects(counted.len())
            }),
        );
        return cache;
    }
    let (cache, partitions) = SecretCache::namespaces(&flags.watch_namespaces, rotations);
    for (namespace, partition) in partitions {
        let (metrics, counted) = (Arc::clone(metrics), cache.clone());
        tasks.spawn(
            format!("Secret watch in {namespace}"),
            watch::run(
                partition,
                Api::namespaced(client.clone(), &namespace),
                filters.clone(),
                move || metrics.set_cache_objects(counted.len()),
            ),
        );
    }
    tracing::info!(namespaces = %flags.watch_namespaces.join(","), "watching Secrets in these namespaces only");
    cache
}

/// dbbind's own namespace: --namespace, else in a pod the service account's, outside one the
/// kubeconfig context's.
fn dbbind_namespace(args: &ServeArgs, client: &kube::Client) -> String {
    args.tls
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned())
}

/// This replica's name in the rotation Lease: the pod's name with a random suffix, as
/// client-go's leader election does, so two processes with one host name never both think
/// they hold it.
fn leader_identity(instance: &str) -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{instance}_{random:016x}")
}

/// Certificates from files when both are given, otherwise self-managed.
fn start_certificates(
    args: &ServeArgs,
    client: kube::Client,
    certs: Arc<CertStore>,
    metrics: Arc<Metrics>,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let on_loaded: OnLoaded = Arc::new(move |not_after| metrics.set_certificate_expiry(not_after));
    if let (Some(cert), Some(key)) = (&args.tls.tls_cert_file, &args.tls.tls_key_file) {
        tracing::info!(cert = %cert.display(), key = %key.display(), "serving certificates from files");
        let reloader = FileReloader::new(cert, key, certs).with_on_loaded(on_loaded);
        tasks.spawn(
            "certificate files reload",
            reload::every(args.tls.tls_reload_interval, reloader),
        );
        return Ok(());
    }
    let namespace = dbbind_namespace(args, &client);
    let names = SubjectNames::for_service(
        &args.tls.service_name,
        &namespace,
        &args.tls.extra_dns_names,
        &args.tls.extra_ip_addresses,
    );
    tracing::info!(%namespace, secret = %args.tls.cert_secret_name, "self-managed certificates");
    let manager = Manager {
        secrets: Api::namespaced(client.clone(), &namespace),
        webhooks: Api::all(client.clone()),
        validating_webhooks: Api::all(client),
        location: Location {
            namespace,
            secret_name: args.tls.cert_secret_name.clone(),
            webhook_config_name: args.tls.webhooks.webhook_config_name.clone(),
            validating_webhook_config_name: Some(&args.tls.webhooks.validating_webhook_config_name)
                .filter(|name| !name.is_empty())
                .cloned(),
        },
        policy: Policy {
            names,
            serving_validity: args.tls.serving_cert_validity,
            ca_validity: args.tls.ca_validity,
        },
        store: certs,
        on_loaded: Some(on_loaded),
        ca_settle: CA_SETTLE,
    };
    tasks.spawn(
        "self-managed certificates",
        reload::every(args.tls.cert_check_interval, manager),
    );
    Ok(())
}
