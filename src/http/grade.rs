//! `POST /v1/grade`: synchronous grading. The same body as `POST /v1/submissions`; the answer
//! is the GradeReport itself.
//!
//! The report is stored before it is answered (`Store::store_graded`): a `graded` submission
//! (source `api`, no job) whose id is the report's `id`, so `GET /v1/submissions/{report.id}`
//! shows it like any graded submission, and, in the same transaction, the `grading.completed`
//! audit entry (actor `sync:api`, `sync: true`: prompt version, model, input and output
//! hashes). Retries and callbacks remain the asynchronous route's. The request timeout
//! (`service.request_timeout_secs`) bounds the wait.
//!
//! **`Idempotency-Key`** (as Stripe's): the key is stored as the submission's delivery id
//! (source `api`), so a retry with the same key from the same tenant answers the stored
//! report of the first request without grading again (with `Idempotent-Replayed: true`).
//! The key is bound to the request: a reused key with a different body (compared by the
//! sha256 of the raw bytes, the `input_sha256` already stored for the audit log) is refused
//! with 422 `idempotency_key_reused`, as is a key already used by `POST /v1/submissions`.
//! Concurrent requests with one key wait for each other in this process (one grading);
//! across replicas both may grade, but `store_graded` keeps only the first and both answer
//! its report. A dry run stores nothing and ignores the key.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::JsonBody;
use super::submissions::{idempotency_key, prepare, sha256_hex, storable, SubmissionRequest};
use super::{ApiError, Ctx};
use crate::judge::pipeline::{GradeOptions, GradeOutcome};
use crate::store::{NewSubmission, Role, SubmissionRecord};

/// The source synchronous gradings are stored under (shared with `POST /v1/submissions`, so
/// one idempotency key names one request across both routes).
const SOURCE: &str = "api";

/// Grade a transcript now and answer the GradeReport.
#[utoipa::path(
    post,
    path = "/v1/grade",
    tag = "grading",
    request_body = SubmissionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key: a retry with the same key and body answers the first request's stored report without grading again; with a different body, 422 `idempotency_key_reused`")),
    responses(
        (status = 200, description = "The GradeReport; its `id` is also the stored submission's id. With `dry_run`: the prompt tokens and worst-case cost per tier, nothing stored. A replayed idempotent request has the header `Idempotent-Replayed: true`", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 408, description = "Grading took longer than the request timeout", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Wrong types, missing fields, unknown stage or prompt, transcript not gradable; `idempotency_key_reused`: the key was used with a different body", body = ErrorBody),
        (status = 502, description = "The model provider failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn grade(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Role::Ingest)?;
    let key = idempotency_key(&headers)?;
    let req: SubmissionRequest = body.parse()?;
    let opts = GradeOptions {
        bypass_cache: req.no_cache,
        dry_run: req.dry_run,
    };
    let app = &ctx.app;
    let input_sha256 = sha256_hex(&body.0);
    let key = key.filter(|_| !req.dry_run);
    // Held until the answer: a concurrent request with the same key waits here, then finds
    // the first one's report stored.
    let _in_flight = match &key {
        Some(k) => Some(lock_key(&caller.tenant.id, k).await),
        None => None,
    };
    if let Some(k) = &key {
        if let Some((record, stored_sha)) = app
            .store
            .submission_by_delivery(&caller.tenant.id, SOURCE, k)
            .await?
        {
            return replay(k, record, &stored_sha, &input_sha256);
        }
    }
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
        GradeOutcome::DryRun(estimate) => return Ok(Json(to_json(&estimate)?).into_response()),
    };
    // The tenant is read now, not taken from the auth cache: a stop switch flipped a moment
    // ago (`PUT /v1/tenant/settings`, on any replica) applies to this grading.
    let settings = match app.store.tenant(&caller.tenant.id).await? {
        Some(t) => t.settings,
        None => caller.tenant.settings.clone(),
    };
    crate::service::apply_tenant_policy(&mut report, &settings);
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
        // Graded with the candidate's name known (redaction needs it); stored without it
        // unless the tenant keeps originals.
        submission: storable(prepared.submission, &caller.tenant.settings)?,
        source: SOURCE.to_string(),
        delivery_id: key.clone(),
        prompt: prepared.pinned,
        input_sha256: input_sha256.clone(),
    };
    let stored = app.store.store_graded(new, &report).await?;
    if let (Some(k), true) = (&key, stored.id != report.id) {
        // Another replica stored a request with this key first: answer as a replay of it,
        // so every request with one key sees one report.
        let stored_sha = app
            .store
            .submission_by_delivery(&caller.tenant.id, SOURCE, k)
            .await?
            .map(|(_, sha)| sha)
            .unwrap_or_default();
        return replay(k, stored, &stored_sha, &input_sha256);
    }
    Ok(Json(to_json(&report)?).into_response())
}

/// The answer to a request whose idempotency key is already stored: the stored report when
/// the body is the same, else `idempotency_key_reused`.
fn replay(
    key: &str,
    record: SubmissionRecord,
    stored_sha: &str,
    input_sha256: &str,
) -> Result<Response, ApiError> {
    let reused = |why: String| {
        ApiError::unprocessable(
            "idempotency_key_reused",
            format!("Idempotency-Key {key:?} {why}; send a new key for a new request"),
        )
    };
    if stored_sha != input_sha256 {
        return Err(reused(format!(
            "was already used with a different request body (submission {})",
            record.id
        )));
    }
    let Some(report) = record.report else {
        return Err(reused(format!(
            "was already used by POST /v1/submissions (submission {})",
            record.id
        )));
    };
    let mut resp = Json(to_json(&report)?).into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(resp)
}

/// One async mutex per (tenant, key) among this process's requests in flight; entries die
/// with their last holder (the map keeps only weak references and is pruned on use).
type KeyLocks = std::sync::Mutex<HashMap<(String, String), Weak<tokio::sync::Mutex<()>>>>;
static IN_FLIGHT: LazyLock<KeyLocks> = LazyLock::new(Default::default);

async fn lock_key(tenant_id: &str, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        // A poisoned map is still consistent: every update is a single insert or retain.
        let mut map = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let k = (tenant_id.to_string(), key.to_string());
        match map.get(&k).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                map.insert(k, Arc::downgrade(&lock));
                lock
            }
        }
    };
    lock.lock_owned().await
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Status {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("cannot serialize the answer: {e}"),
    })
}
