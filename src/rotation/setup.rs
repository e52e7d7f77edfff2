//! Rotation's flags of `dbbind serve`, and starting the controller when they ask for it.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::changed::ChangedSecrets;
use super::controller::Controller;
use super::leader::LeaseSettings;
use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::tasks::Tasks;

#[derive(Clone, Debug, Args)]
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

/// What the controller needs from the rest of `serve`.
pub struct Wiring {
    pub client: kube::Client,
    /// The Secrets whose data the cache saw change.
    pub rotations: Arc<ChangedSecrets>,
    pub events: EventQueue,
    pub metrics: Arc<Metrics>,
    /// dbbind's namespace, where the Lease is.
    pub namespace: String,
    /// This replica's name (the pod's).
    pub instance: String,
}

/// Starts the rotation controller, which acts only while this replica holds the Lease.
pub fn start(flags: &RotationFlags, wiring: Wiring, tasks: &mut Tasks) {
    let controller = Controller::new(
        wiring.client,
        wiring.rotations,
        wiring.events,
        wiring.metrics,
        flags.rotation_min_interval,
    );
    let lease = LeaseSettings {
        namespace: wiring.namespace,
        name: flags.rotation_lease_name.clone(),
        identity: leader_identity(&wiring.instance),
        duration: LEASE_DURATION,
        grace: LEASE_GRACE,
    };
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity,
        "restart on rotation: workloads that opt in are rolled when a Secret they read through env changes");
    tasks.spawn("rotation controller", controller.run(lease));
}

/// This replica's name in the rotation Lease: the pod's name with a random suffix, as
/// client-go's leader election does, so two processes with one host name never both think
/// they hold it.
fn leader_identity(instance: &str) -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{instance}_{random:016x}")
}
