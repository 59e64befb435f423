//! `POST /v1/grade`: synchronous grading. The same body as `POST /v1/submissions`; the answer
//! is the GradeReport itself.
//!
//! The report is stored before it is answered (`Store::store_graded`): a `graded` submission
//! (source `api`, no job) whose id is the report's `id`, so `GET /v1/submissions/{report.id}`
//! shows it like any graded submission, and, in the same transaction, the `grading.completed`
//! audit entry (actor `sync:api`, `sync: true`: prompt version, model, input and output
//! hashes). Retries and callbacks remain the asynchronous route's. The request timeout
//! (`service.request_timeout_secs`) bounds the wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::JsonBody;
use super::submissions::{prepare, sha256_hex, SubmissionRequest};
use super::{ApiError, Ctx};
use crate::judge::pipeline::{GradeOptions, GradeOutcome};
use crate::store::{NewSubmission, Role};

/// Grade a transcript now and answer the GradeReport.
#[utoipa::path(
    post,
    path = "/v1/grade",
    tag = "grading",
    request_body = SubmissionRequest,
    responses(
        (status = 200, description = "The GradeReport; its `id` is also the stored submission's id. With `dry_run`: the prompt tokens and worst-case cost per tier, nothing stored", body = Object),
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
    let opts = GradeOptions {
        bypass_cache: req.no_cache,
        dry_run: req.dry_run,
    };
    let app = &ctx.app;
    let prepared = prepare(app, &caller.tenant.id, req)?;
    let started = Instant::now();
    app.metrics
        .gradings_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let result = app
        .judge
        .grade_with(&prepared.submission, prepared.prompt, &opts)
        .await;
    app.metrics
        .gradings_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    let mut report = match result? {
        GradeOutcome::Report(report) => *report,
        // A dry run called no model and produced no grading: nothing to store or audit.
        GradeOutcome::DryRun(estimate) => return Ok(Json(to_json(&estimate)?)),
    };
    crate::service::apply_tenant_policy(&mut report, &caller.tenant.settings);
    // A calibration lookup that fails leaves the raw scores only; the grading stands.
    if let Err(e) =
        crate::service::calibrate_report(app.store.as_ref(), &caller.tenant.id, &mut report).await
    {
        tracing::warn!(report = %report.id, "cannot calibrate the report: {e}");
    }
    app.metrics.grading_latency.observe(started.elapsed());
    app.metrics.sync_gradings.fetch_add(1, Ordering::Relaxed);
    // Stored before answering, as a graded submission whose id is the report's id, with
    // its `grading.completed` audit entry in the same transaction.
    let new = NewSubmission {
        tenant_id: caller.tenant.id.clone(),
        submission: prepared.submission,
        source: "api".to_string(),
        delivery_id: None,
        prompt: prepared.pinned,
        input_sha256: sha256_hex(&body.0),
    };
    app.store.store_graded(new, &report).await?;
    Ok(Json(to_json(&report)?))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Status {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("cannot serialize the answer: {e}"),
    })
}
