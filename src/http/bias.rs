//! `POST /v1/bias-audit` (admin): a NYC LL144-style bias audit of the tenant's stored AI
//! scores against demographic categories sent in the request (see [`crate::fairness`]).
//!
//! The demographics are used for this one computation and dropped: they are not stored (no
//! table holds them) and never enter a `Submission`, so no model ever sees them. The audit
//! log records that an audit ran, with counts only.
//!
//! Per submission: the AI score is the report's `overall` (0..1), or with `dimension` that
//! dimension's raw score; the length is the candidate's words in the stored transcript; the
//! human score is the mean of the people's grades for that dimension, or for `overall` the
//! mean over the grades of each grade's unweighted mean normalized score (0..1) over the
//! dimensions it scored, on the report's scales.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::JsonBody;
use super::{ApiError, Ctx};
use crate::domain::{GradeReport, Stage};
use crate::fairness::{bias_audit, AuditOptions, AuditRow, BiasAudit, FairnessError};
use crate::store::{AuditEntry, HumanGrade, Role};

/// Most submissions one audit may name.
pub const MAX_ITEMS: usize = 50_000;
/// Most demographic fields per audit (intersections grow multiplicatively).
pub const MAX_FIELDS: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Demographic {
    pub submission_id: String,
    /// Field -> category, e.g. `{"sex": "female", "race_ethnicity": "asian"}`; a missing
    /// field or an empty value counts as `unknown`.
    #[schema(value_type = Object)]
    pub categories: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BiasAuditRequest {
    pub demographics: Vec<Demographic>,
    /// Audit this dimension's score instead of the report's `overall`.
    #[serde(default)]
    pub dimension: Option<String>,
    /// Only submissions of this stage.
    #[serde(default)]
    pub stage: Option<String>,
}

/// Submissions named in the request but left out of the audit, by reason.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Skipped {
    /// Unknown, another tenant's, or not graded yet.
    pub not_graded: usize,
    /// Graded in another stage than `stage`.
    pub other_stage: usize,
    /// The report has no score for the audited dimension (or no overall).
    pub unscored: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BiasAuditResponse {
    /// `overall` or the dimension id.
    pub score: String,
    pub stage: Option<String>,
    /// Submissions named in the request.
    pub requested: usize,
    pub skipped: Skipped,
    /// The audit (rates, impact ratios, flags, length bias).
    #[schema(value_type = Object)]
    pub audit: BiasAudit,
}

/// Run a bias audit (scoring rates, impact ratios, length bias) over stored AI scores.
#[utoipa::path(
    post,
    path = "/v1/bias-audit",
    tag = "oversight",
    request_body = BiasAuditRequest,
    responses(
        (status = 200, body = BiasAuditResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 422, description = "Empty or duplicate demographics, too many items or fields, unknown stage, or nothing to audit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn bias_audit_route(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    body: JsonBody,
) -> Result<Json<BiasAuditResponse>, ApiError> {
    caller.require(Role::Admin)?;
    let req: BiasAuditRequest = body.parse()?;
    let invalid = |m: String| ApiError::unprocessable("invalid_audit", m);
    if req.demographics.is_empty() {
        return Err(invalid("`demographics` is empty".into()));
    }
    if req.demographics.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "at most {MAX_ITEMS} submissions per audit, got {}",
            req.demographics.len()
        )));
    }
    let stage: Option<Stage> = req
        .stage
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: crate::domain::UnknownStage| ApiError::UnknownStage(e.to_string()))?;
    let mut seen = HashSet::new();
    let mut fields = std::collections::BTreeSet::new();
    for d in &req.demographics {
        if !seen.insert(d.submission_id.as_str()) {
            return Err(invalid(format!(
                "submission {} appears twice in `demographics`",
                d.submission_id
            )));
        }
        for (k, v) in &d.categories {
            if k.trim().is_empty() || k.chars().count() > 64 || v.chars().count() > 128 {
                return Err(invalid(format!(
                    "submission {}: field names must be 1-64 characters and categories at most 128",
                    d.submission_id
                )));
            }
            fields.insert(k.clone());
        }
    }
    if fields.len() > MAX_FIELDS {
        return Err(invalid(format!(
            "at most {MAX_FIELDS} demographic fields, got {}",
            fields.len()
        )));
    }
    let dimension = req
        .dimension
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "overall")
        .map(str::to_string);
    let ids: Vec<String> = req
        .demographics
        .iter()
        .map(|d| d.submission_id.clone())
        .collect();
    let found = ctx
        .app
        .store
        .graded_with_human_grades(&caller.tenant.id, &ids)
        .await?;
    let mut skipped = Skipped {
        not_graded: ids.len().saturating_sub(found.len()),
        ..Default::default()
    };
    let cats: BTreeMap<&str, &BTreeMap<String, String>> = req
        .demographics
        .iter()
        .map(|d| (d.submission_id.as_str(), &d.categories))
        .collect();
    let mut rows = Vec::new();
    for (record, grades) in &found {
        let Some(report) = &record.report else {
            skipped.not_graded += 1;
            continue;
        };
        if stage.is_some_and(|s| s != record.stage) {
            skipped.other_stage += 1;
            continue;
        }
        let Some(ai) = ai_score(report, dimension.as_deref()) else {
            skipped.unscored += 1;
            continue;
        };
        rows.push(AuditRow {
            item_id: record.id.clone(),
            ai_score: ai,
            human_score: human_score(report, grades, dimension.as_deref()),
            length_words: Some(candidate_words(report) as f64),
            categories: cats
                .get(record.id.as_str())
                .map(|c| (*c).clone())
                .unwrap_or_default(),
        });
    }
    // Same order whatever order the store answered in, so the answer is reproducible.
    rows.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    let opts = AuditOptions {
        fields: Some(fields.iter().cloned().collect()),
        ..Default::default()
    };
    let audit = bias_audit(&rows, &opts).map_err(|e| match e {
        FairnessError::Empty => invalid(
            "none of the submissions named is graded with a score to audit (see `skipped` reasons: unknown, not graded, other stage, unscored)".into(),
        ),
        other => invalid(other.to_string()),
    })?;
    ctx.app
        .store
        .audit(&AuditEntry {
            tenant_id: caller.tenant.id.clone(),
            actor: caller.actor(),
            action: "bias_audit.run".into(),
            subject: None,
            detail: serde_json::json!({
                "requested": ids.len(),
                "audited": audit.n,
                "fields": audit.fields,
                "score": dimension.as_deref().unwrap_or("overall"),
                "stage": stage.map(|s| s.as_str()),
                "flagged": audit.flagged.len(),
            }),
            at: Utc::now(),
        })
        .await?;
    Ok(Json(BiasAuditResponse {
        score: dimension.unwrap_or_else(|| "overall".into()),
        stage: stage.map(|s| s.as_str().to_string()),
        requested: ids.len(),
        skipped,
        audit,
    }))
}

fn ai_score(report: &GradeReport, dimension: Option<&str>) -> Option<f64> {
    match dimension {
        None => report.overall,
        Some(d) => report
            .scores
            .iter()
            .find(|s| s.dimension == d)
            .and_then(|s| s.score),
    }
}

/// Words the candidate said or wrote; the whole text when no turn is the candidate's (a
/// written answer stored as plain text).
pub fn candidate_words(report: &GradeReport) -> usize {
    let own = report.transcript.candidate_text();
    let text = if own.trim().is_empty() {
        report.transcript.text.as_str()
    } else {
        own.as_str()
    };
    text.split_whitespace().count()
}

fn human_score(
    report: &GradeReport,
    grades: &[HumanGrade],
    dimension: Option<&str>,
) -> Option<f64> {
    let per_grade: Vec<f64> = grades
        .iter()
        .filter_map(|g| match dimension {
            Some(d) => g.scores.get(d).copied(),
            None => {
                let normalized: Vec<f64> = g
                    .scores
                    .iter()
                    .filter_map(|(dim, &v)| {
                        report
                            .scores
                            .iter()
                            .find(|s| &s.dimension == dim)
                            .map(|s| s.scale.normalize(v))
                    })
                    .collect();
                (!normalized.is_empty())
                    .then(|| normalized.iter().sum::<f64>() / normalized.len() as f64)
            }
        })
        .filter(|v| v.is_finite())
        .collect();
    (!per_grade.is_empty()).then(|| per_grade.iter().sum::<f64>() / per_grade.len() as f64)
}
