//! The wire side of a decision: the AdmissionResponse the API server reads.

use dbbind_core::decision::Decision;
use kube::core::Status;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, SerializePatchError};

/// Every denial is about the object the user sent: code 400, reason `BadRequest`. Without a
/// code the API server reports a vague 400 of its own.
const DENIAL_CODE: u16 = 400;
const DENIAL_REASON: &str = "BadRequest";

/// The AdmissionResponse for a decision: the patch only when there are operations, a denial
/// with its status code, reason and message, warnings for `kubectl` to print.
pub fn admission_response<T: kube::Resource>(
    request: &AdmissionRequest<T>,
    decision: Decision,
) -> Result<AdmissionResponse, SerializePatchError> {
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
                Status::failure(denial.message(), DENIAL_REASON).with_code(DENIAL_CODE);
            warnings
        }
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings.into_iter().map(String::from).collect());
    }
    Ok(response)
}
