//! The wire side of a decision: the AdmissionReview response the API server reads.
//!
//! Our own type rather than kube-core's `AdmissionResponse`, whose `patch: Vec<u8>` serializes
//! as a JSON array of numbers (one to four bytes of JSON per patch byte). The API defines
//! `patch` as bytes, which JSON carries as a base64 string: that is what this writes, about a
//! quarter of the array's size. Go's decoder reads either; the string is the documented form.

use base64::Engine as _;
use dbbind_core::decision::Decision;
use kube::core::Status;
use kube::core::admission::AdmissionRequest;
use serde::Serialize;

/// Every denial is about the object the user sent: code 400, reason `BadRequest`. Without a
/// code the API server reports a vague 400 of its own.
const DENIAL_CODE: u16 = 400;
const DENIAL_REASON: &str = "BadRequest";
/// The version of the AdmissionReview answered when the request names none.
const ADMISSION_V1: &str = "admission.k8s.io/v1";

/// An AdmissionReview carrying a response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    api_version: String,
    kind: &'static str,
    pub response: Response,
}

/// `AdmissionResponse` as the API defines it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    /// Only for a denial: its code, reason and message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The JSON patch, base64; only when it has operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// The response for a decision: the patch only when there are operations, a denial with its
/// status code, reason and message, warnings for `kubectl` to print. A patch that does not
/// encode is an error, never an allowed pod without its patch.
pub fn admission_response<T: kube::Resource>(
    request: &AdmissionRequest<T>,
    decision: Decision,
) -> Result<ReviewResponse, serde_json::Error> {
    let mut response = Response {
        uid: request.uid.clone(),
        allowed: true,
        status: None,
        patch: None,
        patch_type: None,
        warnings: None,
    };
    let warnings = match decision {
        Decision::Allow {
            patch, warnings, ..
        } => {
            if !patch.0.is_empty() {
                let json = serde_json::to_vec(&patch)?;
                response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
                response.patch_type = Some("JSONPatch");
            }
            warnings
        }
        Decision::Deny { denial, warnings } => {
            response.allowed = false;
            response.status =
                Some(Status::failure(denial.message(), DENIAL_REASON).with_code(DENIAL_CODE));
            warnings
        }
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings.into_iter().map(String::from).collect());
    }
    let api_version = if request.types.api_version.is_empty() {
        ADMISSION_V1.to_owned()
    } else {
        request.types.api_version.clone()
    };
    Ok(ReviewResponse {
        api_version,
        kind: "AdmissionReview",
        response,
    })
}
