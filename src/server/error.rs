//! Requests answered with an HTTP error instead of an AdmissionReview: no decision was made.
//! One type, so every such answer has its status code, its `dbbind:` message and its metric
//! outcome in one place.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dbbind_core::message::PREFIX;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("the body must be an AdmissionReview as application/json")]
    NotJson,
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body could not be read")]
    Unreadable,
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    BodyTimeout(std::time::Duration),
    /// Position only: serde's text can quote the body, and a pod spec may hold a value.
    #[error("the body is not an AdmissionReview ({category} error at line {line} column {column})")]
    NotAReview {
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error("the AdmissionReview carries no request")]
    NoRequest,
    /// dbbind's own fault: the decision was made but could not be written. The API server's
    /// failure policy applies, as for any webhook error.
    #[error("the admission response could not be encoded")]
    Encode,
    #[error("the request did not complete within its deadline")]
    Deadline,
    #[error("shutting down")]
    ShuttingDown,
    #[error("{0} takes POST")]
    Method(&'static str),
    #[error("not found; admission reviews go to POST /mutate (Pods) or POST /validate (workloads)")]
    NotFound,
}

impl RequestError {
    /// From a failed decode of the body, keeping only where it failed.
    pub fn not_a_review(error: &serde_json::Error) -> RequestError {
        let category = match error.classify() {
            serde_json::error::Category::Io => "Io",
            serde_json::error::Category::Syntax => "Syntax",
            serde_json::error::Category::Data => "Data",
            serde_json::error::Category::Eof => "Eof",
        };
        RequestError::NotAReview {
            category,
            line: error.line(),
            column: error.column(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::Unreadable
            | RequestError::NotAReview { .. }
            | RequestError::NoRequest => StatusCode::BAD_REQUEST,
            RequestError::Encode => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::Deadline | RequestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// A short plain-text answer: `dbbind: <message>`.
impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{PREFIX}{self}\n")).into_response();
        if let RequestError::Method(_) = self {
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        response
    }
}
