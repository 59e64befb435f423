//! Cohen's kappa (unweighted, linear- and quadratic-weighted) and the confusion matrix.
//!
//! Definition (Cohen 1960; Cohen 1968 for the weighted form), written with *disagreement*
//! weights `w_ij` so that one formula covers all three variants:
//!
//! ```text
//! kappa_w = 1 - (sum_ij w_ij * O_ij) / (sum_ij w_ij * E_ij),   E_ij = row_i * col_j / N
//! unweighted: w_ij = [i != j]    linear: w_ij = |i - j|    quadratic: w_ij = (i - j)^2
//! ```
//!
//! The usual normalisation of the weights by `(k-1)` or `(k-1)^2` cancels in the ratio, so it
//! is omitted. This is the definition scikit-learn's `cohen_kappa_score(weights=None |
//! "linear" | "quadratic")` implements.
//!
//! The categories are the rubric's FULL scale `min..=max`, including levels nobody used:
//! the weights depend on the distance between *score values*, so dropping an unused middle
//! level (as a label set built from the observed scores would) would make 1-vs-3 look like a
//! one-step disagreement. Counts and weights are kept as integers until the final division,
//! so a degenerate table (expected disagreement exactly zero) is detected exactly and
//! reported as `None` rather than as a NaN or a huge number.

use serde::{Deserialize, Serialize};

use super::error::CalibrationError;

/// Which disagreement weights a kappa uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KappaWeights {
    /// Cohen's kappa: every disagreement counts the same.
    Unweighted,
    /// Disagreement proportional to the distance between the two scores.
    Linear,
    /// Disagreement proportional to the squared distance (QWK).
    Quadratic,
}

impl KappaWeights {
    fn weight(self, i: usize, j: usize) -> u128 {
        let d = i.abs_diff(j) as u128;
        match self {
            KappaWeights::Unweighted => u128::from(d != 0),
            KappaWeights::Linear => d,
            KappaWeights::Quadratic => d * d,
        }
    }
}

/// Rounds to the nearest integer with exact halves going DOWN (2.5 -> 2, -1.5 -> -2).
///
/// This is the project's single rounding rule: the human consensus (an even number of
/// humans whose two middle scores differ by one) and the binning of non-integer scores
/// into scale categories both use it, so a score of 2.5 is treated the same everywhere.
pub fn round_half_down(x: f64) -> f64 {
    (x - 0.5).ceil()
}

/// Checks that a scale's bounds are in order.
pub(crate) fn check_scale(scale: (i64, i64)) -> Result<(), CalibrationError> {
    if scale.0 > scale.1 {
        return Err(CalibrationError::InvalidScale {
            min: scale.0,
            max: scale.1,
        });
    }
    Ok(())
}

/// The 0-based category index of `score` on `scale`: the score rounded half down, minus
/// the minimum. A non-finite score or one outside `[min, max]` is an error.
pub(crate) fn category(
    score: f64,
    scale: (i64, i64),
    index: usize,
) -> Result<usize, CalibrationError> {
    if !score.is_finite() {
        return Err(CalibrationError::NonFinite { index });
    }
    if score < scale.0 as f64 || score > scale.1 as f64 {
        return Err(CalibrationError::OutOfScale {
            location: String::new(),
            score,
            min: scale.0,
            max: scale.1,
        });
    }
    let rounded = round_half_down(score) as i64;
    // Clamped because rounding cannot leave [min, max] once the score is inside it, but a
    // clamp costs nothing and keeps the index in bounds whatever the float does.
    Ok((rounded.clamp(scale.0, scale.1) - scale.0) as usize)
}

/// A square table of counts over the scale's categories.
///
/// Rows are the reference rater (the human, or the human consensus), columns the rater
/// under test (the AI): `counts[h][a]` is the number of items the human put in
/// `labels[h]` and the AI in `labels[a]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// The scale's categories `min..=max`, in order; row and column `i` are `labels[i]`.
    pub labels: Vec<i64>,
    /// `counts[human][ai]`.
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// An all-zero matrix over the full scale.
    pub fn new(scale: (i64, i64)) -> Result<Self, CalibrationError> {
        check_scale(scale)?;
        let k = (scale.1 - scale.0 + 1) as usize;
        Ok(Self {
            labels: (scale.0..=scale.1).collect(),
            counts: vec![vec![0; k]; k],
        })
    }

    /// Tabulates paired scores; non-integer scores go to the category they round to
    /// (half down, see [`round_half_down`]).
    pub fn from_scores(
        ai: &[f64],
        human: &[f64],
        scale: (i64, i64),
    ) -> Result<Self, CalibrationError> {
        if ai.len() != human.len() {
            return Err(CalibrationError::LengthMismatch {
                ai: ai.len(),
                human: human.len(),
            });
        }
        let mut m = Self::new(scale)?;
        for (i, (&a, &h)) in ai.iter().zip(human).enumerate() {
            let ca = category(a, scale, i)?;
            let ch = category(h, scale, i)?;
            m.counts[ch][ca] += 1;
        }
        Ok(m)
    }

    /// Builds a matrix from flat row-major counts (`k * k` values).
    pub(crate) fn from_flat(labels: Vec<i64>, flat: &[u64]) -> Self {
        let k = labels.len();
        let counts = (0..k).map(|r| flat[r * k..(r + 1) * k].to_vec()).collect();
        Self { labels, counts }
    }

    /// The number of items tabulated.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Kappa of this table with the given weights; `None` when undefined.
    pub fn kappa(&self, weights: KappaWeights) -> Option<f64> {
        let k = self.labels.len();
        let flat: Vec<u64> = self.counts.iter().flatten().copied().collect();
        kappa_from_flat(k, &flat, weights)
    }
}

/// Kappa from a flat row-major `k x k` table (rows human, columns AI).
///
/// `None` when the table is empty or the expected disagreement is zero (both raters used a
/// single, identical category for every item: agreement beyond chance is then 0/0).
pub(crate) fn kappa_from_flat(k: usize, flat: &[u64], weights: KappaWeights) -> Option<f64> {
    let mut rows = vec![0u128; k];
    let mut cols = vec![0u128; k];
    let mut n: u128 = 0;
    for r in 0..k {
        for c in 0..k {
            let v = u128::from(flat[r * k + c]);
            rows[r] += v;
            cols[c] += v;
            n += v;
        }
    }
    if n == 0 {
        return None;
    }
    let mut observed: u128 = 0; // sum w_ij O_ij
    let mut expected: u128 = 0; // N * sum w_ij E_ij = sum w_ij row_i col_j
    for r in 0..k {
        for c in 0..k {
            let w = weights.weight(r, c);
            if w == 0 {
                continue;
            }
            observed += w * u128::from(flat[r * k + c]);
            expected += w * rows[r] * cols[c];
        }
    }
    if expected == 0 {
        return None;
    }
    // kappa = 1 - (observed / N) / (expected / N^2) = 1 - N * observed / expected
    Some(1.0 - (n as f64 * observed as f64) / expected as f64)
}

/// Kappa of paired scores over the full `scale`, e.g. `weighted_kappa(ai, human, (1, 5),
/// KappaWeights::Quadratic)` is the QWK.
pub fn weighted_kappa(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
    weights: KappaWeights,
) -> Result<Option<f64>, CalibrationError> {
    Ok(ConfusionMatrix::from_scores(ai, human, scale)?.kappa(weights))
}
