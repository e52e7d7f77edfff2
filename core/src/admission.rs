//! The decision for one admission request: a pure function of the request, the Secrets known
//! in its namespace and the profiles in effect. The server turns it into an AdmissionResponse;
//! `render` applies it to manifests.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, Operation};
use serde::Deserialize;

use crate::binding::AppliedBinding;
use crate::binding::{PodRequest, parse_annotations, resolve};
use crate::decision::Decision;
use crate::message::Denial;
use crate::patch::build_patch;
use crate::profile::ProfileSet;
use crate::secret::SecretLookup;

/// Decides an AdmissionReview request. Anything but a Pod CREATE is admitted unchanged
/// (the webhook is registered for Pod CREATE only; this is the belt to those braces).
pub fn review(
    request: &AdmissionRequest<DynamicObject>,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
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
    let pod = Pod {
        metadata: object.metadata.clone(),
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
    mutate_pod(&pod, namespace, secrets, profiles)
}

/// Decides what to do with a pod about to be created in `namespace`.
pub fn mutate_pod(
    pod: &Pod,
    namespace: &str,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
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
    let mut resolved = Vec::with_capacity(requests.bindings.len());
    for request in &requests.bindings {
        match resolve(request, namespace, secrets, profiles, &mut warnings) {
            Ok(binding) => resolved.push(binding),
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
        Err(denial) => return Decision::Deny { denial, warnings },
    };
    let bindings = resolved.iter().map(AppliedBinding::from).collect();
    Decision::Allow {
        patch,
        warnings,
        bindings,
    }
}
