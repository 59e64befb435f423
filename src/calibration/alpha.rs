//! Krippendorff's alpha for any number of raters with missing values.
//!
//! Definition: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the
//! coincidence-matrix formulation. Only *pairable* values count: those in units that at
//! least two raters coded. With `m_u` pairable values in unit `u`,
//!
//! ```text
//! o_ck = sum_u (number of ordered pairs (c, k) of values in u) / (m_u - 1)
//! n_c  = sum_k o_ck,   n = sum_c n_c   (= the number of pairable values)
//! alpha = 1 - (n - 1) * sum_ck o_ck delta^2_ck / sum_ck n_c n_k delta^2_ck
//! ```
//!
//! with the metric differences
//! - nominal: `delta^2 = [c != k]`;
//! - interval: `delta^2 = (c - k)^2`;
//! - ordinal: `delta^2 = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2`.
//!
//! Computation without the `V x V` matrix: for interval data the sum of `o_ck delta^2` over
//! a unit equals `sum_{i,j} (v_i - v_j)^2 / (m_u - 1) = 2 m_u SS_u / (m_u - 1)`, and the
//! expected sum equals `2 n SS` over the pooled pairable values, where `SS` is a sum of
//! squared deviations from the mean. The ordinal `delta` is exactly the distance between
//! the mid-rank positions `r_g = sum_{h<g} n_h + n_g / 2` of the two values in the pooled
//! pairable distribution (`r_k - r_c = sum_{g=c..k} n_g - (n_c + n_k)/2`), so ordinal alpha
//! is interval alpha on those positions. This is O(values) and numerically stable; the
//! tests check it against the worked example of the 2011 paper.

/// The level of measurement, which picks the metric difference `delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlphaLevel {
    Nominal,
    Ordinal,
    Interval,
}

/// Krippendorff's alpha of a units x raters matrix (`data[unit][rater]`, `None` = missing).
///
/// Rows may have different lengths; non-finite values are treated as missing. `None` when
/// fewer than two pairable values exist or every pairable value is the same (the expected
/// disagreement is zero, alpha is 0/0).
pub fn krippendorff_alpha(data: &[Vec<Option<f64>>], level: AlphaLevel) -> Option<f64> {
    let units: Vec<Vec<f64>> = data
        .iter()
        .map(|row| {
            row.iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect::<Vec<f64>>()
        })
        .filter(|vals| vals.len() >= 2)
        .collect();
    let mut pooled: Vec<f64> = units.iter().flatten().copied().collect();
    let n = pooled.len();
    if n < 2 {
        return None;
    }
    pooled.sort_by(f64::total_cmp);
    let mut distinct = pooled.clone();
    distinct.dedup();
    if distinct.len() < 2 {
        return None;
    }
    let nf = n as f64;
    match level {
        AlphaLevel::Nominal => {
            // Observed: sum_u (m_u^2 - sum_c m_uc^2) / (m_u - 1); expected: n^2 - sum_c n_c^2.
            let sq_counts = |sorted: &[f64]| -> f64 {
                let mut total = 0.0;
                let mut i = 0;
                while i < sorted.len() {
                    let mut j = i;
                    while j < sorted.len() && sorted[j] == sorted[i] {
                        j += 1;
                    }
                    total += ((j - i) as f64).powi(2);
                    i = j;
                }
                total
            };
            let mut observed = 0.0;
            for u in &units {
                let mut s = u.clone();
                s.sort_by(f64::total_cmp);
                let m = s.len() as f64;
                observed += (m * m - sq_counts(&s)) / (m - 1.0);
            }
            let expected = nf * nf - sq_counts(&pooled);
            finite_alpha(nf, observed, expected)
        }
        AlphaLevel::Interval | AlphaLevel::Ordinal => {
            let position: Box<dyn Fn(f64) -> f64> = match level {
                AlphaLevel::Ordinal => {
                    // mid-rank position of each distinct value in the pooled distribution
                    let mut pos = Vec::with_capacity(distinct.len());
                    let mut below = 0usize;
                    let mut i = 0;
                    while i < pooled.len() {
                        let mut j = i;
                        while j < pooled.len() && pooled[j] == pooled[i] {
                            j += 1;
                        }
                        pos.push(below as f64 + (j - i) as f64 / 2.0);
                        below = j;
                        i = j;
                    }
                    let d = distinct.clone();
                    Box::new(
                        move |v: f64| match d.binary_search_by(|x| x.total_cmp(&v)) {
                            Ok(i) | Err(i) => pos[i.min(pos.len() - 1)],
                        },
                    )
                }
                _ => Box::new(|v: f64| v),
            };
            let ss = |vals: &mut dyn Iterator<Item = f64>| -> (f64, f64) {
                let v: Vec<f64> = vals.collect();
                let m = v.len() as f64;
                let mean = v.iter().sum::<f64>() / m;
                (m, v.iter().map(|x| (x - mean) * (x - mean)).sum())
            };
            let mut observed = 0.0;
            for u in &units {
                let (m, s) = ss(&mut u.iter().map(|&v| position(v)));
                observed += 2.0 * m * s / (m - 1.0);
            }
            let (_, s_all) = ss(&mut pooled.iter().map(|&v| position(v)));
            let expected = 2.0 * nf * s_all;
            finite_alpha(nf, observed, expected)
        }
    }
}

fn finite_alpha(n: f64, observed: f64, expected: f64) -> Option<f64> {
    if expected <= 0.0 {
        return None;
    }
    let a = 1.0 - (n - 1.0) * observed / expected;
    a.is_finite().then_some(a)
}

#[cfg(test)]
mod tests {
    //! The O(values) computation against the literal coincidence-matrix formulas of
    //! Krippendorff (2011) on random data with missing values.
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn by_matrix(data: &[Vec<Option<f64>>], level: AlphaLevel) -> Option<f64> {
        let units: Vec<Vec<f64>> = data
            .iter()
            .map(|r| r.iter().flatten().copied().collect::<Vec<_>>())
            .filter(|u| u.len() >= 2)
            .collect();
        let mut vals: Vec<f64> = units.iter().flatten().copied().collect();
        vals.sort_by(f64::total_cmp);
        vals.dedup();
        let v = vals.len();
        let idx = |x: f64| vals.iter().position(|&y| y == x).unwrap_or(0);
        let mut o = vec![vec![0.0; v]; v];
        for u in &units {
            let m = u.len() as f64;
            for (i, a) in u.iter().enumerate() {
                for (j, b) in u.iter().enumerate() {
                    if i != j {
                        o[idx(*a)][idx(*b)] += 1.0 / (m - 1.0);
                    }
                }
            }
        }
        let nc: Vec<f64> = o.iter().map(|r| r.iter().sum()).collect();
        let n: f64 = nc.iter().sum();
        let delta2 = |c: usize, k: usize| -> f64 {
            match level {
                AlphaLevel::Nominal => f64::from(u8::from(c != k)),
                AlphaLevel::Interval => (vals[c] - vals[k]).powi(2),
                AlphaLevel::Ordinal => {
                    let (lo, hi) = (c.min(k), c.max(k));
                    (nc[lo..=hi].iter().sum::<f64>() - (nc[c] + nc[k]) / 2.0).powi(2)
                }
            }
        };
        let (mut dobs, mut dexp) = (0.0, 0.0);
        for c in 0..v {
            for k in 0..v {
                dobs += o[c][k] * delta2(c, k);
                dexp += nc[c] * nc[k] * delta2(c, k);
            }
        }
        (dexp > 0.0).then(|| 1.0 - (n - 1.0) * dobs / dexp)
    }

    #[test]
    fn fast_alpha_matches_the_coincidence_matrix() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..200 {
            let units = rng.random_range(0..15);
            let raters = rng.random_range(1..6);
            let data: Vec<Vec<Option<f64>>> = (0..units)
                .map(|_| {
                    (0..raters)
                        .map(|_| {
                            rng.random_bool(0.75)
                                .then(|| f64::from(rng.random_range(1..6)) * 0.5)
                        })
                        .collect()
                })
                .collect();
            for level in [
                AlphaLevel::Nominal,
                AlphaLevel::Ordinal,
                AlphaLevel::Interval,
            ] {
                let (fast, slow) = (krippendorff_alpha(&data, level), by_matrix(&data, level));
                match (fast, slow) {
                    (Some(a), Some(b)) => {
                        assert!((a - b).abs() < 1e-9, "{level:?} round {round}: {a} vs {b}")
                    }
                    (None, None) => {}
                    _ => panic!("{level:?} round {round}: {fast:?} vs {slow:?}"),
                }
            }
        }
    }
}
