//! The HTTP API (axum 0.8): one router, a file per resource, one error type.
//!
//! | route | role | answers |
//! | --- | --- | --- |
//! | `POST /v1/grade` | ingest | 200 GradeReport (synchronous) |
//! | `POST /v1/submissions` | ingest | 202 `{"id","status"}` after the commit |
//! | `GET /v1/submissions/{id}` | ingest | 200 status, report when graded, error when dead |
//! | `GET /v1/submissions/{id}/callbacks` | ingest | 200 the callback delivery log |
//! | `POST /v1/submissions/{id}/human-grades` | grader | 201 the stored grade |
//! | `POST /v1/human-grades/import` | grader | 200 `{"imported"}` (CSV, all or nothing) |
//! | `GET /v1/calibration` | grader | 200 agreement per dimension |
//! | `POST /v1/calibration/refit` | grader | 200 the calibration maps fitted, with their effect |
//! | `GET /v1/prompts` | ingest | 200 the prompt registry |
//! | `POST /v1/webhooks/{tenant}/{source}` | signature | 202 `{"id"}`, 200 for a ping |
//! | `GET`/`PUT /v1/tenant/settings` | admin | 200 oversight settings (stop switch), audited |
//! | `POST /v1/submissions/{id}/decision` | grader | 201 a person's final decision, audited |
//! | `GET /v1/submissions/{id}/decisions` | grader | 200 the decisions people recorded |
//! | `GET /v1/submissions/{id}/explanation` | ingest | 200 plain-language explanation (JSON or `?format=text`), 409 before grading |
//! | `POST /v1/bias-audit` | admin | 200 LL144-style bias audit over stored scores |
//! | `GET /healthz`, `/readyz`, `/metrics`, `/openapi.json` | none | |
//! | `/ui/...` | session cookie (grader key) | the review UI, HTML ([`crate::web`], merged in) |
//!
//! Layers, outermost first: request metrics, JSON errors (rewrites bare 4xx/5xx from the
//! layers below into `{"error":{"code","message"}}`), the request timeout (408), the body
//! limit (413). This module is the only one that knows axum; SQL stays in `store`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::service::{App, Metrics};

pub mod auth;
pub mod bias;
pub mod calibration;
pub mod error;
pub mod extract;
pub mod grade;
pub mod health;
pub mod human_grades;
pub mod openapi;
pub mod oversight;
pub mod prompts;
pub mod ratelimit;
pub mod submissions;
pub mod webhooks;

pub use error::ApiError;

/// Router state: the app plus the HTTP layer's own caches.
pub struct Ctx {
    pub app: Arc<App>,
    /// API key hash → (key, tenant): hits only, `service.auth_cache_secs`.
    pub keys: auth::TtlCache<(crate::store::ApiKeyRecord, crate::store::Tenant)>,
    /// (tenant name, source) → (tenant, secret): hits only, same TTL.
    pub webhooks: auth::TtlCache<(crate::store::Tenant, String)>,
    /// Per-key and per-webhook token buckets (`service.rate_limit_*`; off by default).
    pub limits: ratelimit::RateLimits,
}

/// The whole API over `app`.
pub fn router(app: Arc<App>) -> Router {
    let svc = &app.config.service;
    let limit = svc.body_limit_bytes;
    let timeout = Duration::from_secs(svc.request_timeout_secs.max(1));
    let ttl = Duration::from_secs(svc.auth_cache_secs);
    let metrics = app.metrics.clone();
    let limits = ratelimit::RateLimits::from_config(svc);
    let ctx = Arc::new(Ctx {
        app,
        keys: auth::TtlCache::new(ttl),
        webhooks: auth::TtlCache::new(ttl),
        limits,
    });
    let ui = crate::web::router(ctx.app.clone());
    Router::new()
        .route("/v1/grade", post(grade::grade))
        .route("/v1/submissions", post(submissions::create))
        .route("/v1/submissions/{id}", get(submissions::show))
        .route(
            "/v1/submissions/{id}/callbacks",
            get(submissions::callbacks),
        )
        .route(
            "/v1/submissions/{id}/human-grades",
            post(human_grades::create),
        )
        .route("/v1/human-grades/import", post(human_grades::import))
        .route("/v1/calibration", get(calibration::calibration))
        .route("/v1/calibration/refit", post(calibration::refit))
        .route("/v1/prompts", get(prompts::list))
        .route("/v1/webhooks/{tenant}/{source}", post(webhooks::receive))
        .route(
            "/v1/tenant/settings",
            get(oversight::get_settings).put(oversight::put_settings),
        )
        .route(
            "/v1/submissions/{id}/decision",
            post(oversight::record_decision),
        )
        .route(
            "/v1/submissions/{id}/decisions",
            get(oversight::list_decisions),
        )
        .route(
            "/v1/submissions/{id}/explanation",
            get(oversight::explanation),
        )
        .route("/v1/bias-audit", post(bias::bias_audit_route))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            ratelimit::limit,
        ))
        .with_state(ctx)
        .merge(ui)
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(middleware::from_fn_with_state(
            limit,
            extract::reject_oversized,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(limit, error::json_errors))
        .layer(middleware::from_fn_with_state(metrics, track))
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting and drains
/// in-flight requests. Used by `grader serve`, the tests and the load harness.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> ApiError {
    ApiError::Status {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route".to_string(),
    }
}

/// Counts every request by method, route template and status, with its latency.
async fn track(State(metrics): State<Arc<Metrics>>, req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = route_template(req.uri().path());
    let resp = next.run(req).await;
    metrics.record_request(&method, route, resp.status().as_u16(), started.elapsed());
    resp
}

/// The route template of a path, for metric labels: ids must not become label values (one
/// time series per submission would grow without bound). Mirrors the table in [`router`].
pub fn route_template(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["v1", "grade"] => "/v1/grade",
        ["v1", "submissions"] => "/v1/submissions",
        ["v1", "submissions", _] => "/v1/submissions/{id}",
        ["v1", "submissions", _, "callbacks"] => "/v1/submissions/{id}/callbacks",
        ["v1", "submissions", _, "human-grades"] => "/v1/submissions/{id}/human-grades",
        ["v1", "human-grades", "import"] => "/v1/human-grades/import",
        ["v1", "calibration"] => "/v1/calibration",
        ["v1", "calibration", "refit"] => "/v1/calibration/refit",
        ["v1", "prompts"] => "/v1/prompts",
        ["v1", "webhooks", _, _] => "/v1/webhooks/{tenant}/{source}",
        ["v1", "tenant", "settings"] => "/v1/tenant/settings",
        ["v1", "submissions", _, "decision"] => "/v1/submissions/{id}/decision",
        ["v1", "submissions", _, "decisions"] => "/v1/submissions/{id}/decisions",
        ["v1", "submissions", _, "explanation"] => "/v1/submissions/{id}/explanation",
        ["v1", "bias-audit"] => "/v1/bias-audit",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        ["openapi.json"] => "/openapi.json",
        ["ui", ..] => "/ui",
        _ => "unmatched",
    }
}

#[cfg(test)]
mod tests {
    use super::route_template;

    #[test]
    fn paths_map_to_templates_without_ids() {
        assert_eq!(
            route_template("/v1/submissions/abc"),
            "/v1/submissions/{id}"
        );
        assert_eq!(
            route_template("/v1/submissions/abc/human-grades"),
            "/v1/submissions/{id}/human-grades"
        );
        assert_eq!(
            route_template("/v1/webhooks/acme/lever"),
            "/v1/webhooks/{tenant}/{source}"
        );
        assert_eq!(
            route_template("/v1/human-grades/import"),
            "/v1/human-grades/import"
        );
        assert_eq!(
            route_template("/v1/calibration/refit"),
            "/v1/calibration/refit"
        );
        assert_eq!(route_template("/nope/x"), "unmatched");
        assert_eq!(route_template("/healthz"), "/healthz");
    }
}
