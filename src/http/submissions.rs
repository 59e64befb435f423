//! `POST /v1/submissions` (durable 202), `GET /v1/submissions/{id}`,
//! `GET /v1/submissions/{id}/callbacks`, and the request body they share with
//! `POST /v1/grade`.
//!
//! The 202 is sent only after the store committed the submission and its job in one
//! transaction, so an accepted submission is never lost. `Idempotency-Key` makes a retry safe:
//! the same key (per tenant) answers the first submission's id and grades once. The key is
//! not compared with the body: a different body under a reused key gets the original
//! submission back, as with a webhook redelivery.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::{ApiPath, JsonBody};
use super::{ApiError, Ctx};
use crate::domain::{Candidate, Format, Stage, Submission};
use crate::ingest::{self, Limits};
use crate::prompts::PromptVersion;
use crate::service::App;
use crate::store::{AuditEntry, CallbackAttempt, NewSubmission, Role, SubmissionRecord};

/// What to grade. Send `transcript`, or `answer` (with `question`) for a written answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionRequest {
    /// portfolio_review, system_design, hands_on, deep_dive, production_readiness or
    /// written_answer.
    #[schema(example = "system_design")]
    pub stage: String,
    /// The transcript: text (speaker-labelled, WebVTT, SRT or plain) or a JSON list of turns
    /// `[{"speaker","text","start"?,"end"?}]`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub transcript: Option<serde_json::Value>,
    /// The question asked (written answers; optional context otherwise).
    #[serde(default)]
    pub question: Option<String>,
    /// A written answer, instead of `transcript`.
    #[serde(default)]
    pub answer: Option<String>,
    /// text, speaker, vtt, srt or json (default: detected).
    #[serde(default)]
    pub format: Option<String>,
    /// Judge prompt `id` or `id@version` (default: the stage's published version).
    #[serde(default)]
    #[schema(example = "system_design@v1")]
    pub prompt: Option<String>,
    #[serde(default)]
    pub candidate: Option<CandidateDto>,
    /// Your own id for this interview (ATS application or scorecard id).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Any JSON object, stored and returned as given.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// `POST /v1/grade` only: call no model; answer the prompt tokens and the worst-case cost
    /// per tier instead of a report. Nothing is stored.
    #[serde(default)]
    pub dry_run: bool,
    /// `POST /v1/grade` only: neither read nor write the response cache (every sample is a
    /// fresh model call; the report says `cache: bypass`).
    #[serde(default)]
    pub no_cache: bool,
}

impl SubmissionRequest {
    /// The synchronous-only options make no sense for queued work: refuse them rather than
    /// silently ignoring what the caller asked for.
    pub fn reject_sync_options(&self, route: &str) -> Result<(), ApiError> {
        for (set, field) in [(self.dry_run, "dry_run"), (self.no_cache, "no_cache")] {
            if set {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!("`{field}` applies to POST /v1/grade only, not {route}"),
                ));
            }
        }
        Ok(())
    }
}

/// Used only to redact the candidate's own name and email; never sent to a model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateDto {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// The 202 answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// `queued` for a new submission; the current status for a redelivery.
    #[schema(example = "queued")]
    pub status: String,
    /// True when an earlier request with the same idempotency key or delivery id was found.
    pub duplicate: bool,
}

impl Accepted {
    pub fn response(record: &SubmissionRecord, created: bool) -> Response {
        let body = Accepted {
            id: record.id.clone(),
            status: record.status.as_str().to_string(),
            duplicate: !created,
        };
        let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/submissions/{}", record.id)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }
}

/// A submission as `GET /v1/submissions/{id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmissionView {
    pub id: String,
    /// queued, grading, graded or dead.
    pub status: String,
    #[schema(value_type = String)]
    pub stage: Stage,
    /// api, greenhouse, lever, ashby or standard.
    pub source: String,
    pub delivery_id: Option<String>,
    pub external_id: Option<String>,
    /// The requested prompt version, if one was named.
    pub prompt: Option<String>,
    /// Grading attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed; for a dead submission, why it was given up.
    pub error: Option<String>,
    /// The GradeReport, once graded.
    #[schema(value_type = Option<Object>)]
    pub report: Option<crate::domain::GradeReport>,
    /// Always true: the report's recommendation is advice to a person (EU AI Act Art. 14),
    /// never a decision; decisions are recorded by people (`POST .../decision`).
    pub advisory: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<SubmissionRecord> for SubmissionView {
    fn from(r: SubmissionRecord) -> Self {
        SubmissionView {
            id: r.id,
            status: r.status.as_str().to_string(),
            stage: r.stage,
            source: r.source,
            delivery_id: r.delivery_id,
            external_id: r.submission.external_id,
            prompt: r.prompt,
            attempts: r.attempts,
            error: r.error,
            report: r.report,
            advisory: true,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One callback delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackView {
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
}

impl From<CallbackAttempt> for CallbackView {
    fn from(a: CallbackAttempt) -> Self {
        CallbackView {
            attempt: a.attempt,
            status: a.status,
            error: a.error,
            at: a.at,
        }
    }
}

/// A request turned into a gradable submission with its prompt. `pinned` is the prompt key
/// to store when the caller named one (else the worker takes the stage default at grading
/// time).
pub struct Prepared<'a> {
    pub submission: Submission,
    pub prompt: &'a PromptVersion,
    pub pinned: Option<String>,
}

/// Validates a request, cheapest checks first: stage, prompt, then the transcript.
pub fn prepare<'a>(
    app: &'a App,
    tenant_id: &str,
    req: SubmissionRequest,
) -> Result<Prepared<'a>, ApiError> {
    let stage: Stage = req
        .stage
        .parse()
        .map_err(|e: crate::domain::UnknownStage| ApiError::UnknownStage(e.to_string()))?;
    let requested = req
        .prompt
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let prompt = match requested {
        Some(r) => app
            .prompt_for(stage, Some(r))
            .map_err(ApiError::UnknownPrompt)?,
        None => app
            .prompt_for(stage, None)
            .map_err(|message| ApiError::Unavailable {
                code: "prompt_unavailable",
                message,
            })?,
    };
    let limits = Limits {
        max_chars: app.config.limits.max_chars,
        max_turns: app.config.limits.max_turns,
    };
    let format = req
        .format
        .as_deref()
        .map(ingest::format_from_name)
        .transpose()?;
    let question = req
        .question
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    let transcript = match (req.transcript, req.answer) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "conflicting_fields",
                "send either `transcript`, or `answer` with `question`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::unprocessable(
                "missing_transcript",
                "missing field `transcript` (or `answer` with `question` for a written answer)",
            ))
        }
        (None, Some(answer)) => ingest::written_answer(&answer, &limits)?,
        (Some(serde_json::Value::String(text)), None) => {
            if stage == Stage::WrittenAnswer && format.is_none() {
                ingest::written_answer(&text, &limits)?
            } else {
                ingest::parse(text.as_bytes(), format, &limits)?
            }
        }
        (Some(turns @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))), None) => {
            ingest::parse(
                turns.to_string().as_bytes(),
                Some(format.unwrap_or(Format::Json)),
                &limits,
            )?
        }
        (Some(_), None) => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "`transcript` must be a string (speaker-labelled text, WebVTT, SRT or plain) \
                 or a JSON list of turns",
            ))
        }
    };
    let metadata = match req.metadata {
        None | Some(serde_json::Value::Null) => serde_json::Value::Null,
        Some(m @ serde_json::Value::Object(_)) => m,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "`metadata` must be a JSON object",
            ))
        }
    };
    let external_id = req.external_id.filter(|s| !s.trim().is_empty());
    if external_id
        .as_ref()
        .is_some_and(|s| s.chars().count() > 256)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`external_id` is longer than 256 characters",
        ));
    }
    let candidate = req.candidate.map(|c| Candidate {
        name: c.name.filter(|s| !s.trim().is_empty()),
        email: c.email.filter(|s| !s.trim().is_empty()),
    });
    Ok(Prepared {
        submission: Submission {
            tenant: tenant_id.to_string(),
            stage,
            question,
            transcript,
            candidate,
            external_id,
            metadata,
        },
        prompt,
        pinned: requested.map(|_| prompt.key()),
    })
}

/// The form a submission is stored in: as given when the tenant allows originals
/// (`keep_original = true`), else redacted with the candidate's name and email dropped
/// (`guard::redact_for_storage`), so the store never holds PII the tenant did not allow.
pub fn storable(
    submission: Submission,
    settings: &crate::store::TenantSettings,
) -> Result<Submission, ApiError> {
    if settings.keep_original == Some(true) {
        return Ok(submission);
    }
    crate::guard::redact_for_storage(&submission).map_err(|e| ApiError::Status {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("cannot redact the submission: {e}"),
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `Idempotency-Key`: 1-255 visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

/// Queue a submission for grading.
#[utoipa::path(
    post,
    path = "/v1/submissions",
    tag = "submissions",
    request_body = SubmissionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key: the same key answers the same submission")),
    responses(
        (status = 202, description = "Stored with its job (after the commit)", body = Accepted),
        (status = 400, description = "Malformed JSON, invalid UTF-8 or idempotency key", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Wrong types, missing fields, unknown stage or prompt, transcript not gradable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Role::Ingest)?;
    let delivery_id = idempotency_key(&headers)?;
    let req: SubmissionRequest = body.parse()?;
    req.reject_sync_options("POST /v1/submissions")?;
    let app = &ctx.app;
    let prepared = prepare(app, &caller.tenant.id, req)?;
    let new = NewSubmission {
        tenant_id: caller.tenant.id.clone(),
        submission: storable(prepared.submission, &caller.tenant.settings)?,
        source: "api".to_string(),
        delivery_id,
        prompt: prepared.pinned,
        input_sha256: sha256_hex(&body.0),
    };
    let (record, created) = app.store.enqueue(new).await?;
    app.metrics.record_enqueued("api", created);
    Ok(Accepted::response(&record, created))
}

/// A submission's status, its report once graded, its error once dead.
#[utoipa::path(
    get,
    path = "/v1/submissions/{id}",
    tag = "submissions",
    params(("id" = String, Path, description = "Submission id")),
    responses(
        (status = 200, body = SubmissionView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such submission for this tenant", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SubmissionView>, ApiError> {
    caller.require(Role::Ingest)?;
    let app = &ctx.app;
    let record = app
        .store
        .submission(&caller.tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("submission {id}")))?;
    if let Some(report) = &record.report {
        // Every view of a report is logged (who saw which AI assessment, when).
        app.store
            .audit(&AuditEntry {
                tenant_id: caller.tenant.id.clone(),
                actor: caller.actor(),
                action: "report.viewed".into(),
                subject: Some(record.id.clone()),
                detail: serde_json::json!({"report_id": report.id, "via": "api"}),
                at: Utc::now(),
            })
            .await?;
    }
    Ok(Json(record.into()))
}

/// The callback delivery log of a submission (attempts in order).
#[utoipa::path(
    get,
    path = "/v1/submissions/{id}/callbacks",
    tag = "submissions",
    params(("id" = String, Path, description = "Submission id")),
    responses(
        (status = 200, body = Vec<CallbackView>),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn callbacks(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<CallbackView>>, ApiError> {
    caller.require(Role::Ingest)?;
    let store = &ctx.app.store;
    if store.submission(&caller.tenant.id, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("submission {id}")));
    }
    let log = store.callbacks(&caller.tenant.id, &id).await?;
    Ok(Json(log.into_iter().map(CallbackView::from).collect()))
}
