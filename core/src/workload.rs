//! Workloads and their pod templates: where each kind keeps its template, the Pod a controller
//! will make of it, and the check of a template when its workload is applied
//! (docs/design.md §7). `render` uses the same template handling for manifests.

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, Operation};
use serde_json::{Value, json};

use crate::decision::Decision;
use crate::kind::WorkloadKind;
use crate::message::Denial;
use crate::profile::ProfileSet;
use crate::rules::{RotationRestarts, SecretProblems, decide};
use crate::secret::SecretLookup;

/// Checks the pod template of a workload being created or updated: the decision its Pods will
/// get, except that what depends on a Secret's current state is a warning (the Secret may come
/// in the same batch, after the workload). Never a patch: templates are not mutated, so what
/// GitOps applied stays what is stored. Anything else is admitted unchanged.
pub fn review(
    request: &AdmissionRequest<DynamicObject>,
    secrets: &dyn SecretLookup,
    profiles: &ProfileSet,
    restarts: RotationRestarts,
) -> Decision {
    let checked = WorkloadKind::of(&request.kind.group, &request.kind.kind)
        .filter(|kind| kind.checked_at_apply());
    let operation = matches!(request.operation, Operation::Create | Operation::Update);
    let Some(kind) = checked.filter(|_| operation && request.sub_resource.is_none()) else {
        return Decision::unchanged();
    };
    let Some(object) = &request.object else {
        return Decision::deny(Denial::new(format!(
            "the admission request for a {kind} carries no object"
        )));
    };
    let pointer = kind.pod_pointer();
    let Some(template) = object.data.pointer(pointer) else {
        return Decision::deny(Denial::new(format!(
            "the {kind} has no pod template at {pointer}"
        )));
    };
    let pod: Pod = match serde_json::from_value(pod_from_template(template)) {
        Ok(pod) => pod,
        // serde's message can quote a value of the template: say only that it failed.
        Err(_) => {
            return Decision::deny(Denial::new(format!(
                "the pod template of the {kind} cannot be read as a pod"
            )));
        }
    };
    let namespace = request
        .namespace
        .as_deref()
        .or(object.metadata.namespace.as_deref())
        .unwrap_or("default");
    match decide(
        &pod,
        namespace,
        secrets,
        profiles,
        SecretProblems::Warn,
        restarts,
    ) {
        Decision::Allow { warnings, .. } => Decision::Allow {
            patch: Patch(Vec::new()),
            warnings,
            bindings: Vec::new(),
        },
        denied => denied,
    }
}

/// The Pod a controller makes of `template` (metadata and spec; the rest is the controller's).
pub fn pod_from_template(template: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_becomes_a_pod_with_its_metadata_and_spec() {
        let pod = pod_from_template(&json!({
            "metadata": {"annotations": {"dbbind.io/secret": "s"}},
            "spec": {"containers": []},
        }));
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["metadata"]["annotations"]["dbbind.io/secret"], "s");
        assert_eq!(pod_from_template(&json!({}))["metadata"], json!({}));
    }
}
