//! Extractors whose rejections are [`ApiError`]s, so axum's own plain-text rejections never
//! reach a client, and the JSON body parser that tells a syntax error (400) from a shape
//! error (422).

use std::sync::Arc;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::{ApiError, Ctx};

/// The most of an oversized body read (and dropped) before answering 413, and for how long.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;
const MAX_DRAIN_TIME: Duration = Duration::from_secs(5);

/// Middleware: a request whose `Content-Length` exceeds the body limit is answered 413 at once,
/// without buffering it. The body is read and dropped first (up to 16 MiB or 5 s): a server
/// that answers and closes while the client is still sending makes the kernel reset the
/// connection, and the client then sees a broken connection instead of our 413. Bodies without
/// a length are cut by the body-limit layer as they stream.
pub async fn reject_oversized(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(len) = declared.filter(|&n| n > limit as u64) else {
        return next.run(req).await;
    };
    if len <= MAX_DRAIN_BYTES as u64 {
        drain(req.into_body()).await;
    }
    let mut resp = ApiError::PayloadTooLarge(limit).into_response();
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(MAX_DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > MAX_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Path parameters; a rejection is 400 `invalid_path`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| ApiError::bad_request("invalid_path", r.body_text()))
    }
}

/// Query parameters; a rejection is 400 `invalid_query` naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))
    }
}

/// The raw request body, any content type (webhooks must verify the exact bytes).
pub struct RawBody(pub Bytes);

impl FromRequest<Arc<Ctx>> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Arc<Ctx>) -> Result<Self, ApiError> {
        Bytes::from_request(req, ctx)
            .await
            .map(RawBody)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(ctx.app.config.service.body_limit_bytes)
                } else {
                    ApiError::bad_request("unreadable_body", r.body_text())
                }
            })
    }
}

/// A JSON request body, kept raw (its sha256 goes to the audit log). The Content-Type may be
/// absent or any `application/json` / `+json` type; anything else is 415.
pub struct JsonBody(pub Bytes);

impl FromRequest<Arc<Ctx>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Arc<Ctx>) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !(mime == "application/json" || mime.ends_with("+json")) {
                return Err(ApiError::UnsupportedMediaType(mime.to_string()));
            }
        }
        RawBody::from_request(req, ctx)
            .await
            .map(|RawBody(b)| JsonBody(b))
    }
}

impl JsonBody {
    /// See [`parse_json`].
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.0)
    }
}

/// Parses a JSON body: not UTF-8 → 400 `invalid_utf8`; empty or bad syntax → 400
/// `malformed_json` (serde's message, with line and column); valid JSON of the wrong shape
/// (missing field, wrong type, unknown field) → 422 `invalid_body`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::InvalidUtf8(e.valid_up_to()));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "the body is empty; send a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        stage: String,
    }

    #[test]
    fn syntax_is_400_shape_is_422_encoding_is_400() {
        let code = |b: &[u8]| parse_json::<Shape>(b).unwrap_err().code();
        assert_eq!(code(b"{\"stage\":"), "malformed_json");
        assert_eq!(code(b""), "malformed_json");
        assert_eq!(code(b"{\"stage\": 5}"), "invalid_body");
        assert_eq!(code(b"{}"), "invalid_body");
        assert_eq!(code(b"{\"stage\": \"\xff\"}"), "invalid_utf8");
        assert!(parse_json::<Shape>(b"{\"stage\":\"x\"}").is_ok());
    }
}
