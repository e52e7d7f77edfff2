//! The decision for one admission request: a pure function of the request, the Secrets known
//! in its namespace and the profiles in effect, made by the rules in `rules`. The server turns
//! it into an AdmissionResponse; `render` applies it to manifests.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, Operation};
use serde::Deserialize;

use crate::decision::Decision;
use crate::message::Denial;
use crate::profile::ProfileSet;
use crate::rules::{RotationRestarts, SecretProblems, decide};
use crate::secret::SecretLookup;

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
