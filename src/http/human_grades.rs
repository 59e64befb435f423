//! `POST /v1/submissions/{id}/human-grades`: a person's grade, stored beside the AI's report
//! (never over it) and validated against the rubric that report used: every dimension must
//! be one of the rubric's, every score a whole number on that dimension's scale, every flag
//! one the rubric defines. An override (a grade that disagrees with the AI and says why) is
//! logged like every grade, with its reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::{ApiPath, JsonBody};
use super::{ApiError, Ctx};
use crate::domain::Scale;
use crate::store::{AuditEntry, HumanGrade, Role, SubmissionRecord};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanGradeRequest {
    /// Who graded (default: the API key, `key:<id>`).
    #[serde(default)]
    pub rater: Option<String>,
    /// Score per rubric dimension id, whole numbers on the dimension's scale.
    #[schema(example = json!({"retrieval_strategy": 3}))]
    pub scores: BTreeMap<String, f64>,
    /// Flag ids of the rubric the grader saw.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Why this grade overrides the AI's, when it does.
    #[serde(default)]
    pub override_reason: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The stored grade.
#[derive(Debug, Serialize, ToSchema)]
pub struct HumanGradeView {
    pub id: String,
    pub submission_id: String,
    pub rater: String,
    pub scores: BTreeMap<String, f64>,
    pub flags: Vec<String>,
    pub override_reason: Option<String>,
    pub comment: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<Utc>,
}

/// The rubric a grade is checked against: dimension → scale, and the flag ids (None when the
/// prompt version is no longer loaded and only the report's own scales are known).
struct Rubric {
    prompt: String,
    scales: BTreeMap<String, Scale>,
    flags: Option<BTreeSet<String>>,
}

fn rubric(ctx: &Ctx, record: &SubmissionRecord) -> Result<Rubric, ApiError> {
    let app = &ctx.app;
    if let Some(report) = &record.report {
        if let Some(pv) = app.registry.get(&report.prompt.id, &report.prompt.version) {
            return Ok(Rubric {
                prompt: pv.key(),
                scales: pv
                    .file
                    .dimensions
                    .iter()
                    .map(|d| (d.id.clone(), d.scale))
                    .collect(),
                flags: Some(pv.file.flags.iter().map(|f| f.id.clone()).collect()),
            });
        }
        return Ok(Rubric {
            prompt: format!("{}@{}", report.prompt.id, report.prompt.version),
            scales: report
                .scores
                .iter()
                .map(|s| (s.dimension.clone(), s.scale))
                .collect(),
            flags: None,
        });
    }
    let pv = app
        .prompt_for(record.stage, record.prompt.as_deref())
        .map_err(|message| ApiError::Unavailable {
            code: "prompt_unavailable",
            message,
        })?;
    Ok(Rubric {
        prompt: pv.key(),
        scales: pv
            .file
            .dimensions
            .iter()
            .map(|d| (d.id.clone(), d.scale))
            .collect(),
        flags: Some(pv.file.flags.iter().map(|f| f.id.clone()).collect()),
    })
}

fn validate(req: &HumanGradeRequest, rubric: &Rubric) -> Result<(), ApiError> {
    if req.scores.is_empty() {
        return Err(ApiError::unprocessable(
            "missing_scores",
            "`scores` is empty; give at least one dimension's score",
        ));
    }
    let valid = || rubric.scales.keys().cloned().collect::<Vec<_>>().join(", ");
    for (dim, &score) in &req.scores {
        let Some(scale) = rubric.scales.get(dim) else {
            return Err(ApiError::unprocessable(
                "unknown_dimension",
                format!(
                    "unknown dimension `{dim}` for prompt {}; expected one of: {}",
                    rubric.prompt,
                    valid()
                ),
            ));
        };
        let whole = score.is_finite() && score.fract() == 0.0;
        if !whole || score < f64::from(scale.min) || score > f64::from(scale.max) {
            return Err(ApiError::unprocessable(
                "score_out_of_range",
                format!(
                    "score {score} for dimension `{dim}` must be a whole number from {} to {}",
                    scale.min, scale.max
                ),
            ));
        }
    }
    if let Some(known) = &rubric.flags {
        if let Some(bad) = req.flags.iter().find(|f| !known.contains(*f)) {
            return Err(ApiError::unprocessable(
                "unknown_flag",
                format!(
                    "unknown flag `{bad}` for prompt {}; expected one of: {}",
                    rubric.prompt,
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if req.rater.as_ref().is_some_and(|r| r.chars().count() > 200) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`rater` is longer than 200 characters",
        ));
    }
    Ok(())
}

/// Add a person's grade to a submission.
#[utoipa::path(
    post,
    path = "/v1/submissions/{id}/human-grades",
    tag = "human grades",
    params(("id" = String, Path, description = "Submission id")),
    request_body = HumanGradeRequest,
    responses(
        (status = 201, body = HumanGradeView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The key's role is below grader", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Unknown dimension or flag, score off the scale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<HumanGradeView>), ApiError> {
    caller.require(Role::Grader)?;
    let store = &ctx.app.store;
    let record = store
        .submission(&caller.tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("submission {id}")))?;
    let req: HumanGradeRequest = body.parse()?;
    let rubric = rubric(&ctx, &record)?;
    validate(&req, &rubric)?;
    let nonempty = |s: Option<String>| s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let grade = HumanGrade {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: caller.tenant.id.clone(),
        submission_id: record.id.clone(),
        rater: nonempty(req.rater).unwrap_or_else(|| caller.actor()),
        scores: req.scores,
        flags: req.flags,
        override_reason: nonempty(req.override_reason),
        comment: nonempty(req.comment),
        created_at: Utc::now(),
    };
    store.add_human_grade(&grade).await?;
    store
        .audit(&AuditEntry {
            tenant_id: caller.tenant.id.clone(),
            actor: caller.actor(),
            action: if grade.override_reason.is_some() {
                "report.overridden".into()
            } else {
                "human_grade.added".into()
            },
            subject: Some(record.id.clone()),
            detail: serde_json::json!({
                "grade_id": grade.id,
                "rater": grade.rater,
                "prompt": rubric.prompt,
                "scores": grade.scores,
                "flags": grade.flags,
                "override_reason": grade.override_reason,
            }),
            at: Utc::now(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(HumanGradeView {
            id: grade.id,
            submission_id: grade.submission_id,
            rater: grade.rater,
            scores: grade.scores,
            flags: grade.flags,
            override_reason: grade.override_reason,
            comment: grade.comment,
            created_at: grade.created_at,
        }),
    ))
}
