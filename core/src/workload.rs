//! Workloads and their pod templates: where each kind keeps its template, and the Pod the API
//! server will be sent when a controller creates one from it. `render` uses this for manifests.

use serde_json::{Value, json};

/// The kinds that carry a pod template (and Pod itself), as `render` reads them.
pub const POD_CARRYING_KINDS: [&str; 7] = [
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

/// Where a kind keeps its pod template, as a JSON pointer; the empty pointer for a Pod itself.
pub fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
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
    fn every_pod_carrying_kind_has_a_template_pointer() {
        for kind in POD_CARRYING_KINDS {
            assert!(template_pointer(kind).is_some(), "{kind}");
        }
        assert_eq!(template_pointer("Service"), None);
        assert_eq!(
            template_pointer("CronJob"),
            Some("/spec/jobTemplate/spec/template")
        );
    }

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
