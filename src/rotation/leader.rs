//! One leader among dbbind's replicas, on a `coordination.k8s.io` Lease in dbbind's namespace.
//! Every replica watches; only the leader rolls workloads, so two replicas never trigger two
//! rollouts for one rotation. kube-lease-manager takes and renews the Lease with server-side
//! apply, so two replicas cannot both hold it. The other candidates sleep until the expiry they
//! read on the Lease, so leadership moves within about one Lease duration whether the leader
//! shut down (and released the Lease) or stopped renewing it (a crash, a lost node).

use std::time::Duration;

use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the Lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's name in the Lease's `holderIdentity` (the pod's name).
    pub identity: String,
    /// How long the Lease stays held without a renewal.
    pub duration: Duration,
    /// How long before the end of `duration` the holder renews.
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "lease duration {duration:?} and renewal grace {grace:?}: both must be whole seconds above zero, the grace shorter than the duration"
    )]
    Timing { duration: Duration, grace: Duration },
    #[error("Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// This replica's part in the election, running in a task of its own.
pub struct Leadership {
    settings: LeaseSettings,
    leading: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Joins the election (creating the Lease if it does not exist yet).
    pub async fn join(client: kube::Client, settings: &LeaseSettings) -> Result<Self, LeaderError> {
        let (duration, grace) = (settings.duration.as_secs(), settings.grace.as_secs());
        let whole = settings.duration.subsec_nanos() == 0 && settings.grace.subsec_nanos() == 0;
        // LeaseParams::new panics on these; say so instead.
        if !whole || duration == 0 || grace == 0 || grace >= duration {
            return Err(LeaderError::Timing {
                duration: settings.duration,
                grace: settings.grace,
            });
        }
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_create_mode(LeaseCreateMode::AutoCreate)
            .with_parameters(LeaseParams::new(&settings.identity, duration, grace))
            .build()
            .await
            .map_err(|source| LeaderError::Lease {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
                source,
            })?;
        let (leading, task) = manager.watch().await;
        Ok(Leadership {
            settings: settings.clone(),
            leading,
            task,
        })
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// A receiver that sees each change of leadership.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Gives the Lease up (on shutdown): it is left without a holder rather than renewed.
    /// Receivers from [`Leadership::changes`] must be gone for the release to happen; it is
    /// given `timeout` to reach the API server.
    pub async fn leave(self, timeout: Duration) -> Result<(), LeaderError> {
        let Leadership {
            settings,
            leading,
            task,
        } = self;
        drop(leading);
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Err(source))) => Err(LeaderError::Lease {
                namespace: settings.namespace,
                name: settings.name,
                source,
            }),
            // Released, or the task already gone (a panic, or the time ran out: the Lease then
            // expires on its own).
            _ => Ok(()),
        }
    }

    /// Stops taking part without giving the Lease up, as a crash would: for tests of the
    /// expiry path.
    pub fn abandon(self) {
        self.task.abort();
    }
}
