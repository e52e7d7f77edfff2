//! Restart on credential rotation (docs/design.md §10), the decisions without I/O: which pods
//! a changed Secret concerns, which controller to restart for each, once per workload however
//! many of its pods bind the Secret, and no more often than a rate allows.
//!
//! Environment variables never change in a running container, so a pod that reads a bound
//! Secret through `env` keeps the old password until it is replaced; projected files are
//! updated by the kubelet and need no restart. The plumbing (a leader-elected task in `dbbind
//! serve`) watches the Secrets, hashes their data in memory, lists the pods, reads ReplicaSets'
//! owners, and applies [`restarted_at_patch`]; what is decided is here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

// `RESTARTED_AT` is the template annotation whose change rolls a workload, as `kubectl rollout
// restart` does with `kubectl.kubernetes.io/restartedAt`; dbbind's own output, so never an
// unknown annotation when its pods come back to the webhook.
use crate::keys::{BINDINGS, RESTART_ON_ROTATION, RESTARTED_AT};

/// Whether a pod's annotations opt it in: exactly `"true"`.
pub fn opted_in(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(RESTART_ON_ROTATION).map(String::as_str) == Some("true")
}

/// The Secrets dbbind bound into a pod, read from the `dbbind.io/bindings` annotation it wrote
/// (`<binding>=<secret>/<profile>,…`).
pub fn bound_secrets(annotations: &BTreeMap<String, String>) -> BTreeSet<String> {
    let Some(bindings) = annotations.get(BINDINGS) else {
        return BTreeSet::new();
    };
    bindings
        .split(',')
        .filter_map(|binding| binding.split_once('=')?.1.split_once('/'))
        .map(|(secret, _profile)| secret.to_owned())
        .filter(|secret| !secret.is_empty())
        .collect()
}

/// The Secrets a pod's containers (init containers included) read through environment
/// variables: the ones whose change needs a restart.
pub fn env_secrets(spec: &PodSpec) -> BTreeSet<String> {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut secrets = BTreeSet::new();
    for container in containers {
        for var in container.env.iter().flatten() {
            if let Some(key) = var
                .value_from
                .as_ref()
                .and_then(|from| from.secret_key_ref.as_ref())
            {
                secrets.insert(key.name.clone());
            }
        }
        for source in container.env_from.iter().flatten() {
            if let Some(secret) = &source.secret_ref {
                secrets.insert(secret.name.clone());
            }
        }
    }
    secrets
}

/// The bound Secrets of an opted-in pod whose change needs a restart: bound by dbbind and read
/// through the environment. Empty for a pod that did not opt in, or binds by files only.
pub fn secrets_needing_restart(
    annotations: &BTreeMap<String, String>,
    spec: &PodSpec,
) -> BTreeSet<String> {
    if !opted_in(annotations) {
        return BTreeSet::new();
    }
    let env = env_secrets(spec);
    bound_secrets(annotations)
        .into_iter()
        .filter(|secret| env.contains(secret))
        .collect()
}

pub use crate::kind::WorkloadKind;

/// The workload an owner reference names, if a new template annotation rolls it.
fn rollable(owner: &OwnerReference) -> Option<WorkloadKind> {
    WorkloadKind::of_api_version(&owner.api_version, &owner.kind).filter(|kind| kind.rollable())
}

/// A workload in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    pub namespace: String,
    pub kind: WorkloadKind,
    pub name: String,
}

/// An object an Event is recorded on: its `apiVersion`, kind, name and uid (which `kubectl
/// describe` matches Events by).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Involved {
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// A pod, by name and uid.
#[derive(Clone, Copy, Debug)]
pub struct PodRef<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// What to do for a pod whose bound Secret rotated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Restart {
    /// Roll the workload: patch its template with [`restarted_at_patch`].
    Rollout(Workload),
    /// Nothing dbbind can roll (a Job, a bare Pod or ReplicaSet, another controller): an Event
    /// on it says the Secret changed and the pod still has the old value.
    EventOnly(Involved),
}

/// The controller owner of an object (the reference with `controller: true`).
pub fn controller_of(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners.iter().find(|owner| owner.controller == Some(true))
}

/// What to restart for `pod` in `namespace`, whose controller reference is `owner`.
/// `replica_set_owner` gives a ReplicaSet's controller reference (the plumbing reads the
/// ReplicaSet); a ReplicaSet a Deployment owns is rolled through the Deployment.
pub fn restart_target(
    namespace: &str,
    pod: PodRef<'_>,
    owner: Option<&OwnerReference>,
    replica_set_owner: impl Fn(&str) -> Option<OwnerReference>,
) -> Restart {
    let involved = |api_version: &str, kind: &str, name: &str, uid: &str| {
        Restart::EventOnly(Involved {
            namespace: namespace.to_owned(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
        })
    };
    let involved_owner =
        |owner: &OwnerReference| involved(&owner.api_version, &owner.kind, &owner.name, &owner.uid);
    let rollout = |kind, name: &str| {
        Restart::Rollout(Workload {
            namespace: namespace.to_owned(),
            kind,
            name: name.to_owned(),
        })
    };
    let Some(owner) = owner else {
        let pod_kind = WorkloadKind::Pod;
        return involved(&pod_kind.api_version(), pod_kind.name(), pod.name, pod.uid);
    };
    if let Some(kind) = rollable(owner) {
        return rollout(kind, &owner.name);
    }
    let replica_set = Some(WorkloadKind::ReplicaSet);
    if WorkloadKind::of_api_version(&owner.api_version, &owner.kind) == replica_set {
        // A ReplicaSet's pods are rolled by its Deployment's template.
        return match replica_set_owner(&owner.name) {
            Some(top) if rollable(&top) == Some(WorkloadKind::Deployment) => {
                rollout(WorkloadKind::Deployment, &top.name)
            }
            Some(top) => involved_owner(&top),
            // A bare ReplicaSet: a new template does not replace its pods.
            None => involved_owner(owner),
        };
    }
    involved_owner(owner)
}

/// The merge patch that rolls a Deployment, StatefulSet or DaemonSet: its template annotated
/// with the time of the restart (RFC 3339), as `kubectl rollout restart` does.
pub fn restarted_at_patch(at_rfc3339: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at_rfc3339}}}}})
}

/// Rollouts owed, at most one per workload per `min_interval_secs`: rotations of several
/// Secrets, or several pods of one workload, within the interval make one rollout.
#[derive(Debug)]
pub struct RolloutLimiter {
    min_interval_secs: i64,
    last: BTreeMap<Workload, i64>,
    pending: BTreeMap<Workload, BTreeSet<String>>,
}

impl RolloutLimiter {
    pub fn new(min_interval_secs: i64) -> RolloutLimiter {
        RolloutLimiter {
            min_interval_secs,
            last: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Records that `secret`, which `workload`'s pods read, rotated.
    pub fn offer(&mut self, workload: Workload, secret: &str) {
        self.pending
            .entry(workload)
            .or_default()
            .insert(secret.to_owned());
    }

    /// The rollouts due at `now` (Unix seconds), each with the Secrets that changed, taken off
    /// the pending list; the others wait for their interval to pass.
    pub fn due(&mut self, now: i64) -> Vec<(Workload, BTreeSet<String>)> {
        let ready: Vec<Workload> = self
            .pending
            .keys()
            .filter(|workload| self.next_allowed(workload) <= now)
            .cloned()
            .collect();
        ready
            .into_iter()
            .filter_map(|workload| {
                let secrets = self.pending.remove(&workload)?;
                self.last.insert(workload.clone(), now);
                Some((workload, secrets))
            })
            .collect()
    }

    /// Forgets the rollouts owed and made (leadership lost: the new leader decides).
    pub fn forget(&mut self) {
        self.last.clear();
        self.pending.clear();
    }

    /// When the earliest pending rollout becomes due (Unix seconds), if any is pending.
    pub fn next_due(&self) -> Option<i64> {
        self.pending
            .keys()
            .map(|workload| self.next_allowed(workload))
            .min()
    }

    fn next_allowed(&self, workload: &Workload) -> i64 {
        self.last
            .get(workload)
            .map_or(i64::MIN, |last| last.saturating_add(self.min_interval_secs))
    }
}

#[cfg(test)]
mod tests;
