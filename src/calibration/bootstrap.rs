//! Seeded percentile bootstrap confidence intervals that resample ITEMS.
//!
//! Each resample draws `n` items with replacement from the `n` paired items, keeping each
//! item's AI and human score together (a paired bootstrap), and recomputes every pairwise
//! figure. The interval is the percentile interval (Efron & Tibshirani 1993, ch. 13): the
//! 2.5th and 97.5th percentiles of the resampled figures, with linear interpolation between
//! order statistics (numpy's default "linear" / Hyndman-Fan type 7). Resamples in which a
//! figure is undefined (e.g. every drawn item has the same score) are left out of that
//! figure's percentiles; a figure undefined in every resample has no interval.
//!
//! All twelve pairwise figures get intervals, the rank correlations included: a resample
//! only re-counts how often each distinct `(ai, human)` pair was drawn (see `table`), so no
//! figure needs a sort per resample. Krippendorff's alpha (a multi-rater figure) and the
//! human ceiling get no interval.
//!
//! Determinism: resample `b` uses its own `StdRng::seed_from_u64(mix(seed, b))`, so the
//! result depends only on the seed and the data, not on how many threads ran it.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use super::agreement::PairwiseMetrics;
use super::error::CalibrationError;
use super::kappa::check_scale;
use super::table::{self, PairTable};

/// The confidence level of every interval.
pub const CI_LEVEL: f64 = 0.95;

/// A 95% percentile interval `[lo, hi]` per pairwise figure; `None` where undefined.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfidenceIntervals {
    pub qwk: Option<[f64; 2]>,
    pub kappa_linear: Option<[f64; 2]>,
    pub kappa: Option<[f64; 2]>,
    pub spearman: Option<[f64; 2]>,
    pub pearson: Option<[f64; 2]>,
    pub kendall_tau_b: Option<[f64; 2]>,
    pub mae: Option<[f64; 2]>,
    pub rmse: Option<[f64; 2]>,
    pub bias: Option<[f64; 2]>,
    pub smd: Option<[f64; 2]>,
    pub exact: Option<[f64; 2]>,
    pub adjacent: Option<[f64; 2]>,
}

impl ConfidenceIntervals {
    /// The interval of a figure by its JSON name.
    pub fn get(&self, figure: &str) -> Option<[f64; 2]> {
        match figure {
            "qwk" => self.qwk,
            "kappa_linear" => self.kappa_linear,
            "kappa" => self.kappa,
            "spearman" => self.spearman,
            "pearson" => self.pearson,
            "kendall_tau_b" => self.kendall_tau_b,
            "mae" => self.mae,
            "rmse" => self.rmse,
            "bias" => self.bias,
            "smd" => self.smd,
            "exact" => self.exact,
            "adjacent" => self.adjacent,
            _ => None,
        }
    }

    fn from_columns(cols: Vec<Vec<f64>>) -> Self {
        let mut ci = cols.into_iter().map(|mut v| {
            v.sort_by(f64::total_cmp);
            let lo = percentile(&v, (1.0 - CI_LEVEL) / 2.0)?;
            let hi = percentile(&v, 1.0 - (1.0 - CI_LEVEL) / 2.0)?;
            Some([lo, hi])
        });
        let mut next = || ci.next().flatten();
        Self {
            qwk: next(),
            kappa_linear: next(),
            kappa: next(),
            spearman: next(),
            pearson: next(),
            kendall_tau_b: next(),
            mae: next(),
            rmse: next(),
            bias: next(),
            smd: next(),
            exact: next(),
            adjacent: next(),
        }
    }
}

/// The `q` quantile (0..=1) of ascending `sorted` values by linear interpolation between
/// order statistics (Hyndman & Fan type 7); `None` for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// SplitMix64 (Steele, Lea & Flood 2014): a cheap bijective mixer, used to derive one
/// independent seed per resample from the user's seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One resample's figures.
fn resample(
    t: &PairTable,
    cats: &[(usize, usize)],
    k: usize,
    seed: u64,
    b: u64,
) -> PairwiseMetrics {
    let mut rng = StdRng::seed_from_u64(mix(mix(seed) ^ b));
    let n = t.item_cell.len();
    let mut counts = vec![0u64; t.cells.len()];
    match u32::try_from(n) {
        Ok(n32) => {
            for _ in 0..n {
                counts[t.item_cell[uniform_index(&mut rng, n32)] as usize] += 1;
            }
        }
        Err(_) => {
            for _ in 0..n {
                counts[t.item_cell[rng.random_range(0..n)] as usize] += 1;
            }
        }
    }
    table::all_metrics(t, cats, k, &counts)
}

/// An exactly uniform index in `0..n` from 32-bit draws: Lemire (2019), "Fast Random
/// Integer Generation in an Interval", multiply-shift with rejection of the biased low
/// products. About twice as fast as `random_range` here, which is the bootstrap's hot loop.
#[inline]
fn uniform_index(rng: &mut StdRng, n: u32) -> usize {
    let mut m = u64::from(rng.next_u32()) * u64::from(n);
    if (m as u32) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * u64::from(n);
        }
    }
    (m >> 32) as usize
}

/// Bootstrap intervals from a prepared table (shared with `report`).
pub(crate) fn intervals(
    t: &PairTable,
    cats: &[(usize, usize)],
    k: usize,
    resamples: usize,
    seed: u64,
) -> ConfidenceIntervals {
    if resamples == 0 || t.item_cell.is_empty() {
        return ConfidenceIntervals::default();
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, resamples);
    let chunk = resamples.div_ceil(threads);
    let mut results: Vec<PairwiseMetrics> = vec![PairwiseMetrics::default(); resamples];
    std::thread::scope(|s| {
        for (ci, out) in results.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                for (j, slot) in out.iter_mut().enumerate() {
                    *slot = resample(t, cats, k, seed, (ci * chunk + j) as u64);
                }
            });
        }
    });
    let mut cols: Vec<Vec<f64>> = (0..12).map(|_| Vec::with_capacity(resamples)).collect();
    for r in &results {
        for (col, (_, v)) in cols.iter_mut().zip(r.figures()) {
            if let Some(v) = v {
                col.push(v);
            }
        }
    }
    ConfidenceIntervals::from_columns(cols)
}

/// Seeded percentile bootstrap 95% intervals of every pairwise figure of `ai` against
/// `human`, resampling paired items `resamples` times. `resamples == 0` gives no intervals.
pub fn bootstrap_ci(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
    resamples: usize,
    seed: u64,
) -> Result<ConfidenceIntervals, CalibrationError> {
    check_scale(scale)?;
    let t = PairTable::new(ai, human)?;
    let cats = t.categories(scale)?;
    let k = (scale.1 - scale.0 + 1) as usize;
    Ok(intervals(&t, &cats, k, resamples, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_index_covers_the_range_evenly() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut hist = [0u32; 7];
        for _ in 0..70_000 {
            hist[uniform_index(&mut rng, 7)] += 1;
        }
        // each bucket expects 10,000; 5 sigma is about 450
        assert!(
            hist.iter().all(|&h| (9_500..=10_500).contains(&h)),
            "{hist:?}"
        );
        assert_eq!(uniform_index(&mut rng, 1), 0);
    }

    #[test]
    fn intervals_do_not_depend_on_the_thread_split() {
        // resample b is seeded from (seed, b) alone: resample 3 alone equals resample 3 in a run
        let ai = [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 5.0, 1.0];
        let human = [1.0, 3.0, 3.0, 4.0, 2.0, 2.0, 4.0, 2.0];
        let t = PairTable::new(&ai, &human).expect("valid");
        let cats = t.categories((1, 5)).expect("in scale");
        assert_eq!(resample(&t, &cats, 5, 9, 3), resample(&t, &cats, 5, 9, 3));
        assert_ne!(resample(&t, &cats, 5, 9, 3), resample(&t, &cats, 5, 9, 4));
    }
}
