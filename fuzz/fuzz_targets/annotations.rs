//! Any text as a pod's annotations, one `key=value` per line (`\n` in a value written as `\\n`),
//! on a pod with two containers: parsed and decided as a Pod CREATE in namespace `shop`,
//! where every fixture Secret exists. Nothing may panic; a patch must apply and be complete.
#![no_main]

use std::collections::BTreeMap;

use dbbind_core::admission::mutate_pod;
use dbbind_fuzz::{check_patch, profiles, secrets};
use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|text: &str| {
    let annotations: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.replace("\\n", "\n")))
        .collect();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "shop", "generateName": "api-", "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "app", "image": "app", "env": [{"name": "PGHOST", "value": "old"}]},
                {"name": "worker", "image": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
            ],
            "initContainers": [{"name": "migrate", "image": "app"}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    });
    let decide = |object: &serde_json::Value| {
        let pod: Pod = serde_json::from_value(object.clone()).expect("the pod decodes");
        mutate_pod(&pod, "shop", secrets(), profiles())
    };
    let decision = decide(&object);
    check_patch(&object, &decision, decide);
});
