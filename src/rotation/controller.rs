//! The rotation controller: on each Secret whose data changed, the pods that read it through
//! their environment, the workload of each rolled once (rate-limited), Events and metrics.
//! Every replica runs it and counts the rotations it sees; only the leader lists pods and
//! rolls workloads.
//!
//! Pods are listed in the Secret's namespace when a Secret changes, not watched: rotations are
//! rare, pods many. Nothing here reads a Secret: the change comes from the cache's digests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dbbind_core::keys::RESTARTED_AT;
use dbbind_core::rotation::{
    Involved, PodRef, Restart, RolloutLimiter, Workload, WorkloadKind, controller_of,
    restart_target, restarted_at_patch, secrets_needing_restart,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Resource};
use tokio::sync::watch;

use super::changed::{ChangedSecrets, SecretRef};
use super::leader::{Leadership, LeaseSettings};
use crate::events::{EventQueue, PendingEvent, Reason};
use crate::metrics::Metrics;

/// The field manager of dbbind's patches, as `managedFields` and GitOps tools show it.
const FIELD_MANAGER: &str = "dbbind";

/// How long a replica that could not join the election waits before trying again.
const JOIN_RETRY: Duration = Duration::from_secs(5);

/// What the leader does with changed Secrets.
pub struct Controller {
    client: kube::Client,
    changed: Arc<ChangedSecrets>,
    events: EventQueue,
    metrics: Arc<Metrics>,
    limiter: RolloutLimiter,
}

impl Controller {
    /// A controller rolling each workload at most once per `min_interval`.
    pub fn new(
        client: kube::Client,
        changed: Arc<ChangedSecrets>,
        events: EventQueue,
        metrics: Arc<Metrics>,
        min_interval: Duration,
    ) -> Controller {
        let seconds = i64::try_from(min_interval.as_secs()).unwrap_or(i64::MAX);
        Controller {
            client,
            changed,
            events,
            metrics,
            limiter: RolloutLimiter::new(seconds),
        }
    }

    /// Joins the election on `lease` (retrying while the API server refuses) and acts on
    /// rotations while leading; runs until dbbind stops.
    pub async fn run(mut self, lease: LeaseSettings) {
        loop {
            let leadership = match Leadership::join(self.client.clone(), &lease).await {
                Ok(leadership) => leadership,
                Err(error) => {
                    tracing::warn!(%error, "cannot join the rotation leader election; retrying");
                    tokio::time::sleep(JOIN_RETRY).await;
                    continue;
                }
            };
            self.lead_while(leadership.changes()).await;
            tracing::warn!("the rotation leader election stopped; joining again");
            // Stop acting at once: another replica may lead now.
            self.limiter.forget();
        }
    }

    /// Acts on rotations while `leading` says so; returns when its sender is gone (the
    /// election task ended). [`Controller::run`] gives it the election's receiver.
    pub async fn lead_while(&mut self, mut leading: watch::Receiver<bool>) {
        let mut was_leading = false;
        loop {
            let is_leading = *leading.borrow_and_update();
            if is_leading != was_leading {
                tracing::info!(leading = is_leading, "rotation leadership changed");
                if !is_leading {
                    // The new leader starts from its own view: nothing owed is carried over.
                    self.limiter.forget();
                }
                was_leading = is_leading;
            }
            let next_due = self.limiter.next_due();
            tokio::select! {
                secrets = self.changed.next() => {
                    self.metrics.observe_rotations(secrets.len());
                    if is_leading {
                        for secret in &secrets {
                            self.find_restarts(secret).await;
                        }
                    } else {
                        tracing::debug!(secrets = secrets.len(), "Secrets changed; another replica leads");
                    }
                }
                () = sleep_until_second(next_due.unwrap_or(0)), if next_due.is_some() => {}
                changed = leading.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            if *leading.borrow() {
                self.roll_due().await;
            }
        }
    }

    /// Finds the workloads of the pods that read `secret` through their environment and opted
    /// in: rollouts are owed to the limiter, Events for what cannot be rolled are written now.
    async fn find_restarts(&mut self, secret: &SecretRef) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &secret.namespace);
        let pods = match pods.list(&ListParams::default()).await {
            Ok(pods) => pods.items,
            Err(error) => {
                self.metrics.observe_rollout(false);
                tracing::warn!(%error, namespace = %secret.namespace, secret = %secret.name,
                    "Secret changed but its namespace's pods cannot be listed; no restart");
                return;
            }
        };
        let mut replica_set_owners: HashMap<String, Option<OwnerReference>> = HashMap::new();
        let mut targets = BTreeSet::new();
        for pod in &pods {
            let Some(spec) = &pod.spec else { continue };
            let finished = pod
                .status
                .as_ref()
                .and_then(|status| status.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
            let annotations = pod.metadata.annotations.clone().unwrap_or_default();
            if finished
                || pod.metadata.deletion_timestamp.is_some()
                || !secrets_needing_restart(&annotations, spec).contains(&secret.name)
            {
                continue;
            }
            let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
            let owner = controller_of(owners);
            if let Some(owner) = owner.filter(|owner| is_replica_set(owner))
                && !replica_set_owners.contains_key(&owner.name)
            {
                let replica_sets: Api<ReplicaSet> =
                    Api::namespaced(self.client.clone(), &secret.namespace);
                match replica_sets.get_opt(&owner.name).await {
                    Ok(replica_set) => {
                        let top = replica_set.and_then(|replica_set| {
                            let owners = replica_set.metadata.owner_references?;
                            controller_of(&owners).cloned()
                        });
                        replica_set_owners.insert(owner.name.clone(), top);
                    }
                    Err(error) => {
                        self.metrics.observe_rollout(false);
                        tracing::warn!(%error, namespace = %secret.namespace, replica_set = %owner.name,
                            "cannot read a ReplicaSet to find its Deployment; its pods are not restarted");
                        continue;
                    }
                }
            }
            let pod_ref = PodRef {
                name: pod.metadata.name.as_deref().unwrap_or_default(),
                uid: pod.metadata.uid.as_deref().unwrap_or_default(),
            };
            targets.insert(restart_target(&secret.namespace, pod_ref, owner, |name| {
                replica_set_owners.get(name).cloned().flatten()
            }));
        }
        for target in targets {
            match target {
                Restart::Rollout(workload) => self.limiter.offer(workload, &secret.name),
                Restart::EventOnly(involved) => self.not_restartable(&involved, &secret.name),
            }
        }
    }

    fn not_restartable(&self, involved: &Involved, secret: &str) {
        tracing::info!(namespace = %involved.namespace, kind = %involved.kind, name = %involved.name, %secret,
            "Secret changed; dbbind cannot roll this owner, so an Event says so");
        self.events.offer(PendingEvent {
            namespace: involved.namespace.clone(),
            owner: OwnerReference {
                api_version: involved.api_version.clone(),
                kind: involved.kind.clone(),
                name: involved.name.clone(),
                uid: involved.uid.clone(),
                ..OwnerReference::default()
            },
            reason: Reason::RotationNotRestartable,
            message: format!(
                "Secret {secret} changed, but dbbind cannot restart a {kind}: its pods read it through environment variables and keep the old value until they are replaced (dbbind rolls {rollable})",
                kind = involved.kind,
                rollable = WorkloadKind::list(WorkloadKind::ALL.into_iter().filter(|kind| kind.rollable())),
            ),
        });
    }

    /// Rolls every workload whose rollout is due.
    async fn roll_due(&mut self) {
        let now = Timestamp::now().as_second();
        for (workload, secrets) in self.limiter.due(now) {
            // Whole seconds, as `kubectl rollout restart` writes its annotation.
            let at =
                Timestamp::from_second(now).map_or_else(|_| now.to_string(), |t| t.to_string());
            let template = restarted_at_patch(&at);
            let client = self.client.clone();
            let (namespace, name) = (&workload.namespace, &workload.name);
            let patched = patch_template(client, workload.kind, namespace, name, &template).await;
            let secret_list = secrets.iter().cloned().collect::<Vec<_>>().join(", ");
            match patched {
                Ok(uid) => {
                    self.metrics.observe_rollout(true);
                    tracing::info!(%namespace, kind = workload.kind.name(), %name, secrets = %secret_list,
                        "Secret changed; rolled the workload");
                    self.rolled(&workload, uid, &secret_list, &at);
                }
                Err(error) => {
                    self.metrics.observe_rollout(false);
                    let gone = matches!(&error, kube::Error::Api(status) if status.code == 404);
                    tracing::warn!(%error, %namespace, kind = workload.kind.name(), %name, secrets = %secret_list,
                        retry = !gone, "Secret changed but the workload could not be rolled");
                    if !gone {
                        // Tried again after the interval, with any rotation that comes meanwhile.
                        for secret in &secrets {
                            self.limiter.offer(workload.clone(), secret);
                        }
                    }
                }
            }
        }
    }

    fn rolled(&self, workload: &Workload, uid: String, secrets: &str, at: &str) {
        let kind = workload.kind.name();
        self.events.offer(PendingEvent {
            namespace: workload.namespace.clone(),
            owner: OwnerReference {
                api_version: "apps/v1".to_owned(),
                kind: kind.to_owned(),
                name: workload.name.clone(),
                uid,
                ..OwnerReference::default()
            },
            reason: Reason::SecretRotated,
            message: format!(
                "Secret {secrets} changed: dbbind rolled this {kind} so its pods read the new value ({RESTARTED_AT}={at})"
            ),
        });
    }
}

fn is_replica_set(owner: &OwnerReference) -> bool {
    WorkloadKind::of_api_version(&owner.api_version, &owner.kind) == Some(WorkloadKind::ReplicaSet)
}

/// Merge-patches a workload's template; returns its uid, for the Event.
/// Patches the template of a workload of `kind`, known by the kind table alone (core's
/// `kind` module), so a kind made rollable there needs nothing here.
async fn patch_template(
    client: kube::Client,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<String, kube::Error> {
    let gvk = GroupVersionKind::gvk(kind.group(), "v1", kind.name());
    let resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural());
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patched = api.patch(name, &params, &Patch::Merge(patch)).await?;
    Ok(patched.meta().uid.clone().unwrap_or_default())
}

/// Sleeps until the Unix time `second` (at once if it has passed).
async fn sleep_until_second(second: i64) {
    let now = Timestamp::now().as_second();
    let wait = u64::try_from(second.saturating_sub(now)).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(wait)).await;
}
