//! Any bytes as the body of `POST /mutate` and `POST /validate`: decoded as dbbind serve decodes
//! them, then decided as a Pod (mutate) and as a workload (validate). Nothing may panic; a
//! mutate patch must apply to its own pod and be complete (its reinvocation adds nothing).
#![no_main]

use dbbind_core::admission;
use dbbind_core::rules::RotationRestarts;
use dbbind_core::workload;
use dbbind_fuzz::{check_patch, profiles, secrets};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionReview};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(review) = serde_json::from_slice::<AdmissionReview<DynamicObject>>(body) else {
        return;
    };
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let Ok(request) = request else {
        return;
    };
    let decision = admission::review(&request, secrets(), profiles(), RotationRestarts::Off);
    let _ = workload::review(&request, secrets(), profiles(), RotationRestarts::Off);
    if let Some(object) = &request.object {
        let Ok(object) = serde_json::to_value(object) else {
            return;
        };
        check_patch(&object, &decision, |patched| {
            let mut again = request.clone();
            again.object =
                Some(serde_json::from_value(patched.clone()).expect("a patched pod decodes"));
            admission::review(&again, secrets(), profiles(), RotationRestarts::Off)
        });
    }
});
