//! The weighted pair table every pairwise metric is computed from.
//!
//! Every pairwise metric here is a function of the *multiset* of `(ai, human)` pairs, so
//! items with the same pair of scores are interchangeable. The table stores each distinct
//! pair once (a "cell") and a metric reads per-cell counts. That makes one code path serve
//! both the point estimate (counts = multiplicities) and each bootstrap resample (counts =
//! how often the resample drew each cell), and it makes a resample cost O(n) to draw plus
//! O(cells) to evaluate, with no sorting: the distinct values are sorted once, up front.
//! On a rubric scale there are at most `k^2` cells (25 on a 1-5 scale).

use super::error::CalibrationError;
use super::kappa::{category, kappa_from_flat, KappaWeights};

/// Distinct `(ai, human)` pairs and which cell each item falls in.
#[derive(Debug, Clone)]
pub(crate) struct PairTable {
    /// Distinct AI values, ascending.
    pub x_levels: Vec<f64>,
    /// Distinct human values, ascending.
    pub y_levels: Vec<f64>,
    /// Distinct `(x level, y level)` index pairs, sorted by x then y.
    pub cells: Vec<(u32, u32)>,
    /// The cell of each item, in input order.
    pub item_cell: Vec<u32>,
    /// How many items fall in each cell.
    pub base_counts: Vec<u64>,
}

fn levels(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn level_of(levels: &[f64], v: f64) -> u32 {
    // Every value is in `levels` by construction, so the search always succeeds; falling
    // back to the insertion point keeps this total without an unwrap.
    match levels.binary_search_by(|l| l.total_cmp(&v)) {
        Ok(i) | Err(i) => i as u32,
    }
}

impl PairTable {
    /// Builds the table; both slices must have the same length and finite values.
    pub fn new(ai: &[f64], human: &[f64]) -> Result<Self, CalibrationError> {
        if ai.len() != human.len() {
            return Err(CalibrationError::LengthMismatch {
                ai: ai.len(),
                human: human.len(),
            });
        }
        for (i, (a, h)) in ai.iter().zip(human).enumerate() {
            if !a.is_finite() || !h.is_finite() {
                return Err(CalibrationError::NonFinite { index: i });
            }
        }
        let x_levels = levels(ai);
        let y_levels = levels(human);
        let ly = y_levels.len() as u64;
        let keys: Vec<u64> = ai
            .iter()
            .zip(human)
            .map(|(&a, &h)| {
                u64::from(level_of(&x_levels, a)) * ly + u64::from(level_of(&y_levels, h))
            })
            .collect();
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut base_counts = vec![0u64; distinct.len()];
        let item_cell: Vec<u32> = keys
            .iter()
            .map(|k| {
                let c = match distinct.binary_search(k) {
                    Ok(i) | Err(i) => i,
                };
                base_counts[c] += 1;
                c as u32
            })
            .collect();
        let cells = distinct
            .iter()
            .map(|&k| ((k / ly.max(1)) as u32, (k % ly.max(1)) as u32))
            .collect();
        Ok(Self {
            x_levels,
            y_levels,
            cells,
            item_cell,
            base_counts,
        })
    }

    /// The scale category `(ai, human)` of every cell, for the categorical metrics.
    pub fn categories(&self, scale: (i64, i64)) -> Result<Vec<(usize, usize)>, CalibrationError> {
        let xc = self
            .x_levels
            .iter()
            .enumerate()
            .map(|(i, &v)| category(v, scale, i))
            .collect::<Result<Vec<_>, _>>()?;
        let yc = self
            .y_levels
            .iter()
            .enumerate()
            .map(|(i, &v)| category(v, scale, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .cells
            .iter()
            .map(|&(x, y)| (xc[x as usize], yc[y as usize]))
            .collect())
    }
}

/// Means and centred sums of squares of a weighted table, plus the difference sums.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Moments {
    pub n: u64,
    pub mean_x: f64,
    pub mean_y: f64,
    /// `sum w (x - mean_x)^2`
    pub sxx: f64,
    /// `sum w (y - mean_y)^2`
    pub syy: f64,
    /// `sum w (x - mean_x)(y - mean_y)`
    pub sxy: f64,
    /// `sum w |x - y|`
    pub sum_abs: f64,
    /// `sum w (x - y)^2`
    pub sum_sq: f64,
    /// `sum w (x - y)`
    pub sum_diff: f64,
}

/// Two passes over the cells (means first, then centred sums) so the sums of squares do
/// not suffer the cancellation of the one-pass `sum x^2 - n mean^2` form.
pub(crate) fn moments(t: &PairTable, counts: &[u64], xv: &[f64], yv: &[f64]) -> Moments {
    let mut m = Moments::default();
    let (mut sx, mut sy) = (0.0, 0.0);
    for (c, &(xi, yi)) in t.cells.iter().enumerate() {
        let w = counts[c];
        if w == 0 {
            continue;
        }
        m.n += w;
        let wf = w as f64;
        sx += wf * xv[xi as usize];
        sy += wf * yv[yi as usize];
    }
    if m.n == 0 {
        return m;
    }
    m.mean_x = sx / m.n as f64;
    m.mean_y = sy / m.n as f64;
    for (c, &(xi, yi)) in t.cells.iter().enumerate() {
        let w = counts[c];
        if w == 0 {
            continue;
        }
        let wf = w as f64;
        let (x, y) = (xv[xi as usize], yv[yi as usize]);
        let (dx, dy) = (x - m.mean_x, y - m.mean_y);
        m.sxx += wf * dx * dx;
        m.syy += wf * dy * dy;
        m.sxy += wf * dx * dy;
        let d = x - y;
        m.sum_abs += wf * d.abs();
        m.sum_sq += wf * d * d;
        m.sum_diff += wf * d;
    }
    m
}

/// How many x levels and y levels carry positive weight; a correlation needs two of each.
/// Counting levels (rather than testing a float variance against zero) detects a constant
/// variable exactly.
fn distinct_used(t: &PairTable, counts: &[u64]) -> (usize, usize) {
    let mut xs = vec![false; t.x_levels.len()];
    let mut ys = vec![false; t.y_levels.len()];
    for (c, &(xi, yi)) in t.cells.iter().enumerate() {
        if counts[c] > 0 {
            xs[xi as usize] = true;
            ys[yi as usize] = true;
        }
    }
    (
        xs.iter().filter(|&&b| b).count(),
        ys.iter().filter(|&&b| b).count(),
    )
}

/// Turns non-finite results into `None`: the JSON never carries a NaN.
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Pearson's r of the weighted table over the given per-level values.
fn pearson_with(t: &PairTable, counts: &[u64], xv: &[f64], yv: &[f64]) -> Option<f64> {
    let (ux, uy) = distinct_used(t, counts);
    if ux < 2 || uy < 2 {
        return None;
    }
    let m = moments(t, counts, xv, yv);
    finite(m.sxy / (m.sxx * m.syy).sqrt()).map(|r| r.clamp(-1.0, 1.0))
}

/// Pearson's product-moment correlation r.
pub(crate) fn pearson(t: &PairTable, counts: &[u64]) -> Option<f64> {
    pearson_with(t, counts, &t.x_levels, &t.y_levels)
}

/// Mid-ranks (1-based, ties get the average of the ranks they span) of each level given
/// its weight: level `l` with `c_l` items after `C` smaller ones gets `C + (c_l + 1) / 2`.
fn midranks(level_counts: &[u64]) -> Vec<f64> {
    let mut cum = 0u64;
    level_counts
        .iter()
        .map(|&c| {
            let r = cum as f64 + (c as f64 + 1.0) / 2.0;
            cum += c;
            r
        })
        .collect()
}

/// Spearman's rho: Pearson's r of the mid-ranks (average ranks for ties), the definition
/// scipy.stats.spearmanr uses. Ranks come from the per-level counts, so no sort is needed.
pub(crate) fn spearman(t: &PairTable, counts: &[u64]) -> Option<f64> {
    let mut cx = vec![0u64; t.x_levels.len()];
    let mut cy = vec![0u64; t.y_levels.len()];
    for (c, &(xi, yi)) in t.cells.iter().enumerate() {
        cx[xi as usize] += counts[c];
        cy[yi as usize] += counts[c];
    }
    pearson_with(t, counts, &midranks(&cx), &midranks(&cy))
}

/// Kendall's tau-b (Kendall 1945), the tie-corrected tau that scipy.stats.kendalltau
/// returns by default:
///
/// ```text
/// tau_b = (P - Q) / sqrt((n0 - n1) (n0 - n2))
/// n0 = n(n-1)/2,  n1 = sum over x-tie groups t(t-1)/2,  n2 = the same for y
/// ```
///
/// P (concordant) and Q (discordant) are counted over cells in x order with a Fenwick tree
/// over the y levels: O(cells * log(y levels)), exact integer arithmetic.
pub(crate) fn kendall_tau_b(t: &PairTable, counts: &[u64]) -> Option<f64> {
    let ly = t.y_levels.len();
    let mut fenwick = vec![0u64; ly + 1];
    let prefix = |f: &[u64], mut i: usize| -> u64 {
        // sum of weights at y levels 0..i
        let mut s = 0;
        while i > 0 {
            s += f[i];
            i &= i - 1;
        }
        s
    };
    let (mut concordant, mut discordant) = (0u128, 0u128);
    let mut seen: u64 = 0; // weight at smaller x levels
    let mut tx: u128 = 0; // sum over x groups w(w-1)/2
    let mut ty_counts = vec![0u64; ly];
    let mut start = 0;
    while start < t.cells.len() {
        let x = t.cells[start].0;
        let mut end = start;
        let mut group: u64 = 0;
        while end < t.cells.len() && t.cells[end].0 == x {
            let w = counts[end];
            if w > 0 {
                let y = t.cells[end].1 as usize;
                let below = prefix(&fenwick, y);
                let above = seen - prefix(&fenwick, y + 1);
                concordant += u128::from(w) * u128::from(below);
                discordant += u128::from(w) * u128::from(above);
                group += w;
                ty_counts[y] += w;
            }
            end += 1;
        }
        for (&(_, y), &w) in t.cells[start..end].iter().zip(&counts[start..end]) {
            if w > 0 {
                let mut i = y as usize + 1;
                while i <= ly {
                    fenwick[i] += w;
                    i += i & i.wrapping_neg();
                }
            }
        }
        seen += group;
        tx += u128::from(group) * u128::from(group.saturating_sub(1)) / 2;
        start = end;
    }
    let n = u128::from(seen);
    let n0 = n * n.saturating_sub(1) / 2;
    let ty: u128 = ty_counts
        .iter()
        .map(|&c| u128::from(c) * u128::from(c.saturating_sub(1)) / 2)
        .sum();
    let (a, b) = (n0 - tx.min(n0), n0 - ty.min(n0));
    if a == 0 || b == 0 {
        return None;
    }
    let num = concordant as f64 - discordant as f64;
    finite(num / ((a as f64) * (b as f64)).sqrt()).map(|r| r.clamp(-1.0, 1.0))
}

/// The flat `k x k` confusion counts (rows human category, columns AI category).
pub(crate) fn confusion_flat(cats: &[(usize, usize)], counts: &[u64], k: usize) -> Vec<u64> {
    let mut flat = vec![0u64; k * k];
    for (c, &(xa, yh)) in cats.iter().enumerate() {
        flat[yh * k + xa] += counts[c];
    }
    flat
}

/// Every pairwise figure of one weighted table, in the order of [`super::PairwiseMetrics`].
pub(crate) fn all_metrics(
    t: &PairTable,
    cats: &[(usize, usize)],
    k: usize,
    counts: &[u64],
) -> super::PairwiseMetrics {
    let m = moments(t, counts, &t.x_levels, &t.y_levels);
    let n = m.n;
    let nf = n as f64;
    let flat = confusion_flat(cats, counts, k);
    let (mut exact, mut adjacent) = (0u64, 0u64);
    for r in 0..k {
        for c in 0..k {
            let v = flat[r * k + c];
            if r == c {
                exact += v;
            }
            if r.abs_diff(c) <= 1 {
                adjacent += v;
            }
        }
    }
    let has = n > 0;
    // Standardized mean difference with the pooled SD of Williamson, Xi & Breyer (2012):
    // sqrt((s_ai^2 + s_human^2) / 2), sample variances (n - 1 denominators).
    let smd = if n >= 2 {
        let pooled = ((m.sxx + m.syy) / (2.0 * (nf - 1.0))).sqrt();
        let (ux, uy) = distinct_used(t, counts);
        if ux < 2 && uy < 2 {
            None
        } else {
            finite((m.mean_x - m.mean_y) / pooled)
        }
    } else {
        None
    };
    super::PairwiseMetrics {
        n: n as usize,
        qwk: kappa_from_flat(k, &flat, KappaWeights::Quadratic),
        kappa_linear: kappa_from_flat(k, &flat, KappaWeights::Linear),
        kappa: kappa_from_flat(k, &flat, KappaWeights::Unweighted),
        spearman: spearman(t, counts),
        pearson: pearson(t, counts),
        kendall_tau_b: kendall_tau_b(t, counts),
        mae: has.then(|| m.sum_abs / nf),
        rmse: has.then(|| (m.sum_sq / nf).sqrt()),
        bias: has.then(|| m.sum_diff / nf),
        smd,
        exact: has.then(|| exact as f64 / nf),
        adjacent: has.then(|| adjacent as f64 / nf),
    }
}

#[cfg(test)]
mod tests {
    //! The table-based algorithms against the textbook O(n^2) / sort-based definitions on
    //! random data with many ties and non-integer values.
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn naive_pearson(x: &[f64], y: &[f64]) -> Option<f64> {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
    }

    fn naive_ranks(v: &[f64]) -> Vec<f64> {
        v.iter()
            .map(|a| {
                let less = v.iter().filter(|b| *b < a).count() as f64;
                let equal = v.iter().filter(|b| *b == a).count() as f64;
                less + (equal + 1.0) / 2.0
            })
            .collect()
    }

    fn naive_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
        let (mut p, mut q, mut tx, mut ty) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
                if dx == 0.0 {
                    tx += 1.0;
                }
                if dy == 0.0 {
                    ty += 1.0;
                }
                if dx * dy > 0.0 {
                    p += 1.0;
                } else if dx * dy < 0.0 {
                    q += 1.0;
                }
            }
        }
        let n0 = (x.len() * x.len().saturating_sub(1) / 2) as f64;
        let d = ((n0 - tx) * (n0 - ty)).sqrt();
        (d > 0.0).then(|| (p - q) / d)
    }

    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-10,
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn table_algorithms_match_naive_definitions() {
        let mut rng = StdRng::seed_from_u64(5);
        for round in 0..200 {
            let n = rng.random_range(0..40);
            let levels = rng.random_range(1..6);
            let draw = |rng: &mut StdRng| f64::from(rng.random_range(0..levels)) * 0.5 + 1.0;
            let x: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
            let y: Vec<f64> = x
                .iter()
                .map(|v| {
                    if rng.random_bool(0.6) {
                        *v
                    } else {
                        draw(&mut rng)
                    }
                })
                .collect();
            let t = PairTable::new(&x, &y).expect("valid");
            let w = &t.base_counts;
            assert!(
                same(pearson(&t, w), naive_pearson(&x, &y)),
                "pearson, round {round}"
            );
            let (rx, ry) = (naive_ranks(&x), naive_ranks(&y));
            assert!(
                same(spearman(&t, w), naive_pearson(&rx, &ry)),
                "spearman, round {round}"
            );
            assert!(
                same(kendall_tau_b(&t, w), naive_tau_b(&x, &y)),
                "tau-b, round {round}"
            );
        }
    }

    #[test]
    fn resample_counts_are_multiplicities() {
        // Weighting a cell by 2 is the same as listing its item twice.
        let t = PairTable::new(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).expect("valid");
        let doubled = PairTable::new(&[1.0, 1.0, 2.0, 3.0], &[1.0, 1.0, 3.0, 2.0]).expect("valid");
        let counts: Vec<u64> = t
            .cells
            .iter()
            .map(|&(x, _)| if t.x_levels[x as usize] == 1.0 { 2 } else { 1 })
            .collect();
        let cats = t.categories((1, 3)).expect("in scale");
        let dcats = doubled.categories((1, 3)).expect("in scale");
        assert_eq!(
            all_metrics(&t, &cats, 3, &counts),
            all_metrics(&doubled, &dcats, 3, &doubled.base_counts)
        );
    }
}
