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
//!
//! One key means one grading across replicas. Before grading, a request **claims** the key in
//! the store (`Store::claim_delivery`: a `grading` row without a job, atomic on the unique
//! (tenant, source, delivery id), with a lease of the request timeout plus
//! [`LEASE_MARGIN`]). A claim is
//! - *held* while its owner grades; a request with the same key and body waits, polling the
//!   store every [`POLL`], for it to become
//! - *graded*: the owner's `store_graded` replaced the claim with the graded row in one
//!   transaction; waiters replay that report;
//! - *released*: the owner's grading failed (provider, judge, timeout, the request cut off)
//!   and it deleted the claim; waiters claim the key again, and one of them grades;
//! - *expired*: the owner died; one waiter takes it over (`Store::take_over_claim`, an UPDATE
//!   guarded by the expired claim's token) and grades.
//!
//! A waiter gives up shortly before its own request timeout with 409
//! `idempotency_key_in_progress` and `Retry-After` (as the IETF Idempotency-Key draft and
//! Stripe do). A grading that owns a claim runs detached from the connection (bounded by the
//! request timeout), so a client that gives up and retries, on any replica, finds the first
//! grading finishing instead of cancelled. The store claim replaces the in-process lock this
//! route used to take: waiters in the same process poll like those on other replicas (at
//! most one [`POLL`] later), and every wait has the same bound and the same 409.
//! A dry run stores nothing and ignores the key; requests without a key do not claim.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tokio::time::Instant;

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::JsonBody;
use super::submissions::{idempotency_key, prepare, sha256_hex, storable, SubmissionRequest};
use super::{ApiError, Ctx};
use crate::domain::{GradeReport, Submission};
use crate::judge::pipeline::{GradeOptions, GradeOutcome};
use crate::prompts::PromptVersion;
use crate::service::App;
use crate::store::{
    ClaimOutcome, KeyClaim, KeyHolder, NewSubmission, Role, Store, SubmissionRecord, TenantSettings,
};

/// The source synchronous gradings are stored under (shared with `POST /v1/submissions`, so
/// one idempotency key names one request across both routes).
const SOURCE: &str = "api";

/// How often a request waiting for another's grading of its key reads the store.
pub const POLL: Duration = Duration::from_millis(150);

/// A claim's lease is the request timeout plus this: its owner's grading is cut off at the
/// timeout (and the claim released), so only a dead owner's claim ever expires.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Grade a transcript now and answer the GradeReport.
#[utoipa::path(
    post,
    path = "/v1/grade",
    tag = "grading",
    request_body = SubmissionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key: a retry with the same key and body answers the first request's stored report without grading again, on any replica; while the first is still grading, the retry waits for it; with a different body, 422 `idempotency_key_reused`")),
    responses(
        (status = 200, description = "The GradeReport; its `id` is also the stored submission's id. With `dry_run`: the prompt tokens and worst-case cost per tier, nothing stored. A replayed idempotent request has the header `Idempotent-Replayed: true`", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 408, description = "Grading took longer than the request timeout", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_progress`: another request with this Idempotency-Key is still grading and did not finish within this request's timeout; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds after which a retry may find the first request's report"))),
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
    let timeout = Duration::from_secs(ctx.app.config.service.request_timeout_secs.max(1));
    // What the router's timeout layer allows this request (it started a moment ago).
    let cut_off = Instant::now() + timeout;
    caller.require(Role::Ingest)?;
    let key = idempotency_key(&headers)?;
    let req: SubmissionRequest = body.parse()?;
    let opts = GradeOptions {
        bypass_cache: req.no_cache,
        dry_run: req.dry_run,
    };
    let app = &ctx.app;
    let tenant_id = caller.tenant.id.clone();
    let input_sha256 = sha256_hex(&body.0);
    let key = key.filter(|_| !req.dry_run);
    // A stored answer (or a refusal) needs no preparation.
    if let Some(k) = &key {
        if let Some(holder) = app.store.delivery_holder(&tenant_id, SOURCE, k).await? {
            if !is_waitable(&holder, &input_sha256) {
                return answer_holder(k, holder, &input_sha256);
            }
        }
    }
    let prepared = prepare(app, &tenant_id, req)?;
    if opts.dry_run {
        // Calls no model and produces no grading: nothing to claim, store or audit.
        return match app
            .judge
            .grade_with(&prepared.submission, prepared.prompt, &opts)
            .await?
        {
            GradeOutcome::DryRun(estimate) => Ok(Json(to_json(&estimate)?).into_response()),
            GradeOutcome::Report(_) => Err(internal("a dry run produced a report".into())),
        };
    }
    let new = NewSubmission {
        tenant_id: tenant_id.clone(),
        // Graded with the candidate's name known (redaction needs it); stored without it
        // unless the tenant keeps originals.
        submission: storable(prepared.submission.clone(), &caller.tenant.settings)?,
        source: SOURCE.to_string(),
        delivery_id: key.clone(),
        prompt: prepared.pinned.clone(),
        input_sha256: input_sha256.clone(),
    };
    let Some(k) = key else {
        // No key: graded in the request, as ever.
        let (report, _) = grade_and_store(
            app,
            &caller.tenant.settings,
            prepared.submission,
            prepared.prompt,
            new,
            &opts,
        )
        .await?;
        return Ok(Json(to_json(&report)?).into_response());
    };
    // Leave time to answer 409 before the timeout layer answers 408.
    let give_up = cut_off - (timeout / 4).min(Duration::from_secs(1));
    let claim = match claim_key(
        app.store.as_ref(),
        &new,
        &k,
        timeout + LEASE_MARGIN,
        give_up,
    )
    .await?
    {
        Waited::Owner(claim) => claim,
        Waited::Answer(resp) => return Ok(resp),
    };
    let guard = ClaimGuard {
        store: app.store.clone(),
        tenant_id: tenant_id.clone(),
        claim: Some(claim),
    };
    // Detached from the connection: a client that gives up (and retries elsewhere) does not
    // cancel the grading its retry is waiting for. Bounded like the request itself.
    let owned = ctx.app.clone();
    let settings = caller.tenant.settings.clone();
    let prompt_ref = prepared.prompt.prompt_ref();
    let submission = prepared.submission;
    let task = tokio::spawn(async move {
        let app = owned.as_ref();
        let run = async {
            let prompt = app
                .registry
                .get(&prompt_ref.id, &prompt_ref.version)
                .ok_or_else(|| internal(format!("prompt {} vanished", prompt_ref.id)))?;
            grade_and_store(app, &settings, submission, prompt, new, &opts).await
        };
        let result = match tokio::time::timeout_at(cut_off, run).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::RequestTimeout),
        };
        match &result {
            Ok(_) => guard.disarm(),
            // Give the key back so that a retry can grade.
            Err(_) => guard.release().await,
        }
        result
    });
    let (report, stored) = task
        .await
        .map_err(|e| internal(format!("the grading task failed: {e}")))??;
    if stored.id != report.id {
        // Another request with this key (whose claim had expired) stored its report first:
        // answer as a replay of it, so every request with one key sees one report.
        let stored_sha = app
            .store
            .delivery_holder(&tenant_id, SOURCE, &k)
            .await?
            .map(|holder| holder.input_sha256)
            .unwrap_or_default();
        return replay(&k, stored, &stored_sha, &input_sha256);
    }
    Ok(Json(to_json(&report)?).into_response())
}

/// Grades, applies the tenant's policy and calibration, and stores the report with its audit
/// entry (`store_graded`, which replaces this request's claim, if any). Returns the report
/// and the stored record (another report's when the key was stored first by someone else).
async fn grade_and_store(
    app: &App,
    auth_settings: &TenantSettings,
    submission: Submission,
    prompt: &PromptVersion,
    new: NewSubmission,
    opts: &GradeOptions,
) -> Result<(GradeReport, SubmissionRecord), ApiError> {
    let started = std::time::Instant::now();
    app.metrics
        .gradings_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let result = app.judge.grade_with(&submission, prompt, opts).await;
    app.metrics
        .gradings_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    let mut report = match result? {
        GradeOutcome::Report(report) => *report,
        // Only a dry run answers an estimate, and a dry run is answered before this.
        GradeOutcome::DryRun(_) => return Err(internal("a dry run reached storage".into())),
    };
    // The tenant is read now, not taken from the auth cache: a stop switch flipped a moment
    // ago (`PUT /v1/tenant/settings`, on any replica) applies to this grading.
    let settings = match app.store.tenant(&new.tenant_id).await? {
        Some(t) => t.settings,
        None => auth_settings.clone(),
    };
    crate::service::apply_tenant_policy(&mut report, &settings);
    // A calibration lookup that fails leaves the raw scores only; the grading stands.
    if let Err(e) =
        crate::service::calibrate_report(app.store.as_ref(), &new.tenant_id, &mut report).await
    {
        tracing::warn!(report = %report.id, "cannot calibrate the report: {e}");
    }
    app.metrics.grading_latency.observe(started.elapsed());
    app.metrics.sync_gradings.fetch_add(1, Ordering::Relaxed);
    // Stored before answering, as a graded submission whose id is the report's id, with
    // its `grading.completed` audit entry in the same transaction.
    let stored = app.store.store_graded(new, &report).await?;
    Ok((report, stored))
}

/// How a wait for a key ended.
enum Waited {
    /// This request owns the claim and grades.
    Owner(KeyClaim),
    /// The answer without grading: a replay, or a refusal (a different body, a key of
    /// `POST /v1/submissions`, a wait that ran out).
    Answer(Response),
}

/// Claims `key`, or waits for the request holding it (see the module doc): until it is
/// graded (replay), released (claim again), expired (take over), or `give_up` (409).
async fn claim_key(
    store: &dyn Store,
    new: &NewSubmission,
    key: &str,
    lease: Duration,
    give_up: Instant,
) -> Result<Waited, ApiError> {
    let sha = &new.input_sha256;
    let mut outcome = store.claim_delivery(new, lease).await?;
    loop {
        let holder = match outcome {
            ClaimOutcome::Claimed(claim) => return Ok(Waited::Owner(claim)),
            ClaimOutcome::Taken(holder) => *holder,
        };
        let claim = match &holder.claim {
            Some(claim) if is_waitable(&holder, sha) => claim.clone(),
            _ => return answer_holder(key, holder, sha).map(Waited::Answer),
        };
        if claim.expires_at <= chrono::Utc::now() {
            // Its owner died: one of the waiters takes over (the others look again).
            if let Some(mine) = store.take_over_claim(&new.tenant_id, &claim, lease).await? {
                tracing::warn!(key, submission = %claim.submission_id, "took over an expired idempotency claim");
                return Ok(Waited::Owner(mine));
            }
        } else {
            let now = Instant::now();
            if now >= give_up {
                return Ok(Waited::Answer(in_progress(key, &claim)));
            }
            tokio::time::sleep(POLL.min(give_up - now)).await;
        }
        outcome = match store.delivery_holder(&new.tenant_id, SOURCE, key).await? {
            Some(holder) => ClaimOutcome::Taken(Box::new(holder)),
            // Released: the key is free again.
            None => store.claim_delivery(new, lease).await?,
        };
    }
}

/// Whether a request with body `sha` should wait for `holder`: a claim in progress for the
/// same body. Anything else is answered at once ([`answer_holder`]).
fn is_waitable(holder: &KeyHolder, sha: &str) -> bool {
    holder.claim.is_some() && holder.input_sha256 == sha
}

fn answer_holder(key: &str, holder: KeyHolder, sha: &str) -> Result<Response, ApiError> {
    replay(key, holder.record, &holder.input_sha256, sha)
}

/// 409 `idempotency_key_in_progress` with `Retry-After`: when the claim's owner will have
/// finished or its claim expired, at least a second.
fn in_progress(key: &str, claim: &KeyClaim) -> Response {
    let left = (claim.expires_at - chrono::Utc::now()).num_seconds().max(0) + 1;
    ApiError::KeyInProgress {
        key: key.to_string(),
        retry_after_secs: u64::try_from(left).unwrap_or(1),
    }
    .into_response()
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

/// The claim of a grading in flight: given back when the grading fails, and when the task
/// holding it is dropped without deciding (a panic, the runtime shutting down).
struct ClaimGuard {
    store: Arc<dyn Store>,
    tenant_id: String,
    claim: Option<KeyClaim>,
}

impl ClaimGuard {
    /// The claim was replaced by the stored report: nothing to give back.
    fn disarm(mut self) {
        self.claim = None;
    }

    async fn release(mut self) {
        if let Some(claim) = self.claim.take() {
            release(self.store.as_ref(), &self.tenant_id, &claim).await;
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let tenant_id = std::mem::take(&mut self.tenant_id);
            rt.spawn(async move { release(store.as_ref(), &tenant_id, &claim).await });
        }
        // Without a runtime the claim expires on its own.
    }
}

async fn release(store: &dyn Store, tenant_id: &str, claim: &KeyClaim) {
    if let Err(e) = store.release_claim(tenant_id, claim).await {
        // It expires on its own; until then retries wait or answer 409.
        tracing::warn!(submission = %claim.submission_id, "cannot release an idempotency claim: {e}");
    }
}

fn internal(message: String) -> ApiError {
    ApiError::Status {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Status {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("cannot serialize the answer: {e}"),
    })
}
