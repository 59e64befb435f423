//! The one place every error becomes an HTTP status and the JSON body
//! `{"error": {"code", "message"}}`.
//!
//! Handlers return `Result<_, ApiError>`; axum's own rejections (path, query, body) are
//! converted by the extractors in [`super::extract`]; and the responses that never pass
//! through a handler (tower-http's 413 body limit and 408 timeout, axum's 405) are rewritten
//! into the same shape by [`json_errors`]. So a client parses one error format everywhere.
//!
//! Codes are stable, lowercase, snake_case; messages are for people and name the problem
//! (the field, the dimension, the limit) so an integrator can fix the request.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ingest::ats::AtsError;
use crate::ingest::IngestError;
use crate::judge::pipeline::JudgeError;
use crate::store::{Role, StoreError};

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `unknown_stage`.
    #[schema(example = "unknown_stage")]
    pub code: String,
    /// What went wrong, in words that say how to fix it.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No, malformed, or unknown API key (401 `unauthorized`).
    #[error("{0}")]
    Unauthorized(String),
    /// The key's role is below what the route needs (403 `forbidden`).
    #[error("this route needs the {needed} role; the API key has {have}")]
    Forbidden {
        needed: &'static str,
        have: &'static str,
    },
    /// A resource that does not exist for this tenant (404 `not_found`); another tenant's id
    /// answers exactly the same.
    #[error("{0} not found")]
    NotFound(String),
    /// No webhook for this tenant and source: the tenant does not exist or has no secret for
    /// the source (404 `webhook_not_configured`; deliberately the same for both, so the
    /// endpoint does not reveal which tenant names exist).
    #[error("no webhook is configured for this tenant and source; set a secret with `grader admin webhook-secret set`")]
    WebhookNotConfigured,
    /// The body is not JSON (400 `malformed_json`), with serde's message and position.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is not UTF-8 (400 `invalid_utf8`).
    #[error("request body is not valid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    /// JSON of the wrong shape: missing field, wrong type, unknown field (422 `invalid_body`).
    #[error("{0}")]
    InvalidBody(String),
    /// 415 `unsupported_media_type`.
    #[error("Content-Type must be application/json, got {0:?}")]
    UnsupportedMediaType(String),
    /// Over `service.body_limit_bytes` (413 `payload_too_large`).
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 422 `unknown_stage`; the message lists the valid stages.
    #[error("{0}")]
    UnknownStage(String),
    /// 422 `unknown_prompt`.
    #[error("{0}")]
    UnknownPrompt(String),
    /// A transcript that cannot be graded: empty, binary, too long, malformed (422 with the
    /// ingest code; `not_utf8` is 400).
    #[error("{0}")]
    Ingest(#[from] IngestError),
    /// A webhook delivery refused by `ingest::ats` (status from its kind, code from it).
    #[error("{0}")]
    Webhook(#[from] AtsError),
    /// Any other semantic problem with a well-formed request (422): `code` names it
    /// (`unknown_dimension`, `score_out_of_range`, `missing_transcript`, ...).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// A malformed query string, path or header (400).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 409 `idempotency_key_in_progress` with `Retry-After`: another request with this
    /// Idempotency-Key is still grading (IETF Idempotency-Key draft, as Stripe).
    #[error("a request with Idempotency-Key {key:?} is still being graded; retry after {retry_after_secs} s to get its report")]
    KeyInProgress { key: String, retry_after_secs: u64 },
    /// 408 `request_timeout`: the work outlasted `service.request_timeout_secs` (the same
    /// answer the router's timeout layer gives).
    #[error("the request took longer than the server's timeout")]
    RequestTimeout,
    /// The synchronous grading failed (502 `grading_failed` for a provider failure).
    #[error("grading failed: {0}")]
    Judge(#[from] JudgeError),
    /// A database problem (500 `internal`); the detail is logged, not sent.
    #[error("storage error")]
    Store(#[from] StoreError),
    /// 503 `unavailable` (`not_ready` from /readyz).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// Route or method that does not exist, timeouts, and other bare statuses rewritten by
    /// [`json_errors`].
    #[error("{message}")]
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(needed: Role, have: Role) -> ApiError {
        ApiError::Forbidden {
            needed: needed.as_str(),
            have: have.as_str(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::WebhookNotConfigured => StatusCode::NOT_FOUND,
            ApiError::MalformedJson(_) | ApiError::InvalidUtf8(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownStage(_) | ApiError::UnknownPrompt(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Ingest(IngestError::NotUtf8 { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Ingest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Webhook(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) | ApiError::KeyInProgress { .. } => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Judge(JudgeError::InputTooLong(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Judge(JudgeError::Provider(_)) => StatusCode::BAD_GATEWAY,
            ApiError::Judge(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            ApiError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Status { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::WebhookNotConfigured => "webhook_not_configured",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidUtf8(_) => "invalid_utf8",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnknownStage(_) => "unknown_stage",
            ApiError::UnknownPrompt(_) => "unknown_prompt",
            ApiError::Ingest(e) => e.code(),
            ApiError::Webhook(e) => e.code(),
            ApiError::Unprocessable { code, .. } | ApiError::BadRequest { code, .. } => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::KeyInProgress { .. } => "idempotency_key_in_progress",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Judge(JudgeError::InputTooLong(_)) => "input_too_long",
            ApiError::Judge(JudgeError::Provider(_)) => "grading_failed",
            ApiError::Judge(_) => "grading_error",
            ApiError::Store(StoreError::Conflict(_)) => "conflict",
            ApiError::Store(StoreError::NotFound(_)) => "not_found",
            ApiError::Store(_) => "internal",
            ApiError::Unavailable { code, .. } => code,
            ApiError::Status { code, .. } => code,
        }
    }

    /// The message sent to the client: store failures are logged in full and answered
    /// generically, since a SQL error can reveal schema or data.
    fn public_message(&self) -> String {
        match self {
            ApiError::Store(StoreError::Conflict(what)) => format!("{what} already exists"),
            ApiError::Store(StoreError::NotFound(what)) => format!("{what} not found"),
            ApiError::Store(_) => "internal storage error; it has been logged".to_string(),
            other => other.to_string(),
        }
    }
}

/// The JSON error response for a status and code.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"grader\""),
        );
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), "{self:?}");
        }
        let mut resp = error_response(status, self.code(), &self.public_message());
        if let ApiError::KeyInProgress {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// Maps a bare error status (no JSON body) to a code and message.
fn bare_status(status: StatusCode, limit: usize) -> (&'static str, String) {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "the request took longer than the server's timeout".to_string(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method".to_string(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Content-Type must be application/json".to_string(),
        ),
        s if s.is_server_error() => ("internal", "internal server error".to_string()),
        _ => (
            "error",
            status.canonical_reason().unwrap_or("error").to_string(),
        ),
    }
}

/// Middleware: any 4xx/5xx response that is not JSON yet (tower-http's body-limit 413 and
/// timeout 408, axum's 405) becomes `{"error":{"code","message"}}`.
pub async fn json_errors(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // HTML error pages of the review UI (`web`) are already what a browser should see.
    let is_json_or_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if is_json_or_html {
        return resp;
    }
    let (code, message) = bare_status(status, limit);
    let mut out = error_response(status, code, &message);
    // Keep headers such as `Allow` on a 405.
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::Unauthorized("x".into()), 401, "unauthorized"),
            (
                ApiError::forbidden(Role::Grader, Role::Ingest),
                403,
                "forbidden",
            ),
            (ApiError::NotFound("submission".into()), 404, "not_found"),
            (ApiError::MalformedJson("eof".into()), 400, "malformed_json"),
            (ApiError::InvalidUtf8(3), 400, "invalid_utf8"),
            (
                ApiError::InvalidBody("missing field".into()),
                422,
                "invalid_body",
            ),
            (ApiError::PayloadTooLarge(10), 413, "payload_too_large"),
            (ApiError::Ingest(IngestError::Empty), 422, "empty_input"),
            (
                ApiError::Ingest(IngestError::NotUtf8 { offset: 1 }),
                400,
                "not_utf8",
            ),
            (
                ApiError::Store(StoreError::Database("secret sql".into())),
                500,
                "internal",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code, "{e:?}");
        }
        let msg = ApiError::Store(StoreError::Database("secret sql".into())).public_message();
        assert!(!msg.contains("secret"), "{msg}");
    }
}
