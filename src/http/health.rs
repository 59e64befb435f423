//! Probes and metrics: `GET /healthz` (the process answers), `GET /readyz` (the database
//! answers and prompts are loaded: only then should a load balancer send work), and
//! `GET /metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, Ctx};

/// How long readiness waits for the database before calling it unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// Readiness: database reachable and judge prompts loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = Status),
        (status = 503, description = "Not ready; the message says why", body = ErrorBody),
    ))]
pub async fn readyz(State(ctx): State<Arc<Ctx>>) -> Result<Json<Status>, ApiError> {
    let not_ready = |message: String| ApiError::Unavailable {
        code: "not_ready",
        message,
    };
    match tokio::time::timeout(PING_TIMEOUT, ctx.app.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(not_ready(format!("database unreachable: {e}"))),
        Err(_) => {
            return Err(not_ready(format!(
                "database did not answer within {PING_TIMEOUT:?}"
            )))
        }
    }
    if ctx.app.registry.list().is_empty() {
        return Err(not_ready("no judge prompts are loaded".into()));
    }
    Ok(Json(Status {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text exposition format 0.0.4): the service's own (requests, queue,
/// gradings, callbacks), the store's queue depth counted now (`grader_queue_depth`, left
/// without a sample if the store does not answer within the ping timeout), then the judge's
/// (cache, provider calls, tokens, cost).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    let depth = match tokio::time::timeout(PING_TIMEOUT, ctx.app.store.queue_depth()).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "queue depth for /metrics");
            None
        }
        Err(_) => None,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.app.metrics.render()
            + &crate::service::metrics::render_queue_depth(depth)
            + &crate::metrics::render(),
    )
        .into_response()
}
