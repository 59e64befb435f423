//! Is the candidate prompt worse than the baseline? A PAIRED bootstrap of the QWK difference.
//!
//! Both prompt versions graded the same items, so their errors are correlated (a hard item
//! is hard for both). Comparing two independent intervals would ignore that and miss real
//! regressions; resampling ITEMS and recomputing both QWKs on the same resample keeps the
//! pairing. Per resample `b`: draw `n` items with replacement, compute
//! `d_b = QWK(candidate) - QWK(baseline)` against the human consensus on those items.
//!
//! Reported: the difference on all items, its 95% percentile interval (type-7 quantiles, as
//! in `calibration::bootstrap`), and `p_not_better`, the share of resamples with `d_b <= 0`
//! (a one-sided, p-value-like figure for "the candidate is better"; near 1 means it is
//! probably worse). "Significantly worse" is the interval's upper bound below 0. Resamples in
//! which either QWK is undefined (e.g. every drawn item has the same score) are left out.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::calibration::kappa::{category, kappa_from_flat, KappaWeights};
use crate::calibration::{percentile, CalibrationError, CI_LEVEL};

/// The paired comparison of two prompt versions on one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PairedComparison {
    /// Items both versions scored and the humans graded.
    pub n: usize,
    pub candidate_qwk: Option<f64>,
    pub baseline_qwk: Option<f64>,
    /// `candidate_qwk - baseline_qwk` on all `n` items.
    pub diff: Option<f64>,
    /// 95% percentile bootstrap interval of the difference.
    pub ci: Option<[f64; 2]>,
    /// Share of resamples with difference <= 0.
    pub p_not_better: Option<f64>,
    /// Resamples requested, and those in which both QWKs were defined.
    pub resamples: usize,
    pub resamples_used: usize,
    /// The interval's upper bound is below 0.
    pub significantly_worse: bool,
}

/// QWK from per-item category pairs, counted with multiplicity `weights[i]`.
fn qwk_of(cats: &[(usize, usize)], counts: &[u64], k: usize) -> Option<f64> {
    let mut flat = vec![0u64; k * k];
    for (&(ai, human), &c) in cats.iter().zip(counts) {
        flat[human * k + ai] += c;
    }
    kappa_from_flat(k, &flat, KappaWeights::Quadratic)
}

fn categories(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
) -> Result<Vec<(usize, usize)>, CalibrationError> {
    ai.iter()
        .zip(human)
        .enumerate()
        .map(|(i, (&a, &h))| Ok((category(a, scale, i)?, category(h, scale, i)?)))
        .collect()
}

/// The paired bootstrap of `QWK(candidate) - QWK(baseline)`, both against `human`, over
/// `resamples` seeded resamples of the items. The three slices are parallel (item `i` in
/// each); scores are on `scale` (non-integer scores fall in the category they round to,
/// halves down, as everywhere in `calibration`).
pub fn paired_qwk_bootstrap(
    candidate: &[f64],
    baseline: &[f64],
    human: &[f64],
    scale: (i64, i64),
    resamples: usize,
    seed: u64,
) -> Result<PairedComparison, CalibrationError> {
    if candidate.len() != human.len() {
        return Err(CalibrationError::LengthMismatch {
            ai: candidate.len(),
            human: human.len(),
        });
    }
    if baseline.len() != human.len() {
        return Err(CalibrationError::LengthMismatch {
            ai: baseline.len(),
            human: human.len(),
        });
    }
    if scale.0 > scale.1 {
        return Err(CalibrationError::InvalidScale {
            min: scale.0,
            max: scale.1,
        });
    }
    let k = (scale.1 - scale.0 + 1) as usize;
    let cand = categories(candidate, human, scale)?;
    let base = categories(baseline, human, scale)?;
    let n = human.len();
    let ones = vec![1u64; n];
    let candidate_qwk = qwk_of(&cand, &ones, k);
    let baseline_qwk = qwk_of(&base, &ones, k);
    let diff = candidate_qwk.zip(baseline_qwk).map(|(c, b)| c - b);
    let mut out = PairedComparison {
        n,
        candidate_qwk,
        baseline_qwk,
        diff,
        resamples,
        ..PairedComparison::default()
    };
    if n == 0 || resamples == 0 {
        return Ok(out);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut diffs = Vec::with_capacity(resamples);
    let mut counts = vec![0u64; n];
    for _ in 0..resamples {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..n {
            counts[rng.random_range(0..n)] += 1;
        }
        if let (Some(c), Some(b)) = (qwk_of(&cand, &counts, k), qwk_of(&base, &counts, k)) {
            diffs.push(c - b);
        }
    }
    out.resamples_used = diffs.len();
    if diffs.is_empty() {
        return Ok(out);
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - CI_LEVEL) / 2.0;
    let lo = percentile(&diffs, tail);
    let hi = percentile(&diffs, 1.0 - tail);
    out.ci = lo.zip(hi).map(|(l, h)| [l, h]);
    out.p_not_better =
        Some(diffs.iter().filter(|&&d| d <= 0.0).count() as f64 / diffs.len() as f64);
    out.significantly_worse = out.ci.is_some_and(|[_, h]| h < 0.0);
    Ok(out)
}
