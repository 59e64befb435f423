//! Human oversight (EU AI Act Art. 14) and the right to an explanation (Art. 86):
//!
//! - `GET`/`PUT /v1/tenant/settings` (admin): the tenant's oversight settings, above all the
//!   stop switch `review_everything`, which sends every grading that *starts* after it is set
//!   to human review (workers read the tenant per job; `POST /v1/grade` reads it per request).
//!   Changes are audited (`tenant.settings_updated`); secrets are never echoed.
//! - `POST /v1/submissions/{id}/decision` (grader): a person records the final decision.
//!   `GET /v1/submissions/{id}/decisions` lists them.
//! - `GET /v1/submissions/{id}/explanation` (ingest): a plain-language account of how the
//!   AI's assessment was reached, for the candidate who asks.
//!
//! **A final decision is only ever recorded by a person.** The only code path that writes a
//! `decision.recorded` audit entry is [`record_decision`], an HTTP handler that requires a
//! named person (`decided_by`) and refuses names of machines ("ai", "system", ...). Grading,
//! the workers, callbacks and the recommendation computed in `judge::derive` never record a
//! decision; the report's `recommendation` stays advisory input to that person.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::{ApiPath, ApiQuery, JsonBody};
use super::{ApiError, Ctx};
use crate::domain::{FlagKind, GradeReport, Recommendation, ReportStatus, Stage};
use crate::store::{AuditEntry, Role, SubmissionRecord, TenantSettings};

/// The audit action of a person's decision.
pub const DECISION_ACTION: &str = "decision.recorded";
/// The audit action of a view of the explanation.
pub const EXPLANATION_ACTION: &str = "explanation.viewed";
/// The audit action of a settings change.
pub const SETTINGS_ACTION: &str = "tenant.settings_updated";

// ------------------------------------------------------------------ tenant settings

/// A partial update: only the fields present change. `callback_url: null` removes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// The stop switch: every grading goes to human review.
    #[serde(default)]
    pub review_everything: Option<bool>,
    /// Graders see AI scores only after submitting their own.
    #[serde(default)]
    pub blind_review: Option<bool>,
    /// Keep the original (unredacted) transcript in the store.
    #[serde(default)]
    pub keep_original: Option<bool>,
    /// Where finished reports are POSTed (http or https); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub callback_url: Option<Option<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The tenant's settings as the API shows them: no secret, only whether one is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    pub review_everything: bool,
    pub blind_review: bool,
    pub keep_original: bool,
    pub callback_url: Option<String>,
    /// Whether a callback signing secret is configured (the secret itself is never shown).
    pub callback_secret_set: bool,
}

impl From<&TenantSettings> for SettingsView {
    fn from(s: &TenantSettings) -> Self {
        SettingsView {
            review_everything: s.review_everything == Some(true),
            // Blind review is on unless switched off (see TenantSettings).
            blind_review: s.blind_review != Some(false),
            keep_original: s.keep_original == Some(true),
            callback_url: s.callback_url.clone(),
            callback_secret_set: s.callback_secret.as_deref().is_some_and(|v| !v.is_empty()),
        }
    }
}

async fn current_tenant(ctx: &Ctx, caller: &Caller) -> Result<crate::store::Tenant, ApiError> {
    ctx.app
        .store
        .tenant(&caller.tenant.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("tenant".into()))
}

/// The tenant's oversight settings.
#[utoipa::path(
    get,
    path = "/v1/tenant/settings",
    tag = "oversight",
    responses(
        (status = 200, body = SettingsView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_settings(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<SettingsView>, ApiError> {
    caller.require(Role::Admin)?;
    let tenant = current_tenant(&ctx, &caller).await?;
    Ok(Json(SettingsView::from(&tenant.settings)))
}

/// Change the tenant's oversight settings (partial update, audited). `review_everything`
/// applies to every grading that starts after the answer.
#[utoipa::path(
    put,
    path = "/v1/tenant/settings",
    tag = "oversight",
    request_body = SettingsUpdate,
    responses(
        (status = 200, description = "The settings now in force", body = SettingsView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 422, description = "Unknown field, wrong type, or an invalid callback URL", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_settings(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    body: JsonBody,
) -> Result<Json<SettingsView>, ApiError> {
    caller.require(Role::Admin)?;
    let update: SettingsUpdate = body.parse()?;
    if let Some(Some(url)) = &update.callback_url {
        validate_callback_url(url)?;
    }
    let tenant = current_tenant(&ctx, &caller).await?;
    let before = tenant.settings.clone();
    let mut after = before.clone();
    let mut changed = serde_json::Map::new();
    let mut set_bool = |name: &str, new: Option<bool>, slot: &mut Option<bool>| {
        if let Some(v) = new {
            if *slot != Some(v) {
                changed.insert(
                    name.to_string(),
                    serde_json::json!({"from": *slot, "to": v}),
                );
            }
            *slot = Some(v);
        }
    };
    set_bool(
        "review_everything",
        update.review_everything,
        &mut after.review_everything,
    );
    set_bool("blind_review", update.blind_review, &mut after.blind_review);
    set_bool(
        "keep_original",
        update.keep_original,
        &mut after.keep_original,
    );
    if let Some(url) = update.callback_url {
        let url = url.map(|u| u.trim().to_string());
        if after.callback_url != url {
            changed.insert(
                "callback_url".into(),
                serde_json::json!({"from": after.callback_url, "to": url}),
            );
        }
        after.callback_url = url;
    }
    if after != before {
        ctx.app
            .store
            .update_tenant_settings(&tenant.id, &after)
            .await?;
    }
    ctx.app
        .store
        .audit(&AuditEntry {
            tenant_id: tenant.id.clone(),
            actor: caller.actor(),
            action: SETTINGS_ACTION.into(),
            subject: Some(tenant.id.clone()),
            detail: serde_json::json!({ "changed": changed }),
            at: Utc::now(),
        })
        .await?;
    Ok(Json(SettingsView::from(&after)))
}

fn validate_callback_url(url: &str) -> Result<(), ApiError> {
    let url = url.trim();
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url.split_once("://").is_some_and(|(_, rest)| {
            !rest.is_empty() && !rest.starts_with('/') && !rest.chars().any(char::is_whitespace)
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_callback_url",
            "`callback_url` must be an http:// or https:// URL with a host, at most 2048 characters",
        ))
    }
}

// ------------------------------------------------------------------ decisions

/// The final decisions a person can record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Hire,
    NoHire,
    Advance,
    Reject,
    Hold,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Hire => "hire",
            Decision::NoHire => "no_hire",
            Decision::Advance => "advance",
            Decision::Reject => "reject",
            Decision::Hold => "hold",
        }
    }

    fn parse(s: &str) -> Option<Decision> {
        Some(match s.trim() {
            "hire" => Decision::Hire,
            "no_hire" => Decision::NoHire,
            "advance" => Decision::Advance,
            "reject" => Decision::Reject,
            "hold" => Decision::Hold,
            _ => return None,
        })
    }

    /// For a candidate: what the decision means, in words.
    fn plain(self) -> &'static str {
        match self {
            Decision::Hire => "hire",
            Decision::NoHire => "not to hire",
            Decision::Advance => "to move you to the next stage",
            Decision::Reject => "not to continue with your application",
            Decision::Hold => "to put your application on hold",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// hire, no_hire, advance, reject or hold.
    #[schema(example = "advance")]
    pub decision: String,
    /// The name of the person who made the decision (not a system, a key or "ai").
    #[schema(example = "Dana Smith")]
    pub decided_by: String,
    /// Why, in the person's words.
    pub reason: String,
}

/// A recorded decision, read back from the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub submission_id: String,
    /// hire, no_hire, advance, reject or hold.
    pub decision: String,
    pub decided_by: String,
    pub reason: String,
    /// The API key that recorded it (`key:<id>`).
    pub recorded_by: String,
    /// The AI's recommendation when the decision was recorded (advisory; `None` when the
    /// submission had no report yet), kept for the record.
    pub ai_recommendation: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
}

/// Names that identify a machine rather than a person; refused as `decided_by`.
const NOT_A_PERSON: &[&str] = &[
    "ai",
    "a.i.",
    "grader",
    "system",
    "auto",
    "automatic",
    "automated",
    "autodecision",
    "bot",
    "model",
    "llm",
    "machine",
    "algorithm",
    "judge",
    "worker",
    "admin-cli",
    "api",
    "unknown",
    "none",
    "null",
    "n/a",
];

/// `decided_by` must name a person: 2 to 200 characters with at least one letter, and not a
/// machine's name or one of our own actor ids (`key:...`, `worker:...`, `sync:...`).
pub fn validate_person(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let bad = |why: &str| {
        ApiError::unprocessable(
            "invalid_decided_by",
            format!("`decided_by` must be the name of the person who decided: {why}"),
        )
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.chars().count() > 200 {
        return Err(bad("it is longer than 200 characters"));
    }
    if !name.chars().any(char::is_alphabetic) || name.chars().count() < 2 {
        return Err(bad("it is not a name"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    let lower = name.to_lowercase();
    let squashed: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
    let machine = NOT_A_PERSON
        .iter()
        .any(|m| lower == *m || squashed == m.replace(|c: char| !c.is_alphanumeric(), ""))
        || ["key:", "worker:", "sync:", "person:"]
            .iter()
            .any(|p| lower.starts_with(p));
    if machine {
        return Err(bad(&format!(
            "{name:?} names a system, not a person; a final decision is only ever recorded by a person"
        )));
    }
    Ok(name.to_string())
}

async fn submission_of(ctx: &Ctx, caller: &Caller, id: &str) -> Result<SubmissionRecord, ApiError> {
    ctx.app
        .store
        .submission(&caller.tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("submission {id}")))
}

fn decision_view(e: &AuditEntry) -> Option<DecisionView> {
    let d = &e.detail;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Some(DecisionView {
        submission_id: e.subject.clone()?,
        decision: s("decision")?,
        decided_by: s("decided_by")?,
        reason: s("reason").unwrap_or_default(),
        recorded_by: s("recorded_by").unwrap_or_else(|| e.actor.clone()),
        ai_recommendation: s("ai_recommendation"),
        at: e.at,
    })
}

/// Record a person's final decision about a submission (audited as `decision.recorded`).
#[utoipa::path(
    post,
    path = "/v1/submissions/{id}/decision",
    tag = "oversight",
    request_body = DecisionRequest,
    params(("id" = String, Path, description = "Submission id")),
    responses(
        (status = 201, description = "Recorded in the audit log", body = DecisionView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs the grader role", body = ErrorBody),
        (status = 404, description = "No such submission for this tenant", body = ErrorBody),
        (status = 422, description = "Unknown decision, missing reason, or `decided_by` is not a person's name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn record_decision(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<DecisionView>), ApiError> {
    caller.require(Role::Grader)?;
    let req: DecisionRequest = body.parse()?;
    let decision = Decision::parse(&req.decision).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_decision",
            format!(
                "unknown decision {:?}: use hire, no_hire, advance, reject or hold",
                req.decision
            ),
        )
    })?;
    let person = validate_person(&req.decided_by)?;
    let reason = req.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 4000 {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            "`reason` must say why, in 1 to 4000 characters",
        ));
    }
    let record = submission_of(&ctx, &caller, &id).await?;
    let report = record.report.as_ref();
    let entry = AuditEntry {
        tenant_id: caller.tenant.id.clone(),
        // The key that sent it and the person who decided.
        actor: format!("{}/person:{person}", caller.actor()),
        action: DECISION_ACTION.into(),
        subject: Some(record.id.clone()),
        detail: serde_json::json!({
            "decision": decision.as_str(),
            "decided_by": person,
            "reason": reason,
            "recorded_by": caller.actor(),
            "ai_recommendation": report.map(|r| recommendation_str(r.recommendation)),
            "ai_needs_review": report.map(|r| r.needs_review),
            "report_id": report.map(|r| r.id.clone()),
            "prompt": report.map(|r| format!("{}@{}", r.prompt.id, r.prompt.version)),
            "model": report.map(|r| r.judge.model.clone()),
        }),
        at: Utc::now(),
    };
    ctx.app.store.audit(&entry).await?;
    let view = decision_view(&entry).ok_or_else(|| ApiError::Status {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: "cannot read back the decision".into(),
    })?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The decisions people recorded about a submission, oldest first.
#[utoipa::path(
    get,
    path = "/v1/submissions/{id}/decisions",
    tag = "oversight",
    params(("id" = String, Path, description = "Submission id")),
    responses(
        (status = 200, body = Vec<DecisionView>),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs the grader role", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_decisions(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<DecisionView>>, ApiError> {
    caller.require(Role::Grader)?;
    let record = submission_of(&ctx, &caller, &id).await?;
    Ok(Json(decisions(&ctx, &caller.tenant.id, &record.id).await?))
}

async fn decisions(ctx: &Ctx, tenant_id: &str, id: &str) -> Result<Vec<DecisionView>, ApiError> {
    let entries = ctx
        .app
        .store
        .audit_entries(tenant_id, id, DECISION_ACTION)
        .await?;
    Ok(entries.iter().filter_map(decision_view).collect())
}

// ------------------------------------------------------------------ explanation

fn recommendation_str(r: Recommendation) -> &'static str {
    match r {
        Recommendation::StrongHire => "strong_hire",
        Recommendation::Hire => "hire",
        Recommendation::LeanNoHire => "lean_no_hire",
        Recommendation::NoHire => "no_hire",
        Recommendation::InsufficientEvidence => "insufficient_evidence",
    }
}

fn recommendation_plain(r: Recommendation) -> &'static str {
    match r {
        Recommendation::StrongHire => "a strong match for the role",
        Recommendation::Hire => "a match for the role",
        Recommendation::LeanNoHire => "probably not a match for the role",
        Recommendation::NoHire => "not a match for the role",
        Recommendation::InsufficientEvidence => {
            "not enough to go on, so a person has to assess the interview"
        }
    }
}

fn stage_plain(s: Stage) -> &'static str {
    match s {
        Stage::PortfolioReview => "portfolio review",
        Stage::SystemDesign => "system design interview",
        Stage::HandsOn => "hands-on interview (retrieval and prompt engineering)",
        Stage::DeepDive => "deep-dive interview (fine-tuning and evaluation)",
        Stage::ProductionReadiness => "production-readiness interview (safety)",
        Stage::WrittenAnswer => "written answer",
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PromptIdentity {
    pub id: String,
    pub version: String,
    pub sha256: String,
}

/// One scored topic, with what the rubric says about the level it got.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainedScore {
    pub dimension: String,
    /// The rubric's name for it.
    pub name: String,
    /// `None` when the dimension could not be scored.
    pub score: Option<f64>,
    /// The score after the tenant's calibration map, when one applied.
    pub calibrated: Option<f64>,
    pub scale: ScaleView,
    /// The rubric's description of the level scored (for a score between two levels, the
    /// lower one; `anchor_next` is the higher one).
    pub anchor: Option<String>,
    pub anchor_next: Option<String>,
    /// The candidate's own words the judge quoted for this score (all found in the transcript).
    pub evidence: Vec<String>,
    /// The judge's rationale (AI-generated).
    pub rationale: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScaleView {
    pub min: u8,
    pub max: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainedFlag {
    pub id: String,
    /// red (a concern) or green (a strength).
    pub kind: String,
    pub label: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CalibrationStatus {
    /// calibrated (at least one score went through a calibration map) or uncalibrated.
    pub status: String,
    /// Per calibrated dimension, how many human-graded pairs its current map rests on.
    pub pairs: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HumanReview {
    pub needs_review: bool,
    pub reasons: Vec<String>,
    /// Human grades recorded for this submission.
    pub human_grades: usize,
}

/// The AI's recommendation, labelled as what it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryRecommendation {
    pub value: String,
    /// Always true: a recommendation is input for a person, never a decision.
    pub advisory: bool,
}

/// The explanation of one graded submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub submission_id: String,
    /// Plain-language paragraphs for the candidate.
    pub summary: String,
    /// Always true.
    pub ai_generated: bool,
    /// Always true.
    pub advisory: bool,
    /// The report's own notice.
    pub notice: String,
    pub prompt: PromptIdentity,
    pub model: String,
    pub tier: String,
    pub samples: u32,
    /// scored or unscored.
    pub status: String,
    pub recommendation: AdvisoryRecommendation,
    pub scores: Vec<ExplainedScore>,
    pub flags: Vec<ExplainedFlag>,
    pub calibration: CalibrationStatus,
    pub human_review: HumanReview,
    /// The latest decision a person recorded, if any.
    pub decision: Option<DecisionView>,
    pub how_to_contest: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExplanationQuery {
    /// `json` (default) or `text` (text/plain).
    pub format: Option<String>,
}

/// What a candidate can do, in every explanation.
pub fn how_to_contest(submission_id: &str) -> String {
    format!(
        "You can ask for a person to look at your interview again, and you can contest this \
         assessment or any decision based on it, by contacting the company you applied to and \
         quoting the reference {submission_id}. You can also ask them for a copy of this \
         explanation. Your request goes to a person, not to the automated system."
    )
}

/// A plain-language account of how the AI's assessment was reached (Art. 86).
#[utoipa::path(
    get,
    path = "/v1/submissions/{id}/explanation",
    tag = "oversight",
    params(("id" = String, Path, description = "Submission id"), ExplanationQuery),
    responses(
        (status = 200, description = "JSON, or text/plain with ?format=text", body = Explanation),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such submission for this tenant", body = ErrorBody),
        (status = 409, description = "Not graded yet (`not_graded`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn explanation(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExplanationQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Ingest)?;
    let text = match q.format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown format {other:?}: use json or text"),
            ))
        }
    };
    let record = submission_of(&ctx, &caller, &id).await?;
    let Some(report) = record.report.as_ref() else {
        return Err(ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "not_graded",
            message: format!(
                "submission {id} is {}; an explanation exists once it is graded",
                record.status.as_str()
            ),
        });
    };
    let store = &ctx.app.store;
    let human_grades = store
        .human_grades(&caller.tenant.id, &record.id)
        .await?
        .len();
    let maps = store
        .calibration_maps(
            &caller.tenant.id,
            report.stage,
            &format!("{}@{}", report.prompt.id, report.prompt.version),
        )
        .await?;
    let latest = decisions(&ctx, &caller.tenant.id, &record.id).await?.pop();
    let exp = explain(&ctx, &record.id, report, human_grades, &maps, latest);
    store
        .audit(&AuditEntry {
            tenant_id: caller.tenant.id.clone(),
            actor: caller.actor(),
            action: EXPLANATION_ACTION.into(),
            subject: Some(record.id.clone()),
            detail: serde_json::json!({
                "report_id": report.id,
                "format": if text { "text" } else { "json" },
            }),
            at: Utc::now(),
        })
        .await?;
    if text {
        let body = format!("{}\n\n{}\n", exp.summary, exp.how_to_contest);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    Ok(Json(exp).into_response())
}

/// Builds the explanation from stored data only, so it is the same every time it is asked
/// for (until a person adds a grade or a decision).
fn explain(
    ctx: &Ctx,
    submission_id: &str,
    r: &GradeReport,
    human_grades: usize,
    maps: &[crate::store::CalibrationMapRecord],
    decision: Option<DecisionView>,
) -> Explanation {
    let prompt = ctx.app.registry.get(&r.prompt.id, &r.prompt.version);
    let dims = prompt.map(|p| p.file.dimensions.as_slice()).unwrap_or(&[]);
    let scores: Vec<ExplainedScore> = r
        .scores
        .iter()
        .map(|d| {
            let def = dims.iter().find(|x| x.id == d.dimension);
            let (anchor, anchor_next) = match (def, d.score) {
                (Some(def), Some(s)) => {
                    let lo = s.floor().clamp(0.0, 255.0) as u8;
                    let hi = s.ceil().clamp(0.0, 255.0) as u8;
                    let next = (hi != lo)
                        .then(|| def.anchor(hi).map(str::to_string))
                        .flatten();
                    (def.anchor(lo).map(str::to_string), next)
                }
                _ => (None, None),
            };
            ExplainedScore {
                dimension: d.dimension.clone(),
                name: def.map_or_else(|| d.dimension.clone(), |x| x.name.clone()),
                score: d.score,
                calibrated: d.calibrated,
                scale: ScaleView {
                    min: d.scale.min,
                    max: d.scale.max,
                },
                anchor,
                anchor_next,
                evidence: d.evidence.iter().map(|e| e.quote.clone()).collect(),
                rationale: d.rationale.clone(),
            }
        })
        .collect();
    let flags: Vec<ExplainedFlag> = r
        .flags
        .iter()
        .map(|f| ExplainedFlag {
            id: f.id.clone(),
            kind: match f.kind {
                FlagKind::Red => "red",
                FlagKind::Green => "green",
            }
            .to_string(),
            label: f.label.clone(),
            evidence: f.evidence.iter().map(|e| e.quote.clone()).collect(),
        })
        .collect();
    let mut pairs = std::collections::BTreeMap::new();
    for d in r.scores.iter().filter(|d| d.calibrated.is_some()) {
        if let Some(m) = maps.iter().find(|m| m.dimension == d.dimension) {
            pairs.insert(d.dimension.clone(), m.n_pairs);
        }
    }
    let calibrated = r.scores.iter().any(|d| d.calibrated.is_some());
    let calibration = CalibrationStatus {
        status: if calibrated {
            "calibrated"
        } else {
            "uncalibrated"
        }
        .to_string(),
        pairs,
    };
    let human_review = HumanReview {
        needs_review: r.needs_review,
        reasons: r.review_reasons.clone(),
        human_grades,
    };
    let summary = summary(
        r,
        &scores,
        &flags,
        &calibration,
        &human_review,
        decision.as_ref(),
    );
    Explanation {
        submission_id: submission_id.to_string(),
        summary,
        ai_generated: true,
        advisory: true,
        notice: r.notice.clone(),
        prompt: PromptIdentity {
            id: r.prompt.id.clone(),
            version: r.prompt.version.clone(),
            sha256: r.prompt.sha256.clone(),
        },
        model: r.judge.model.clone(),
        tier: r.judge.tier.clone(),
        samples: r.judge.samples,
        status: match r.status {
            ReportStatus::Scored => "scored",
            ReportStatus::Unscored => "unscored",
        }
        .to_string(),
        recommendation: AdvisoryRecommendation {
            value: recommendation_str(r.recommendation).to_string(),
            advisory: true,
        },
        scores,
        flags,
        calibration,
        human_review,
        decision,
        how_to_contest: how_to_contest(submission_id),
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|q| format!("\u{201c}{}\u{201d}", q.trim()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The plain-language paragraphs: who produced the assessment and how, each topic with its
/// level and the candidate's quoted words, observations, whether it was checked against
/// people's grades, review and decision status. No jargon, no figures a candidate cannot read.
fn summary(
    r: &GradeReport,
    scores: &[ExplainedScore],
    flags: &[ExplainedFlag],
    cal: &CalibrationStatus,
    review: &HumanReview,
    decision: Option<&DecisionView>,
) -> String {
    let mut o = String::new();
    let date = r.created_at.get(..10).unwrap_or(&r.created_at);
    let who = if r.judge.model == "offline" {
        "an automated pattern-matching program that looks for the phrases listed in the \
         scoring guidelines (no language model was used)"
            .to_string()
    } else {
        format!(
            "an AI system (the language model \u{201c}{}\u{201d})",
            r.judge.model
        )
    };
    let _ = write!(
        o,
        "This is an automated, AI-generated assessment of your {} ({date}). It was produced by \
         {who}, following written scoring guidelines ({} version {}). It is advisory only: it \
         decides nothing on its own. A person at the company reviews it and makes every \
         hiring decision.",
        stage_plain(r.stage),
        r.prompt.id,
        r.prompt.version,
    );
    o.push_str("\n\n");
    let scored = scores.iter().filter(|s| s.score.is_some()).count();
    let _ = write!(
        o,
        "How it was reached: the system read the transcript and rated {} topic{} on fixed \
         scales, where every level is described in advance in the guidelines.",
        scores.len(),
        if scores.len() == 1 { "" } else { "s" }
    );
    if r.judge.samples > 1 {
        let _ = write!(
            o,
            " It rated the transcript {} times independently and kept the middle rating of \
             each topic.",
            r.judge.samples
        );
    }
    o.push_str(
        " For every rating it had to quote your own words as evidence, and each quote was \
         checked against the transcript",
    );
    if r.dropped_quotes > 0 {
        let _ = write!(
            o,
            "; {} quote{} that could not be found there {} discarded",
            r.dropped_quotes,
            if r.dropped_quotes == 1 { "" } else { "s" },
            if r.dropped_quotes == 1 { "was" } else { "were" }
        );
    }
    o.push('.');
    if r.status == ReportStatus::Unscored || scored == 0 {
        o.push_str(
            " The system could not produce a valid rating this time, so no rating counts \
             against you: a person will assess the interview instead.",
        );
    }
    o.push_str("\n\n");
    if !scores.is_empty() {
        o.push_str("The topics and the ratings:");
        for s in scores {
            o.push_str("\n- ");
            match s.score {
                None => {
                    let _ = write!(o, "{}: not rated (the system could not rate it).", s.name);
                }
                Some(v) => {
                    let _ = write!(
                        o,
                        "{}: {} on a scale from {} to {}.",
                        s.name,
                        num(v),
                        s.scale.min,
                        s.scale.max
                    );
                    if let Some(a) = &s.anchor {
                        let _ = write!(o, " The guidelines describe this level as: {a}");
                    }
                    if let Some(a) = &s.anchor_next {
                        let _ = write!(o, " (The next level up: {a})");
                    }
                    if s.evidence.is_empty() {
                        o.push_str(" No words of yours were quoted for this topic.");
                    } else {
                        let _ = write!(o, " Your words quoted: {}.", quoted_list(&s.evidence));
                    }
                }
            }
        }
        o.push_str("\n\n");
    }
    let strengths: Vec<&ExplainedFlag> = flags.iter().filter(|f| f.kind == "green").collect();
    let concerns: Vec<&ExplainedFlag> = flags.iter().filter(|f| f.kind == "red").collect();
    if !flags.is_empty() {
        o.push_str("Observations the system noted:");
        for (title, list) in [("Strength", &strengths), ("Concern", &concerns)] {
            for f in list.iter() {
                let _ = write!(o, "\n- {title}: {}", f.label);
                if !f.evidence.is_empty() {
                    let _ = write!(o, " (your words: {})", quoted_list(&f.evidence));
                }
                o.push('.');
            }
        }
        o.push_str("\n\n");
    }
    let _ = write!(
        o,
        "The system's overall suggestion, which is advisory only, is that the interview shows {}.",
        recommendation_plain(r.recommendation)
    );
    if cal.status == "calibrated" {
        let n: u32 = cal.pairs.values().copied().max().unwrap_or(0);
        let _ = write!(
            o,
            " Some ratings were adjusted to match how people at the company grade, based on \
             earlier interviews graded both by people and by the system{}.",
            if n > 0 {
                format!(" ({n} such interviews)")
            } else {
                String::new()
            }
        );
    } else {
        o.push_str(
            " The ratings have not been adjusted against grades given by people at the company.",
        );
    }
    o.push_str("\n\n");
    if review.needs_review {
        let _ = write!(
            o,
            "This assessment is marked for review by a person, because: {}.",
            review
                .reasons
                .iter()
                .map(|s| s.trim_end_matches('.'))
                .collect::<Vec<_>>()
                .join("; ")
        );
    } else {
        o.push_str("This assessment is not specially marked for review, but it remains advisory and a person still decides.");
    }
    match review.human_grades {
        0 => o.push_str(" No person has graded this interview in the system yet."),
        1 => o.push_str(" One person has graded this interview too."),
        n => {
            let _ = write!(o, " {n} people have graded this interview too.");
        }
    }
    o.push_str("\n\n");
    match decision {
        Some(d) => {
            let what: &str = match Decision::parse(&d.decision) {
                Some(known) => known.plain(),
                None => &d.decision,
            };
            let _ = write!(
                o,
                "Decision: a person ({}) decided {what} on {}.",
                d.decided_by,
                d.at.format("%Y-%m-%d")
            );
        }
        None => o.push_str(
            "Decision: none has been recorded yet. When one is, it is made by a person, not by \
             the system.",
        ),
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decided_by_must_name_a_person() {
        for bad in [
            "", "  ", "ai", "AI", "A.I.", "Grader", "system", "auto", "AUTO", "bot", "llm",
            "key:123", "worker:x", "sync:api", "42", "x",
        ] {
            assert!(validate_person(bad).is_err(), "{bad:?} accepted");
        }
        for ok in ["Dana Smith", "José Álvarez", "Li Wei", "O'Brien"] {
            assert_eq!(validate_person(ok).unwrap(), ok);
        }
        assert_eq!(validate_person("  Dana  ").unwrap(), "Dana");
    }

    #[test]
    fn decisions_parse_only_the_five_values() {
        for d in ["hire", "no_hire", "advance", "reject", "hold"] {
            assert_eq!(Decision::parse(d).map(Decision::as_str), Some(d));
        }
        assert!(Decision::parse("strong_hire").is_none());
        assert!(Decision::parse("HIRE").is_none());
    }

    #[test]
    fn callback_urls_are_checked() {
        assert!(validate_callback_url("https://ats.example.com/hook").is_ok());
        assert!(validate_callback_url("http://127.0.0.1:9000/x").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https:///x",
            "example.com",
            "https://a b",
        ] {
            assert!(validate_callback_url(bad).is_err(), "{bad}");
        }
    }
}
