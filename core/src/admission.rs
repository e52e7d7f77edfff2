//! The decision for one admission request: a pure function of the request, the Secrets known
//! in its namespace and the profiles in effect. The server turns it into an AdmissionResponse;
//! `render` applies it to manifests.

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, Operation};
use serde::Deserialize;

use crate::binding::AppliedBinding;
use crate::binding::{PodRequest, parse_annotations, resolve};
use crate::decision::Decision;
use crate::keys::RESTART_ON_ROTATION;
use crate::message::{Cause, Denial, Warning};
use crate::patch::build_patch;
use crate::profile::ProfileSet;
use crate::secret::SecretLookup;

/// Whether the dbbind deciding restarts workloads when a Secret they read rotates
/// (`dbbind serve --restart-on-rotation`, docs/design.md §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationRestarts {
    On,
    /// A pod or template that opts in is warned that nothing will restart it.
    Off,
    /// Outside a server (`dbbind render`): nothing is said about it.
    Unknown,
}

/// Decides an AdmissionReview request. Anything but a Pod CREATE is admitted unchanged
/// (the webhook is registered for Pod CREATE only; this is the belt to those braces).
pub fn review(
    request: &AdmissionRequest<DynamicObject>,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
    restarts: RotationRestarts,
) -> Decision {
    let is_pod = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.sub_resource.is_none();
    if !is_pod || request.operation != Operation::Create {
        return Decision::unchanged();
    }
    let Some(object) = &request.object else {
        return Decision::deny(Denial::new(
            "the admission request for a Pod CREATE carries no object",
        ));
    };
    // The spec is read straight from the decoded JSON (borrowed, not re-serialized): this
    // conversion was half the cost of a decision (BENCHMARKS.md).
    let spec = match object
        .data
        .get("spec")
        .map(PodSpec::deserialize)
        .transpose()
    {
        Ok(spec) => spec,
        Err(error) => {
            return Decision::deny(Denial::new(format!(
                "the pod in the admission request cannot be read: {error}"
            )));
        }
    };
    // Of the metadata, the decision reads the annotations and the namespace only; copying the
    // rest (managedFields above all) cost a sixth of a decision.
    let pod = Pod {
        metadata: ObjectMeta {
            annotations: object.metadata.annotations.clone(),
            namespace: object.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    // Pods created by a controller have no name yet and may lack metadata.namespace; the
    // request's namespace is authoritative.
    let namespace = request
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    decide(
        &pod,
        namespace,
        secrets,
        profiles,
        SecretProblems::Deny,
        restarts,
    )
}

/// Decides what to do with a pod about to be created in `namespace`.
pub fn mutate_pod(
    pod: &Pod,
    namespace: &str,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
) -> Decision {
    decide(
        pod,
        namespace,
        secrets,
        profiles,
        SecretProblems::Deny,
        RotationRestarts::Unknown,
    )
}

/// What a problem that only the Secret's current state decides does to the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretProblems {
    /// Deny: the Pod is being created now, and would start without its database.
    Deny,
    /// Warn: a workload's template, whose Secret may be applied in the same batch after it.
    Warn,
}

/// The decision for a pod or a pod template. With [`SecretProblems::Warn`], a binding whose
/// Secret is not usable yet is reported and left out, and the rest is still checked.
pub fn decide(
    pod: &Pod,
    namespace: &str,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
    secret_problems: SecretProblems,
    restarts: RotationRestarts,
) -> Decision {
    let Some(annotations) = &pod.metadata.annotations else {
        return Decision::unchanged();
    };
    let requests = match parse_annotations(annotations, profiles) {
        Ok(PodRequest::Bind(requests)) => requests,
        Ok(PodRequest::NotRequested | PodRequest::OptedOut) => return Decision::unchanged(),
        Err(error) => return Decision::deny(error),
    };

    let mut warnings = Vec::new();
    if requests.restart_on_rotation
        && requests
            .bindings
            .iter()
            .all(|binding| binding.env.is_empty())
    {
        warnings.push(Warning::new(format!(
            "{RESTART_ON_ROTATION}: this pod binds by files only, which the kubelet updates in place when the Secret changes; no restart is needed and none will be made"
        )));
    }
    let mut resolved = Vec::with_capacity(requests.bindings.len());
    let warn_instead = |denial: &Denial| {
        secret_problems == SecretProblems::Warn && denial.cause() == Cause::SecretState
    };
    for request in &requests.bindings {
        match resolve(request, namespace, secrets, profiles, &mut warnings) {
            Ok(binding) => resolved.push(binding),
            Err(denial) if warn_instead(&denial) => warnings.push(denial.into()),
            Err(denial) => return Decision::Deny { denial, warnings },
        }
    }
    let patch = match build_patch(
        pod,
        &resolved,
        requests.containers.as_deref(),
        requests.on_conflict,
        &mut warnings,
    ) {
        Ok(patch) => patch,
        Err(denial) if warn_instead(&denial) => {
            warnings.push(denial.into());
            Patch(Vec::new())
        }
        Err(denial) => return Decision::Deny { denial, warnings },
    };
    if requests.restart_on_rotation && restarts == RotationRestarts::Off {
        warnings.push(Warning::new(format!(
            "{RESTART_ON_ROTATION}: this dbbind runs without --restart-on-rotation (chart value rotation.enabled), so nothing restarts this workload when its Secret changes"
        )));
    }
    let bindings = resolved.iter().map(AppliedBinding::from).collect();
    Decision::Allow {
        patch,
        warnings,
        bindings,
    }
}
