//! The decision for one admission request: a pure function of the request, the Secrets known
//! in its namespace and the profiles in effect. No I/O happens here; the server and `render`
//! are plumbing around it.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, Status};
use serde::Deserialize;

use crate::binding::{PodRequest, parse_annotations, resolve};
use crate::decision::{AppliedBinding, Decision, Denial};
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
        return deny("dbbind: the admission request for a Pod CREATE carries no object".to_owned());
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
            return deny(format!(
                "dbbind: the pod in the admission request cannot be read: {error}"
            ));
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
        Err(error) => return deny(error.to_string()),
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

fn deny(message: String) -> Decision {
    Decision::Deny {
        denial: Denial::bad_request(message),
        warnings: Vec::new(),
    }
}

/// The AdmissionResponse for a decision: the patch only when there are operations, denials with
/// a status code and reason (without one the API server reports a vague 400 of its own).
pub fn response<T: kube::Resource>(
    request: &AdmissionRequest<T>,
    decision: Decision,
) -> Result<AdmissionResponse, kube::core::admission::SerializePatchError> {
    let mut response = AdmissionResponse::from(request);
    let warnings = match decision {
        Decision::Allow {
            patch, warnings, ..
        } => {
            if !patch.0.is_empty() {
                response = response.with_patch(patch)?;
            }
            warnings
        }
        Decision::Deny { denial, warnings } => {
            response.allowed = false;
            response.result =
                Status::failure(&denial.message, reason_for(denial.code)).with_code(denial.code);
            warnings
        }
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    Ok(response)
}

/// The Kubernetes `StatusReason` for a code dbbind uses.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        403 => "Forbidden",
        _ => "InternalError",
    }
}
