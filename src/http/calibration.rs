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
use crate::calibration;
use crate::domain::Stage;
use crate::store::{CalibrationFilter, CalibrationRow, Role};

// Which grades count and each dimension's scale are shared with the dashboard.
use crate::service::calibration::{self as shared, AI_RATER, DEFAULT_BOOTSTRAP, SEED};
const MAX_BOOTSTRAP: usize = 10_000;

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
    let stage = stage_param(q.stage)?;
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
    let ratings = shared::ratings(&rows);
    let scales = shared::scales(&ctx.app.registry, &rows, &ratings);
    // The bootstrap is CPU work: keep it off the async workers.
    let dimensions = tokio::task::spawn_blocking(move || {
        shared::dimension_reports(&ratings, &scales, bootstrap, SEED)
            .into_iter()
            .map(|(dim, report)| {
                let v = match report {
                    Ok(report) => serde_json::to_value(report)
                        .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                (dim, v)
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

/// The fewest (AI raw score, human consensus) pairs a calibration map is fitted on. Below
/// this an isotonic map mostly memorises noise; even at 10 it is weak, which is why the
/// refit answer reports the held-out effect beside the in-sample one.
pub const MIN_PAIRS: usize = 10;
/// Folds of the held-out measurement (fewer when there are fewer pairs).
const REFIT_FOLDS: usize = 5;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RefitQuery {
    /// Only this stage (all stages when absent).
    pub stage: Option<String>,
    /// `id` (every version) or `id@version` (all prompts when absent). A map is always
    /// fitted per prompt version.
    pub prompt: Option<String>,
}

/// Mean absolute error, raw vs calibrated, on one set of pairs.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaeComparison {
    pub raw: Option<f64>,
    pub calibrated: Option<f64>,
}

/// One fitted (and stored) map and its measured effect.
#[derive(Debug, Serialize, ToSchema)]
pub struct FittedMap {
    #[schema(value_type = String)]
    pub stage: Stage,
    /// `id@version`
    pub prompt: String,
    pub dimension: String,
    pub n_pairs: usize,
    /// The stored map.
    #[schema(value_type = Object)]
    pub map: calibration::IsotonicMap,
    /// MAE against the human consensus on the pairs the map was fitted on: optimistic,
    /// since the map was chosen to fit exactly these pairs.
    pub in_sample_mae: MaeComparison,
    /// MAE on held-out pairs (`folds`-fold cross-validation: each pair predicted by a map
    /// fitted without it): the honest estimate of the map's effect on new gradings.
    pub held_out_mae: MaeComparison,
    /// QWK, MAE, SMD raw vs calibrated on the held-out pairs, as `grader eval` reports them.
    #[schema(value_type = Object)]
    pub held_out: crate::evals::CalibrationEffect,
}

/// A stage x prompt version x dimension with too few pairs: no map fitted or changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedMap {
    #[schema(value_type = String)]
    pub stage: Stage,
    pub prompt: String,
    pub dimension: String,
    pub n_pairs: usize,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefitResponse {
    pub min_pairs: usize,
    pub fitted: Vec<FittedMap>,
    pub skipped: Vec<SkippedMap>,
    pub note: String,
}

/// The pairs of one stage x prompt version x dimension: per submission the AI's raw score
/// and the human consensus (median of the raters' latest grades, ties rounded half down).
type PairKey = (Stage, String, String);

fn consensus_pairs(rows: &[CalibrationRow]) -> BTreeMap<PairKey, Vec<(f64, f64)>> {
    // (stage, prompt, dimension, submission) -> (ai, rater -> latest human score)
    type Item = (Option<f64>, BTreeMap<String, f64>);
    let mut items: BTreeMap<(PairKey, String), Item> = BTreeMap::new();
    // Rows come oldest first, so a later grade by the same rater replaces an earlier one.
    for r in rows {
        let key = (
            (r.stage, r.prompt.clone(), r.dimension.clone()),
            r.submission_id.clone(),
        );
        let e = items.entry(key).or_default();
        if r.ai.is_some() {
            e.0 = r.ai;
        }
        e.1.insert(r.rater.clone(), r.human);
    }
    let mut out: BTreeMap<PairKey, Vec<(f64, f64)>> = BTreeMap::new();
    for ((key, _), (ai, humans)) in items {
        let humans: Vec<f64> = humans.into_values().collect();
        if let (Some(ai), Some(h)) = (ai, calibration::human_consensus(&humans)) {
            if ai.is_finite() {
                out.entry(key).or_default().push((ai, h));
            }
        }
    }
    out
}

fn scale_of(ctx: &Ctx, prompt: &str, dimension: &str, pairs: &[(f64, f64)]) -> (i64, i64) {
    let from_registry = prompt.split_once('@').and_then(|(id, version)| {
        let pv = ctx.app.registry.get(id, version)?;
        let d = pv.file.dimensions.iter().find(|d| d.id == dimension)?;
        Some((i64::from(d.scale.min), i64::from(d.scale.max)))
    });
    let (mut lo, mut hi) = from_registry.unwrap_or((i64::MAX, i64::MIN));
    for &(a, h) in pairs {
        lo = lo.min(a.floor() as i64).min(h.floor() as i64);
        hi = hi.max(a.ceil() as i64).max(h.ceil() as i64);
    }
    (lo, hi)
}

fn mae(pred: &[f64], human: &[f64]) -> Option<f64> {
    (!pred.is_empty()).then(|| {
        pred.iter()
            .zip(human)
            .map(|(p, h)| (p - h).abs())
            .sum::<f64>()
            / pred.len() as f64
    })
}

/// Fits one map with [`crate::evals::cross_validate`] (its map is fitted on all pairs; its
/// figures are on held-out folds) and measures the in-sample MAE beside them.
fn fit_one(
    key: &PairKey,
    pairs: &[(f64, f64)],
    scale: (i64, i64),
) -> Result<(calibration::IsotonicMap, FittedMap), String> {
    let ai: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let human: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let effect = crate::evals::cross_validate(&ai, &human, scale, REFIT_FOLDS, SEED)
        .map_err(|e| e.to_string())?;
    let map = effect
        .map
        .clone()
        .ok_or_else(|| "the isotonic fit failed".to_string())?;
    let fitted: Vec<f64> = ai.iter().map(|&x| map.apply(x)).collect();
    Ok((
        map.clone(),
        FittedMap {
            stage: key.0,
            prompt: key.1.clone(),
            dimension: key.2.clone(),
            n_pairs: pairs.len(),
            map,
            in_sample_mae: MaeComparison {
                raw: mae(&ai, &human),
                calibrated: mae(&fitted, &human),
            },
            held_out_mae: MaeComparison {
                raw: effect.raw.mae,
                calibrated: effect.calibrated.mae,
            },
            held_out: effect,
        },
    ))
}

/// Refit the tenant's calibration maps from its human grades.
///
/// For every stage x prompt version x dimension with at least [`MIN_PAIRS`] submissions
/// that have both an AI score and a human consensus, fits an isotonic map from the AI's
/// raw score to the consensus and stores it (replacing the previous one); later gradings
/// with that prompt version show `calibrated` beside the raw `score`.
#[utoipa::path(
    post,
    path = "/v1/calibration/refit",
    tag = "human grades",
    params(RefitQuery),
    responses(
        (status = 200, body = RefitResponse),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The key's role is below grader", body = ErrorBody),
        (status = 422, description = "Unknown stage", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn refit(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RefitQuery>,
) -> Result<Json<RefitResponse>, ApiError> {
    caller.require(Role::Grader)?;
    let stage = stage_param(q.stage)?;
    let filter = CalibrationFilter {
        stage,
        prompt: nonempty(q.prompt),
        ..CalibrationFilter::default()
    };
    let rows = ctx
        .app
        .store
        .calibration_rows(&caller.tenant.id, &filter)
        .await?;
    let groups = consensus_pairs(&rows);
    let mut fitted = Vec::new();
    let mut skipped = Vec::new();
    for (key, pairs) in &groups {
        let skip = |reason: String| SkippedMap {
            stage: key.0,
            prompt: key.1.clone(),
            dimension: key.2.clone(),
            n_pairs: pairs.len(),
            reason,
        };
        if pairs.len() < MIN_PAIRS {
            skipped.push(skip(format!(
                "{} pair(s); a map needs at least {MIN_PAIRS}",
                pairs.len()
            )));
            continue;
        }
        let scale = scale_of(&ctx, &key.1, &key.2, pairs);
        match fit_one(key, pairs, scale) {
            Ok((map, view)) => {
                ctx.app
                    .store
                    .put_calibration_map(&crate::store::CalibrationMapRecord {
                        tenant_id: caller.tenant.id.clone(),
                        stage: key.0,
                        dimension: key.2.clone(),
                        prompt: key.1.clone(),
                        map,
                        n_pairs: u32::try_from(pairs.len()).unwrap_or(u32::MAX),
                        fitted_at: Utc::now(),
                    })
                    .await?;
                fitted.push(view);
            }
            Err(reason) => skipped.push(skip(reason)),
        }
    }
    Ok(Json(RefitResponse {
        min_pairs: MIN_PAIRS,
        fitted,
        skipped,
        note: format!(
            "Maps are fitted on few pairs (at least {MIN_PAIRS}) and are weak: judge them by \
             held_out_mae, not in_sample_mae, which is optimistic by construction. A map \
             whose held-out calibrated MAE is not below the raw MAE does not help yet."
        ),
    }))
}

/// A query parameter with surrounding blanks removed; an empty one counts as absent.
fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The optional `stage` filter, 422 when it names no stage.
fn stage_param(s: Option<String>) -> Result<Option<Stage>, ApiError> {
    nonempty(s)
        .map(|s| s.parse::<Stage>())
        .transpose()
        .map_err(|e| ApiError::UnknownStage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sub: &str, rater: &str, human: f64, ai: Option<f64>) -> CalibrationRow {
        CalibrationRow {
            submission_id: sub.to_string(),
            stage: Stage::SystemDesign,
            prompt: "sd@v1".to_string(),
            model: "m".to_string(),
            dimension: "retrieval".to_string(),
            rater: rater.to_string(),
            human,
            ai,
            graded_at: Utc::now(),
        }
    }

    #[test]
    fn pairs_use_each_raters_latest_grade_and_the_median_ties_half_down() {
        let rows = [
            row("s1", "kim", 1.0, Some(3.0)),
            // Kim's later grade replaces the earlier one.
            row("s1", "kim", 2.0, Some(3.0)),
            row("s1", "lee", 5.0, Some(3.0)),
            // Three raters: the median.
            row("s2", "kim", 1.0, Some(2.0)),
            row("s2", "lee", 4.0, Some(2.0)),
            row("s2", "max", 2.0, Some(2.0)),
            // No AI score: no pair.
            row("s3", "kim", 3.0, None),
        ];
        let pairs = consensus_pairs(&rows);
        let key = (
            Stage::SystemDesign,
            "sd@v1".to_string(),
            "retrieval".to_string(),
        );
        // s1: median of {2, 5} = 3.5, half down -> 3.
        assert_eq!(pairs[&key], vec![(3.0, 3.0), (2.0, 2.0)]);
        assert_eq!(pairs.len(), 1);
    }
}
