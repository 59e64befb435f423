//! `POST /v1/grade`: synchronous grading. The same body as `POST /v1/submissions`; the answer
//! is the GradeReport itself.
//!
//! The grading is recorded in the audit log (`grading.completed`, `sync: true`: prompt
//! version, model, input and output hashes). The report is not stored as a submission: the
//! store has no write for an already-graded submission, and queueing it would grade it a
//! second time. Callers that need `GET /v1/submissions/{id}`, retries or callbacks use the
//! asynchronous route. The request timeout (`service.request_timeout_secs`) bounds the wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::JsonBody;
use super::submissions::{prepare, sha256_hex, SubmissionRequest};
use super::{ApiError, Ctx};
use crate::store::{AuditEntry, Role};

/// Grade a transcript now and answer the GradeReport.
#[utoipa::path(
    post,
    path = "/v1/grade",
    tag = "grading",
    request_body = SubmissionRequest,
    responses(
        (status = 200, description = "The GradeReport", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 408, description = "Grading took longer than the request timeout", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 502, description = "The model provider failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn grade(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Ingest)?;
    let req: SubmissionRequest = body.parse()?;
    let app = &ctx.app;
    let prepared = prepare(app, &caller.tenant.id, req)?;
    let started = Instant::now();
    app.metrics
        .gradings_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let result = app.judge.grade(&prepared.submission, prepared.prompt).await;
    app.metrics
        .gradings_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    let mut report = result?;
    crate::service::apply_tenant_policy(&mut report, &caller.tenant.settings);
    app.metrics.grading_latency.observe(started.elapsed());
    app.metrics.sync_gradings.fetch_add(1, Ordering::Relaxed);
    let report_json = serde_json::to_value(&report).map_err(|e| ApiError::Status {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("cannot serialize the report: {e}"),
    })?;
    app.store
        .audit(&AuditEntry {
            tenant_id: caller.tenant.id.clone(),
            actor: caller.actor(),
            action: "grading.completed".into(),
            subject: Some(report.id.clone()),
            detail: json!({
                "sync": true,
                "report_id": report.id,
                "prompt": prepared.prompt.key(),
                "prompt_sha256": report.prompt.sha256,
                "model": report.judge.model,
                "tier": report.judge.tier,
                "samples": report.judge.samples,
                "input_sha256": sha256_hex(&body.0),
                "output_sha256": sha256_hex(report_json.to_string().as_bytes()),
                "status": report.status,
                "recommendation": report.recommendation,
                "needs_review": report.needs_review,
            }),
            at: Utc::now(),
        })
        .await?;
    Ok(Json(report_json))
}
