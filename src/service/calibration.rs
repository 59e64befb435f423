//! Stored human grades turned into `crate::calibration` inputs: the one code path behind
//! `GET /v1/calibration` (http) and the calibration dashboard (web), so the JSON API and
//! the page can never disagree about which grade counts or which scale a dimension has.
//!
//! Each stored human grade is one rater's ratings; the AI's score on the same submission is
//! the rater [`AI_RATER`]. A person who graded a submission twice counts with their latest
//! grade. Scales come from the prompt versions in the registry (the union when several
//! versions share a dimension id), else from the observed scores.

use std::collections::{BTreeMap, BTreeSet};

use crate::calibration::{self, CalibrationError, DimensionReport, Rating};
use crate::prompts::Registry;
use crate::store::CalibrationRow;

/// The AI's rater name in the ratings handed to the metrics.
pub const AI_RATER: &str = "ai";
/// Bootstrap resamples when the caller does not say.
pub const DEFAULT_BOOTSTRAP: usize = 1_000;
/// The fixed bootstrap seed: the same grades always give the same intervals.
pub const SEED: u64 = 7;

/// Ratings in long form: one per (submission, dimension, person), the latest grade winning
/// (rows come oldest first), plus the AI's score per (submission, dimension).
pub fn ratings(rows: &[CalibrationRow]) -> Vec<Rating> {
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

/// Per-dimension scales from the prompt versions the rows name, widened to the observed
/// scores so no stored score is ever out of scale.
pub fn scales(
    registry: &Registry,
    rows: &[CalibrationRow],
    ratings: &[Rating],
) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut widen = |dim: &str, lo: i64, hi: i64| {
        let e = out.entry(dim.to_string()).or_insert((lo, hi));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
    };
    let mut seen = BTreeSet::new();
    for r in rows {
        if !seen.insert(r.prompt.clone()) {
            continue;
        }
        let Some((id, version)) = r.prompt.split_once('@') else {
            continue;
        };
        if let Some(pv) = registry.get(id, version) {
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

/// [`calibration::dimension_report`] for every dimension that has at least one rating,
/// each with its own result: one dimension that cannot be computed (e.g. no AI score on any
/// graded item) must not hide the others. CPU-bound (the bootstrap): call it off the async
/// workers.
pub fn dimension_reports(
    ratings: &[Rating],
    scales: &BTreeMap<String, (i64, i64)>,
    bootstrap: usize,
    seed: u64,
) -> BTreeMap<String, Result<DimensionReport, CalibrationError>> {
    let rated: BTreeSet<&str> = ratings.iter().map(|r| r.dimension.as_str()).collect();
    scales
        .iter()
        .filter(|(dim, _)| rated.contains(dim.as_str()))
        .map(|(dim, &scale)| {
            (
                dim.clone(),
                calibration::dimension_report(ratings, dim, AI_RATER, scale, bootstrap, seed),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Stage;
    use chrono::Utc;

    fn row(sub: &str, rater: &str, human: f64, ai: Option<f64>) -> CalibrationRow {
        CalibrationRow {
            submission_id: sub.to_string(),
            stage: Stage::SystemDesign,
            prompt: "nope@v0".to_string(),
            model: "m".to_string(),
            dimension: "d".to_string(),
            rater: rater.to_string(),
            human,
            ai,
            graded_at: Utc::now(),
        }
    }

    #[test]
    fn latest_grade_wins_and_a_person_named_ai_is_not_the_judge() {
        let rows = [
            row("s1", "kim", 1.0, Some(3.0)),
            row("s1", "kim", 2.0, Some(3.0)),
            row("s1", "ai", 4.0, Some(3.0)),
        ];
        let r = ratings(&rows);
        let get = |rater: &str| {
            r.iter()
                .filter(|x| x.rater == rater)
                .map(|x| x.score)
                .collect::<Vec<_>>()
        };
        assert_eq!(get("kim"), vec![2.0]);
        assert_eq!(get("human:ai"), vec![4.0]);
        assert_eq!(get(AI_RATER), vec![3.0]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn scales_fall_back_to_the_observed_range_and_reports_are_per_dimension() {
        let rows = [
            row("s1", "kim", 1.0, Some(3.0)),
            row("s2", "kim", 2.0, Some(2.0)),
        ];
        let r = ratings(&rows);
        let registry = Registry::from_versions(Vec::new(), BTreeMap::new());
        let s = match registry {
            Ok(reg) => scales(&reg, &rows, &r),
            Err(e) => panic!("empty registry: {e}"),
        };
        assert_eq!(s.get("d"), Some(&(1, 3)));
        let reports = dimension_reports(&r, &s, 0, SEED);
        let d = reports.get("d").map(|x| x.as_ref().map(|d| d.metrics.n));
        assert!(matches!(d, Some(Ok(2))), "{d:?}");
    }
}
