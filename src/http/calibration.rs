//! `GET /v1/calibration?stage=&prompt=&model=&since=&until=`: how well the AI agrees with the
//! tenant's human graders, per rubric dimension, with the same figures as `grader calibrate`
//! (`calibration::dimension_report`: weighted kappas, Krippendorff's alpha, correlations,
//! errors, bootstrap CIs, the human ceiling).
//!
//! Each stored human grade is one rater's ratings; the AI's score on the same submission is
//! the rater `ai`. A person who graded a submission twice counts with their latest grade.
//! Scales come from the prompt versions in the registry (the union when several versions
//! share a dimension id), else from the observed scores.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use super::{ApiError, Ctx};
use crate::calibration::{self, Rating};
use crate::domain::Stage;
use crate::store::{CalibrationFilter, CalibrationRow, Role};

/// The AI's rater name in the ratings handed to the metrics.
const AI_RATER: &str = "ai";
const DEFAULT_BOOTSTRAP: usize = 1_000;
const MAX_BOOTSTRAP: usize = 10_000;
const SEED: u64 = 7;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CalibrationQuery {
    /// Only this stage.
    pub stage: Option<String>,
    /// `id` (every version) or `id@version`.
    pub prompt: Option<String>,
    /// The judge model id reports carry (`offline` for the offline judge).
    pub model: Option<String>,
    /// Human grades at or after this time (RFC 3339 or YYYY-MM-DD).
    pub since: Option<String>,
    /// Human grades at or before this time (RFC 3339 or YYYY-MM-DD, the whole day).
    pub until: Option<String>,
    /// Bootstrap resamples for the intervals (default 1000, at most 10000; 0 = none).
    pub bootstrap: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CalibrationResponse {
    /// Human-grade rows (one per person, submission and dimension) that matched.
    pub rows: usize,
    pub ai_rater: String,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// Per dimension: the `grader calibrate` figures, or `{"error": ...}` when they cannot
    /// be computed (e.g. no AI score on any graded item).
    #[schema(value_type = Object)]
    pub dimensions: BTreeMap<String, serde_json::Value>,
}

fn parse_time(name: &str, value: &str, end_of_day: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let t = if end_of_day {
            d.and_hms_micro_opt(23, 59, 59, 999_999)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(t) = t {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::bad_request(
        "invalid_query",
        format!("`{name}` = {value:?} is not an RFC 3339 time or a YYYY-MM-DD date"),
    ))
}

/// Ratings in long form: one per (submission, dimension, person), the latest grade winning,
/// plus the AI's score per (submission, dimension).
fn ratings(rows: &[CalibrationRow]) -> Vec<Rating> {
    let mut humans: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut ai: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in rows {
        // A person literally named `ai` must not be mistaken for the judge.
        let rater = if r.rater == AI_RATER {
            format!("human:{}", r.rater)
        } else {
            r.rater.clone()
        };
        humans.insert(
            (r.submission_id.clone(), r.dimension.clone(), rater),
            r.human,
        );
        if let Some(score) = r.ai {
            ai.insert((r.submission_id.clone(), r.dimension.clone()), score);
        }
    }
    let mut out: Vec<Rating> = humans
        .into_iter()
        .map(|((item_id, dimension, rater), score)| Rating {
            item_id,
            dimension,
            rater,
            score,
        })
        .collect();
    out.extend(ai.into_iter().map(|((item_id, dimension), score)| Rating {
        item_id,
        dimension,
        rater: AI_RATER.to_string(),
        score,
    }));
    out
}

/// Per-dimension scales from the prompt versions the rows name; observed range otherwise.
fn scales(ctx: &Ctx, rows: &[CalibrationRow], ratings: &[Rating]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut widen = |dim: &str, lo: i64, hi: i64| {
        let e = out.entry(dim.to_string()).or_insert((lo, hi));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
    };
    let mut seen = std::collections::BTreeSet::new();
    for r in rows {
        if !seen.insert(r.prompt.clone()) {
            continue;
        }
        let Some((id, version)) = r.prompt.split_once('@') else {
            continue;
        };
        if let Some(pv) = ctx.app.registry.get(id, version) {
            for d in &pv.file.dimensions {
                widen(&d.id, i64::from(d.scale.min), i64::from(d.scale.max));
            }
        }
    }
    for r in ratings {
        if r.score.is_finite() {
            widen(&r.dimension, r.score.floor() as i64, r.score.ceil() as i64);
        }
    }
    out
}

/// Agreement of the AI with human graders, per dimension.
#[utoipa::path(
    get,
    path = "/v1/calibration",
    tag = "human grades",
    params(CalibrationQuery),
    responses(
        (status = 200, body = CalibrationResponse),
        (status = 400, description = "Malformed query parameter", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The key's role is below grader", body = ErrorBody),
        (status = 422, description = "Unknown stage", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn calibration(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CalibrationQuery>,
) -> Result<Json<CalibrationResponse>, ApiError> {
    caller.require(Role::Grader)?;
    let nonempty = |s: Option<String>| s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let stage = nonempty(q.stage)
        .map(|s| s.parse::<Stage>())
        .transpose()
        .map_err(|e| ApiError::UnknownStage(e.to_string()))?;
    let filter = CalibrationFilter {
        stage,
        prompt: nonempty(q.prompt),
        model: nonempty(q.model),
        since: nonempty(q.since)
            .map(|s| parse_time("since", &s, false))
            .transpose()?,
        until: nonempty(q.until)
            .map(|s| parse_time("until", &s, true))
            .transpose()?,
    };
    let bootstrap = q.bootstrap.unwrap_or(DEFAULT_BOOTSTRAP).min(MAX_BOOTSTRAP);
    let rows = ctx
        .app
        .store
        .calibration_rows(&caller.tenant.id, &filter)
        .await?;
    let ratings = ratings(&rows);
    let scales = scales(&ctx, &rows, &ratings);
    // The bootstrap is CPU work: keep it off the async workers.
    let dimensions = tokio::task::spawn_blocking(move || {
        let rated: std::collections::BTreeSet<&str> =
            ratings.iter().map(|r| r.dimension.as_str()).collect();
        scales
            .iter()
            .filter(|(dim, _)| rated.contains(dim.as_str()))
            .map(|(dim, &scale)| {
                let v = match calibration::dimension_report(
                    &ratings, dim, AI_RATER, scale, bootstrap, SEED,
                ) {
                    Ok(report) => serde_json::to_value(report)
                        .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                (dim.clone(), v)
            })
            .collect::<BTreeMap<_, _>>()
    })
    .await
    .map_err(|e| ApiError::Status {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("calibration task failed: {e}"),
    })?;
    Ok(Json(CalibrationResponse {
        rows: rows.len(),
        ai_rater: AI_RATER.to_string(),
        bootstrap_resamples: bootstrap,
        seed: SEED,
        dimensions,
    }))
}
