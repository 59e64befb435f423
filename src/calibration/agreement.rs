//! The pairwise agreement figures of one rater against a reference.
//!
//! Conventions shared by every function here:
//! - the first operand (`ai`) is the rater under test, the second (`human`) the reference,
//!   so `bias = mean(ai - human)`: positive means the AI is more lenient;
//! - the categorical figures (kappas, exact, adjacent, confusion) put a non-integer score in
//!   the category it rounds to, halves down ([`super::round_half_down`]); the continuous
//!   figures (correlations, MAE, RMSE, bias, SMD) use the raw values;
//! - an undefined figure (no pairs, zero variance) is `None`, never NaN.

use serde::{Deserialize, Serialize};

use super::error::CalibrationError;
use super::kappa::check_scale;
use super::table::{self, PairTable};

/// One scored item: the AI's score and the (consensus) human score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub item: String,
    pub ai: f64,
    pub human: f64,
}

/// Every pairwise figure of a rater against a reference, over the same `n` items.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PairwiseMetrics {
    /// Number of paired items.
    pub n: usize,
    /// Quadratic-weighted kappa over the full scale.
    pub qwk: Option<f64>,
    /// Linear-weighted kappa over the full scale.
    pub kappa_linear: Option<f64>,
    /// Unweighted Cohen's kappa.
    pub kappa: Option<f64>,
    /// Spearman's rho with average ranks for ties.
    pub spearman: Option<f64>,
    /// Pearson's r.
    pub pearson: Option<f64>,
    /// Kendall's tau-b.
    pub kendall_tau_b: Option<f64>,
    /// Mean absolute error `mean |ai - human|`.
    pub mae: Option<f64>,
    /// Root mean squared error `sqrt(mean (ai - human)^2)`.
    pub rmse: Option<f64>,
    /// Mean signed difference `mean (ai - human)`.
    pub bias: Option<f64>,
    /// Standardized mean difference `(mean ai - mean human) / sqrt((s_ai^2 + s_human^2)/2)`.
    pub smd: Option<f64>,
    /// Share of items whose categories are equal.
    pub exact: Option<f64>,
    /// Share of items whose categories differ by at most one.
    pub adjacent: Option<f64>,
}

impl PairwiseMetrics {
    /// The twelve figures (all but `n`) as `(name, value)` in the JSON order, for tables
    /// and CIs.
    pub fn figures(&self) -> [(&'static str, Option<f64>); 12] {
        [
            ("qwk", self.qwk),
            ("kappa_linear", self.kappa_linear),
            ("kappa", self.kappa),
            ("spearman", self.spearman),
            ("pearson", self.pearson),
            ("kendall_tau_b", self.kendall_tau_b),
            ("mae", self.mae),
            ("rmse", self.rmse),
            ("bias", self.bias),
            ("smd", self.smd),
            ("exact", self.exact),
            ("adjacent", self.adjacent),
        ]
    }
}

/// Every pairwise figure of `ai` against `human` over the full `scale` (inclusive).
///
/// Errors when the slices differ in length, or a score is non-finite or outside the scale.
pub fn pairwise(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
) -> Result<PairwiseMetrics, CalibrationError> {
    check_scale(scale)?;
    let t = PairTable::new(ai, human)?;
    let cats = t.categories(scale)?;
    let k = (scale.1 - scale.0 + 1) as usize;
    Ok(table::all_metrics(&t, &cats, k, &t.base_counts))
}

/// [`pairwise`] over [`Pair`]s.
pub fn pairwise_pairs(
    pairs: &[Pair],
    scale: (i64, i64),
) -> Result<PairwiseMetrics, CalibrationError> {
    let ai: Vec<f64> = pairs.iter().map(|p| p.ai).collect();
    let human: Vec<f64> = pairs.iter().map(|p| p.human).collect();
    pairwise(&ai, &human, scale)
}

/// Pearson's product-moment correlation; `None` for fewer than two distinct values on
/// either side (zero variance).
pub fn pearson(x: &[f64], y: &[f64]) -> Result<Option<f64>, CalibrationError> {
    let t = PairTable::new(x, y)?;
    Ok(table::pearson(&t, &t.base_counts))
}

/// Spearman's rho: Pearson's r of the mid-ranks (ties get the average of their ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<Option<f64>, CalibrationError> {
    let t = PairTable::new(x, y)?;
    Ok(table::spearman(&t, &t.base_counts))
}

/// Kendall's tau-b, the tie-corrected tau (see the module `table` for the formula).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<Option<f64>, CalibrationError> {
    let t = PairTable::new(x, y)?;
    Ok(table::kendall_tau_b(&t, &t.base_counts))
}

fn diffs(ai: &[f64], human: &[f64]) -> Result<Vec<f64>, CalibrationError> {
    // Reuse the table's validation (length, finiteness) for one error vocabulary.
    PairTable::new(ai, human)?;
    Ok(ai.iter().zip(human).map(|(a, h)| a - h).collect())
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean absolute error `mean |ai - human|`; `None` without pairs.
pub fn mae(ai: &[f64], human: &[f64]) -> Result<Option<f64>, CalibrationError> {
    let d = diffs(ai, human)?;
    Ok(mean(&d.iter().map(|x| x.abs()).collect::<Vec<_>>()))
}

/// Root mean squared error `sqrt(mean (ai - human)^2)`; `None` without pairs.
pub fn rmse(ai: &[f64], human: &[f64]) -> Result<Option<f64>, CalibrationError> {
    let d = diffs(ai, human)?;
    Ok(mean(&d.iter().map(|x| x * x).collect::<Vec<_>>()).map(f64::sqrt))
}

/// Mean signed bias `mean (ai - human)`: positive means the AI scores higher.
pub fn mean_bias(ai: &[f64], human: &[f64]) -> Result<Option<f64>, CalibrationError> {
    Ok(mean(&diffs(ai, human)?))
}

/// Standardized mean difference `(mean ai - mean human) / s_pooled` with
/// `s_pooled = sqrt((s_ai^2 + s_human^2) / 2)` and sample variances (n - 1).
///
/// This is the pooled SD of Williamson, Xi & Breyer (2012), "A Framework for Evaluation
/// and Use of Automated Scoring" (the source of the |SMD| <= 0.15 gate). `None` for fewer
/// than two pairs or when both raters gave one constant score.
pub fn smd(ai: &[f64], human: &[f64]) -> Result<Option<f64>, CalibrationError> {
    let t = PairTable::new(ai, human)?;
    // Any in-range scale works: SMD ignores categories.
    let m = table::moments(&t, &t.base_counts, &t.x_levels, &t.y_levels);
    if m.n < 2 || (t.x_levels.len() < 2 && t.y_levels.len() < 2) {
        return Ok(None);
    }
    let pooled = ((m.sxx + m.syy) / (2.0 * (m.n as f64 - 1.0))).sqrt();
    Ok(table::finite((m.mean_x - m.mean_y) / pooled))
}

/// Share of pairs in the same scale category; `None` without pairs.
pub fn exact_agreement(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
) -> Result<Option<f64>, CalibrationError> {
    Ok(pairwise(ai, human, scale)?.exact)
}

/// Share of pairs whose categories differ by at most one (`|d| <= 1`); `None` without pairs.
pub fn adjacent_agreement(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
) -> Result<Option<f64>, CalibrationError> {
    Ok(pairwise(ai, human, scale)?.adjacent)
}
