//! `dbbind serve`: the flag groups of the subsystems, composed, and their wiring. Each
//! subsystem owns its flags (`server::ServeOptions` and `Limits`, `tls::setup`, `cache::setup`,
//! `rotation::setup`, `events`, `profiles`, `logging`); this module only puts them together.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use dbbind_core::profile::ProfileSet;

use crate::cache::setup::{self as cache, CacheFlags};
use crate::events::{EventFlags, event_queue};
use crate::logging::{self, LogFlags};
use crate::metrics::Metrics;
use crate::profiles::{ProfilesFlags, SharedProfiles};
use crate::reload;
use crate::rotation::changed::ChangedSecrets;
use crate::rotation::setup::{self as rotation, RotationFlags};
use crate::server::open_files;
use crate::server::signals::Shutdown;
use crate::server::{Limits, Parts, Readiness, ServeOptions, Server, WebhookState};
use crate::tasks::Tasks;
use crate::tls::setup::{self as certificates, TlsFlags};
use crate::tls::{self, CertStore};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// dbbind's namespace, where its certificate Secret (self-managed) and rotation Lease are
    /// (default: the service account's in a pod, the kubeconfig context's outside one).
    #[arg(long, env = "DBBIND_NAMESPACE")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub server: ServeOptions,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub tls: TlsFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub events: EventFlags,
    #[command(flatten)]
    pub profiles: ProfilesFlags,
    #[command(flatten)]
    pub rotation: RotationFlags,
    #[command(flatten)]
    pub log: LogFlags,
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
    // dbbind's own namespace: --namespace, else in a pod the service account's, outside one
    // the kubeconfig context's.
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    // In a pod, HOSTNAME is the pod's name: which replica wrote an Event, holds the Lease.
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "dbbind".to_owned());
    // Every background task is held here; one that ends stops dbbind (see `tasks`).
    let mut tasks = Tasks::new();

    let profiles = SharedProfiles::new(profiles);
    if let Some(path) = profiles_file {
        let reloader = profiles.reloader(path, Arc::clone(&metrics));
        tasks.spawn(
            "profiles reload",
            reload::every(args.profiles.profiles_reload_interval, reloader),
        );
    }

    let restarts = args.rotation.restart_on_rotation;
    let rotations = restarts.then(|| Arc::new(ChangedSecrets::default()));
    let secrets = cache::start(
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
    certificates::start(
        &args.tls,
        &namespace,
        client.clone(),
        Arc::clone(&certs),
        Arc::clone(&metrics),
        &mut tasks,
    );
    let readiness = Arc::new(Readiness::new(Arc::clone(&certs), cache_synced));

    let (events, event_writer) = event_queue(
        args.events.event_queue_capacity,
        args.events.event_dedup_window,
        &instance,
        Arc::clone(&metrics),
    );
    tasks.spawn("Event writer", event_writer.run(client.clone()));
    if let Some(rotations) = rotations {
        let wiring = rotation::Wiring {
            client: client.clone(),
            rotations,
            events: events.clone(),
            metrics: Arc::clone(&metrics),
            namespace,
            instance,
        };
        rotation::start(&args.rotation, wiring, &mut tasks);
    }
    // Held until serve returns: the router's copy goes when the listener stops, during the
    // drain, and the writer must not end (and be taken for a failed task) before that.
    let _events_open = events.clone();
    let webhook = WebhookState::new(
        Arc::new(secrets.clone()),
        profiles,
        Arc::clone(&metrics),
        args.limits,
    )
    .with_events(events)
    .with_cache(secrets)
    .with_restarts_on_rotation(restarts);
    let max_connections = args.server.connections.max_connections;
    let open_files = open_files::raise_to_hard_limit();
    if !open_files::enough_for(max_connections, open_files) {
        tracing::warn!(
            open_files,
            max_connections,
            "the open-files limit is below --max-connections plus a reserve: at the cap, new connections may be refused before an idle one can make room (raise the container's nofile limit, or lower --max-connections)"
        );
    }
    let server = Server::bind(args.server.clone()).await?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_flag_group_has_parsing_defaults_and_the_types_share_them() {
        let args: ServeArgs = crate::flags::defaults();
        assert_eq!(args.limits.request_timeout, Duration::from_secs(8));
        assert_eq!(args.limits.max_body_bytes, Limits::default().max_body_bytes);
        assert_eq!(args.server.connections.max_connections, 1024);
        assert_eq!(
            args.server.connections.idle_timeout,
            crate::server::ConnectionLimits::default().idle_timeout
        );
        assert_eq!(args.events.event_dedup_window, Duration::from_secs(600));
        assert_eq!(
            args.tls.webhooks.validating_webhook_config_name,
            "dbbind-workloads"
        );
        assert!(!args.rotation.restart_on_rotation);
        assert_eq!(args.namespace, None);
    }
}
