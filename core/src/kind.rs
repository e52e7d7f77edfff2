//! The kinds of object that carry a pod: Pod itself, and the workloads whose pod template
//! becomes their pods (docs/design.md §7, §10), declared once with everything dbbind needs to
//! know of each. The workloads webhook, `dbbind render`, rotation, the messages and the chart's
//! rules (checked by a test) all read this table, so adding a kind is adding a variant here.

use std::fmt;

/// A kind that carries a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

/// What dbbind knows of one kind.
struct Facts {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    /// Where the pod is in the object, as a JSON pointer (RFC 6901: empty for the whole object).
    pod_pointer: &'static str,
    /// Whether its template is checked when the workload is applied (the workloads webhook).
    checked_at_apply: bool,
    /// Whether a new template annotation replaces its pods, so rotation can roll it.
    rollable: bool,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 7] = [
        WorkloadKind::Pod,
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
    ];

    fn facts(self) -> Facts {
        const TEMPLATE: &str = "/spec/template";
        let workload = |group, kind, plural, rollable| Facts {
            group,
            kind,
            plural,
            pod_pointer: TEMPLATE,
            checked_at_apply: true,
            rollable,
        };
        match self {
            WorkloadKind::Pod => Facts {
                group: "",
                kind: "Pod",
                plural: "pods",
                pod_pointer: "",
                checked_at_apply: false,
                rollable: false,
            },
            WorkloadKind::Deployment => workload("apps", "Deployment", "deployments", true),
            WorkloadKind::StatefulSet => workload("apps", "StatefulSet", "statefulsets", true),
            WorkloadKind::DaemonSet => workload("apps", "DaemonSet", "daemonsets", true),
            // A new template does not replace a ReplicaSet's pods; its Deployment's does.
            WorkloadKind::ReplicaSet => workload("apps", "ReplicaSet", "replicasets", false),
            // A Job's pods run to completion: there is nothing to roll.
            WorkloadKind::Job => workload("batch", "Job", "jobs", false),
            WorkloadKind::CronJob => Facts {
                pod_pointer: "/spec/jobTemplate/spec/template",
                ..workload("batch", "CronJob", "cronjobs", false)
            },
        }
    }

    /// The API group: empty for the core group.
    pub fn group(self) -> &'static str {
        self.facts().group
    }

    /// The kind, as in `kind:`.
    pub fn name(self) -> &'static str {
        self.facts().kind
    }

    /// The resource, as in webhook rules and RBAC.
    pub fn plural(self) -> &'static str {
        self.facts().plural
    }

    /// `v1` or `apps/v1`, …: every kind dbbind handles is served at `v1` of its group.
    pub fn api_version(self) -> String {
        match self.group() {
            "" => "v1".to_owned(),
            group => format!("{group}/v1"),
        }
    }

    /// Where the pod is in an object of this kind, as a JSON pointer: its template for a
    /// workload, the whole object (the empty pointer) for a Pod.
    pub fn pod_pointer(self) -> &'static str {
        self.facts().pod_pointer
    }

    pub fn checked_at_apply(self) -> bool {
        self.facts().checked_at_apply
    }

    pub fn rollable(self) -> bool {
        self.facts().rollable
    }

    /// The kind of `kind` in `group`.
    pub fn of(group: &str, kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL
            .into_iter()
            .find(|known| known.group() == group && known.name() == kind)
    }

    /// The kind named `kind`: the names are unique among these kinds.
    pub fn named(kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL
            .into_iter()
            .find(|known| known.name() == kind)
    }

    /// The kind of an object with this `apiVersion` and `kind` (a manifest, an owner reference).
    pub fn of_api_version(api_version: &str, kind: &str) -> Option<WorkloadKind> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        WorkloadKind::of(group, kind).filter(|known| known.api_version() == api_version)
    }

    /// `Pod, Deployment, …`, for messages and help.
    pub fn list(kinds: impl IntoIterator<Item = WorkloadKind>) -> String {
        kinds
            .into_iter()
            .map(WorkloadKind::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_group_and_by_api_version() {
        for kind in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::of(kind.group(), kind.name()), Some(kind));
            assert_eq!(
                WorkloadKind::of_api_version(&kind.api_version(), kind.name()),
                Some(kind)
            );
        }
        assert_eq!(WorkloadKind::of("", "Deployment"), None);
        assert_eq!(
            WorkloadKind::of_api_version("apps/v1beta2", "Deployment"),
            None
        );
        assert_eq!(WorkloadKind::of("apps", "Service"), None);
    }

    #[test]
    fn only_workloads_are_checked_and_only_what_a_template_change_replaces_is_rolled() {
        let checked: Vec<_> = WorkloadKind::ALL
            .into_iter()
            .filter(|kind| kind.checked_at_apply())
            .collect();
        assert!(!checked.contains(&WorkloadKind::Pod));
        assert_eq!(checked.len(), 6);
        let rolled = WorkloadKind::list(WorkloadKind::ALL.into_iter().filter(|k| k.rollable()));
        assert_eq!(rolled, "Deployment, StatefulSet, DaemonSet");
    }

    #[test]
    fn a_pod_is_its_own_template() {
        assert_eq!(WorkloadKind::Pod.pod_pointer(), "");
        assert_eq!(
            WorkloadKind::CronJob.pod_pointer(),
            "/spec/jobTemplate/spec/template"
        );
    }
}
