//! `POST /v1/submissions/{id}/human-grades`: a person's grade, stored beside the AI's report
//! (never over it) and validated against the rubric that report used: every dimension must
//! be one of the rubric's, every score a whole number on that dimension's scale, every flag
//! one the rubric defines. An override (a grade that disagrees with the AI and says why) is
//! logged like every grade, with its reason.
//!
//! `POST /v1/human-grades/import`: the same grades from a CSV file (`text/csv`), validated
//! row by row with the same checks and stored all or nothing.

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
use super::extract::{ApiPath, JsonBody, RawBody};
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
/// Shared with the review UI (`web`), which validates its form grades the same way.
pub(crate) struct Rubric {
    pub(crate) prompt: String,
    pub(crate) scales: BTreeMap<String, Scale>,
    pub(crate) flags: Option<BTreeSet<String>>,
}

pub(crate) fn rubric(
    app: &crate::service::App,
    record: &SubmissionRecord,
) -> Result<Rubric, ApiError> {
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

pub(crate) fn validate(req: &HumanGradeRequest, rubric: &Rubric) -> Result<(), ApiError> {
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
    let rubric = rubric(&ctx.app, &record)?;
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
        .audit(&grade_audit(
            &caller,
            &grade,
            &rubric.prompt,
            None,
            Utc::now(),
        ))
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

/// The columns of a human-grades CSV file; the first four are required.
const CSV_COLUMNS: [&str; 6] = [
    "submission_id",
    "rater",
    "dimension",
    "score",
    "flags",
    "override_reason",
];

/// Splits CSV text into records with the line each starts on: the same RFC 4180 reader that
/// `grader calibrate` uses, its errors turned into 422s that name the line.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, ApiError> {
    crate::calibration::input::csv_records(text).map_err(|e| match e {
        crate::calibration::CalibrationError::Csv { line, message } => {
            ApiError::unprocessable("invalid_csv", format!("line {line}: {message}"))
        }
        other => ApiError::unprocessable("invalid_csv", other.to_string()),
    })
}

/// One (submission, rater) being assembled from the file's rows.
struct ImportGrade {
    submission_id: String,
    rater: String,
    scores: BTreeMap<String, f64>,
    flags: Vec<String>,
    override_reason: Option<String>,
    prompt: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    /// Human grades stored: one per (submission, rater) in the file.
    pub imported: usize,
}

/// Import human grades from CSV, all or nothing.
///
/// `Content-Type: text/csv`; a header row naming the columns `submission_id, rater,
/// dimension, score` and optionally `flags` (ids separated by `;`) and `override_reason`; one
/// row per (submission, rater, dimension). The rows of one submission and rater make one
/// grade. Every row is checked like `POST /v1/submissions/{id}/human-grades` checks a grade
/// (the submission must be the tenant's; dimension, score and flags against its rubric); the
/// first bad row answers 422 naming its line, and then nothing is stored.
#[utoipa::path(
    post,
    path = "/v1/human-grades/import",
    tag = "human grades",
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, body = ImportResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The key's role is below grader", body = ErrorBody),
        (status = 415, description = "Not text/csv", body = ErrorBody),
        (status = 422, description = "A bad row (its line is named); nothing stored", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn import(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<ImportResponse>, ApiError> {
    caller.require(Role::Grader)?;
    let mime = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "text/csv" {
        return Err(ApiError::Status {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!("Content-Type must be text/csv, got {mime:?}"),
        });
    }
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::InvalidUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = parse_csv(text)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(ApiError::unprocessable(
            "invalid_csv",
            "the file is empty; expected a header row",
        ));
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = header.iter().find(|h| !CSV_COLUMNS.contains(&h.as_str())) {
        return Err(ApiError::unprocessable(
            "invalid_csv",
            format!(
                "line 1: unknown column `{bad}`; expected: {}",
                CSV_COLUMNS.join(", ")
            ),
        ));
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let required = |name: &'static str| {
        col(name).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_csv",
                format!("line 1: the header has no `{name}` column"),
            )
        })
    };
    let (c_sub, c_rater, c_dim, c_score) = (
        required("submission_id")?,
        required("rater")?,
        required("dimension")?,
        required("score")?,
    );
    let (c_flags, c_reason) = (col("flags"), col("override_reason"));

    let store = &ctx.app.store;
    let mut rubrics: BTreeMap<String, Rubric> = BTreeMap::new();
    let mut grades: Vec<ImportGrade> = Vec::new();
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (line, row) in records {
        let at = |e: ApiError| match e {
            ApiError::Unprocessable { code, message } => ApiError::Unprocessable {
                code,
                message: format!("line {line}: {message}"),
            },
            other => other,
        };
        if row.len() != header.len() {
            return Err(ApiError::unprocessable(
                "invalid_csv",
                format!(
                    "line {line}: {} field(s), the header has {}",
                    row.len(),
                    header.len()
                ),
            ));
        }
        let get = |c: Option<usize>| c.map(|c| row[c].trim().to_string()).unwrap_or_default();
        let (sub, rater, dim) = (get(Some(c_sub)), get(Some(c_rater)), get(Some(c_dim)));
        for (name, v) in [
            ("submission_id", &sub),
            ("rater", &rater),
            ("dimension", &dim),
        ] {
            if v.is_empty() {
                return Err(ApiError::unprocessable(
                    "invalid_csv",
                    format!("line {line}: `{name}` is empty"),
                ));
            }
        }
        let score_text = get(Some(c_score));
        let score: f64 = score_text.parse().map_err(|_| {
            ApiError::unprocessable(
                "score_out_of_range",
                format!("line {line}: score {score_text:?} is not a number"),
            )
        })?;
        let flags: Vec<String> = get(c_flags)
            .split(';')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        let reason = Some(get(c_reason)).filter(|r| !r.is_empty());
        if !rubrics.contains_key(&sub) {
            let record = store
                .submission(&caller.tenant.id, &sub)
                .await?
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "unknown_submission",
                        format!("line {line}: submission {sub} not found"),
                    )
                })?;
            rubrics.insert(sub.clone(), rubric(&ctx.app, &record).map_err(at)?);
        }
        let rubric = &rubrics[&sub];
        // The same checks as the JSON route, on this row alone, so an error names its line.
        let row_req = HumanGradeRequest {
            rater: Some(rater.clone()),
            scores: BTreeMap::from([(dim.clone(), score)]),
            flags: flags.clone(),
            override_reason: reason.clone(),
            comment: None,
        };
        validate(&row_req, rubric).map_err(at)?;
        let i = *index
            .entry((sub.clone(), rater.clone()))
            .or_insert_with(|| {
                grades.push(ImportGrade {
                    submission_id: sub.clone(),
                    rater: rater.clone(),
                    scores: BTreeMap::new(),
                    flags: Vec::new(),
                    override_reason: None,
                    prompt: rubric.prompt.clone(),
                });
                grades.len() - 1
            });
        let g = &mut grades[i];
        if g.scores.insert(dim.clone(), score).is_some() {
            return Err(ApiError::unprocessable(
                "duplicate_dimension",
                format!("line {line}: rater {rater} already scored `{dim}` of submission {sub}"),
            ));
        }
        for f in flags {
            if !g.flags.contains(&f) {
                g.flags.push(f);
            }
        }
        if g.override_reason.is_none() {
            g.override_reason = reason;
        }
    }
    if grades.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_csv",
            "the file has a header but no rows",
        ));
    }
    let now = Utc::now();
    let stored: Vec<(HumanGrade, String)> = grades
        .into_iter()
        .map(|g| {
            (
                HumanGrade {
                    id: uuid::Uuid::new_v4().to_string(),
                    tenant_id: caller.tenant.id.clone(),
                    submission_id: g.submission_id,
                    rater: g.rater,
                    scores: g.scores,
                    flags: g.flags,
                    override_reason: g.override_reason,
                    comment: None,
                    created_at: now,
                },
                g.prompt,
            )
        })
        .collect();
    let only: Vec<HumanGrade> = stored.iter().map(|(g, _)| g.clone()).collect();
    // One transaction: a submission deleted meanwhile fails the whole import.
    store.add_human_grades(&only).await?;
    for (grade, prompt) in &stored {
        store
            .audit(&grade_audit(&caller, grade, prompt, Some("csv"), now))
            .await?;
    }
    Ok(Json(ImportResponse {
        imported: stored.len(),
    }))
}

/// The audit entry for a person's grade (an override when it carries a reason), shared by the
/// JSON route and the CSV import (`import` names the import's format).
pub(crate) fn grade_audit(
    caller: &Caller,
    grade: &HumanGrade,
    prompt: &str,
    import: Option<&str>,
    at: chrono::DateTime<Utc>,
) -> AuditEntry {
    let mut detail = serde_json::json!({
        "grade_id": grade.id,
        "rater": grade.rater,
        "prompt": prompt,
        "scores": grade.scores,
        "flags": grade.flags,
        "override_reason": grade.override_reason,
    });
    if let Some(format) = import {
        detail["import"] = serde_json::Value::from(format);
    }
    AuditEntry {
        tenant_id: caller.tenant.id.clone(),
        actor: caller.actor(),
        action: if grade.override_reason.is_some() {
            "report.overridden".into()
        } else {
            "human_grade.added".into()
        },
        subject: Some(grade.submission_id.clone()),
        detail,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn csv_quotes_crlf_blank_lines_and_line_numbers() {
        let text = "a,b\r\n\r\n\"x, \"\"y\"\"\",2\n\"multi\nline\",3\nlast,4";
        let rows = parse_csv(text).expect("parses");
        assert_eq!(
            rows,
            vec![
                (1, vec!["a".to_string(), "b".to_string()]),
                (3, vec!["x, \"y\"".to_string(), "2".to_string()]),
                (4, vec!["multi\nline".to_string(), "3".to_string()]),
                (6, vec!["last".to_string(), "4".to_string()]),
            ]
        );
        assert!(parse_csv("a,\"open\n").is_err());
        assert!(parse_csv("a,b\"c\n").is_err());
    }
}
