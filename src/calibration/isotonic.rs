//! Isotonic calibration: a non-decreasing map from the AI's raw scores to the human scale.
//!
//! A judge can rank candidates well and still sit on the wrong part of the scale (too lenient
//! in the middle, too harsh at the top). Monotone recalibration fixes that without touching
//! the ranking: it only moves each raw score to the human score it corresponds to on average.
//! Isotonic regression is the least-squares fit among all non-decreasing functions, so it
//! needs no assumption about the shape (unlike a linear or logistic map) and can never invert
//! the judge's order.
//!
//! Fit: the pool-adjacent-violators algorithm (Ayer et al. 1955; Barlow et al. 1972).
//! Observations are sorted by `x`; equal `x` values are pooled first (their weighted mean `y`,
//! their summed weight), because a function must give one value per `x`. Then adjacent
//! blocks whose means decrease are merged into their weighted mean until the sequence is
//! non-decreasing. The result is one fitted value per distinct `x`.
//!
//! Apply: linear interpolation between the fitted points, clamped to the first/last fitted
//! value outside their range, so a raw score the fit never saw still maps sensibly and the
//! output always stays within the range of the human scores it was fitted on.

use serde::{Deserialize, Serialize};

/// Why an isotonic fit could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IsotonicError {
    /// No observations: there is nothing to fit.
    #[error("isotonic fit needs at least one observation")]
    Empty,
    /// `x`, `y` (and weights) must be parallel slices.
    #[error("isotonic fit: x has {x} values but y has {y} (and weights {w})")]
    LengthMismatch { x: usize, y: usize, w: usize },
    /// A value is NaN or infinite.
    #[error("isotonic fit: {which} at position {index} is not a finite number")]
    NonFinite { which: &'static str, index: usize },
    /// Weights must be positive: a zero weight says the point does not exist.
    #[error("isotonic fit: weight at position {index} is {weight}; weights must be > 0")]
    BadWeight { index: usize, weight: f64 },
}

/// Weighted pool-adjacent-violators: the non-decreasing sequence closest to `y` in weighted
/// least squares, for `y` already in `x` order. `w` must be positive and as long as `y`.
///
/// `pava(&[1,3,2,4,3,5], &[1;6]) == [1, 2.5, 2.5, 3.5, 3.5, 5]`.
pub fn pava(y: &[f64], w: &[f64]) -> Result<Vec<f64>, IsotonicError> {
    if y.len() != w.len() {
        return Err(IsotonicError::LengthMismatch {
            x: y.len(),
            y: y.len(),
            w: w.len(),
        });
    }
    check_finite(y, "y")?;
    check_weights(w)?;
    // Blocks as (weighted mean, total weight, number of points). Merging a new point into
    // the stack while the previous block's mean is larger keeps every block's mean the
    // least-squares value of the points it holds.
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(y.len());
    for (&v, &wt) in y.iter().zip(w) {
        let mut cur = (v, wt, 1usize);
        while let Some(&(m, bw, bn)) = blocks.last() {
            if m <= cur.0 {
                break;
            }
            blocks.pop();
            let total = bw + cur.1;
            cur = ((m * bw + cur.0 * cur.1) / total, total, bn + cur.2);
        }
        blocks.push(cur);
    }
    Ok(blocks
        .into_iter()
        .flat_map(|(m, _, n)| std::iter::repeat_n(m, n))
        .collect())
}

fn check_finite(v: &[f64], which: &'static str) -> Result<(), IsotonicError> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(IsotonicError::NonFinite { which, index }),
        None => Ok(()),
    }
}

fn check_weights(w: &[f64]) -> Result<(), IsotonicError> {
    check_finite(w, "weight")?;
    match w.iter().position(|&x| x <= 0.0) {
        Some(index) => Err(IsotonicError::BadWeight {
            index,
            weight: w[index],
        }),
        None => Ok(()),
    }
}

/// A fitted isotonic map: `ys[i]` is the calibrated value of raw score `xs[i]`; `xs` is
/// strictly increasing and `ys` non-decreasing. Serializable so a map can be stored and
/// re-applied to later reports exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicMap {
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
}

impl IsotonicMap {
    /// Fits the map with every observation weighing the same.
    pub fn fit(x: &[f64], y: &[f64]) -> Result<IsotonicMap, IsotonicError> {
        IsotonicMap::fit_weighted(x, y, &vec![1.0; x.len()])
    }

    /// Fits the map with per-observation weights (e.g. the number of human graders behind a
    /// consensus, or a sample count).
    pub fn fit_weighted(x: &[f64], y: &[f64], w: &[f64]) -> Result<IsotonicMap, IsotonicError> {
        if x.len() != y.len() || x.len() != w.len() {
            return Err(IsotonicError::LengthMismatch {
                x: x.len(),
                y: y.len(),
                w: w.len(),
            });
        }
        if x.is_empty() {
            return Err(IsotonicError::Empty);
        }
        check_finite(x, "x")?;
        check_finite(y, "y")?;
        check_weights(w)?;
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        // Pool ties in x: one (x, weighted mean y, weight) per distinct x.
        let mut xs: Vec<f64> = Vec::new();
        let mut sums: Vec<(f64, f64)> = Vec::new(); // (sum w*y, sum w)
        for i in order {
            if xs.last() == Some(&x[i]) {
                if let Some(last) = sums.last_mut() {
                    last.0 += w[i] * y[i];
                    last.1 += w[i];
                }
            } else {
                xs.push(x[i]);
                sums.push((w[i] * y[i], w[i]));
            }
        }
        let means: Vec<f64> = sums.iter().map(|(s, wt)| s / wt).collect();
        let weights: Vec<f64> = sums.iter().map(|(_, wt)| *wt).collect();
        let ys = pava(&means, &weights)?;
        Ok(IsotonicMap { xs, ys })
    }

    /// The calibrated value of raw score `x`: linear interpolation between the two fitted
    /// points around it, the end value outside the fitted range. A NaN input maps to NaN
    /// (it has no place on the scale; callers should not pass one).
    pub fn apply(&self, x: f64) -> f64 {
        let (Some(&x0), Some(&xn)) = (self.xs.first(), self.xs.last()) else {
            return x;
        };
        if x.is_nan() {
            return f64::NAN;
        }
        if x <= x0 {
            return self.ys[0];
        }
        if x >= xn {
            return self.ys[self.ys.len() - 1];
        }
        // First index with xs[i] > x; 1 <= i < len because x0 < x < xn.
        let i = self.xs.partition_point(|&v| v <= x);
        let (xa, xb, ya, yb) = (self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]);
        ya + (x - xa) / (xb - xa) * (yb - ya)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn pava_pools_each_violating_pair() {
        // (3,2) -> 2.5 and (4,3) -> 3.5; everything else already increases.
        let fit = pava(&[1.0, 3.0, 2.0, 4.0, 3.0, 5.0], &[1.0; 6]).unwrap();
        assert!(close(&fit, &[1.0, 2.5, 2.5, 3.5, 3.5, 5.0]), "{fit:?}");
    }

    #[test]
    fn pava_merges_backwards_across_blocks() {
        // 4,5 then 1: first (5,1) -> 3 < 4, so merge with 4 too: (4+5+1)/3 = 10/3.
        let fit = pava(&[4.0, 5.0, 1.0, 6.0], &[1.0; 4]).unwrap();
        let t = 10.0 / 3.0;
        assert!(close(&fit, &[t, t, t, 6.0]), "{fit:?}");
        // a decreasing sequence becomes its mean
        let fit = pava(&[3.0, 2.0, 1.0], &[1.0; 3]).unwrap();
        assert!(close(&fit, &[2.0, 2.0, 2.0]), "{fit:?}");
    }

    #[test]
    fn pava_weights_the_pooled_mean() {
        // (3 w=3, 1 w=1) -> (9 + 1) / 4 = 2.5
        let fit = pava(&[3.0, 1.0], &[3.0, 1.0]).unwrap();
        assert!(close(&fit, &[2.5, 2.5]), "{fit:?}");
    }

    #[test]
    fn fit_pools_ties_in_x_then_interpolates_and_clamps() {
        // x=1: y 1,2 (mean 1.5, w 2); x=2: y 1 (w 1); x=3: y 4.
        // PAVA on [1.5 w2, 1 w1, 4 w1] -> (3 + 1)/3 = 4/3 for x=1,2; 4 for x=3.
        let m = IsotonicMap::fit(&[1.0, 1.0, 2.0, 3.0], &[1.0, 2.0, 1.0, 4.0]).unwrap();
        assert_eq!(m.xs, vec![1.0, 2.0, 3.0]);
        let t = 4.0 / 3.0;
        assert!(close(&m.ys, &[t, t, 4.0]), "{:?}", m.ys);
        assert!((m.apply(2.5) - (t + 0.5 * (4.0 - t))).abs() < 1e-12);
        assert_eq!(m.apply(0.0), m.ys[0], "clamped below");
        assert_eq!(m.apply(9.0), 4.0, "clamped above");
        assert_eq!(m.apply(3.0), 4.0);
    }

    #[test]
    fn fit_of_the_textbook_example_in_shuffled_order() {
        let x = [6.0, 1.0, 4.0, 3.0, 5.0, 2.0];
        let y = [5.0, 1.0, 4.0, 2.0, 3.0, 3.0];
        let m = IsotonicMap::fit(&x, &y).unwrap();
        assert_eq!(m.xs, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(close(&m.ys, &[1.0, 2.5, 2.5, 3.5, 3.5, 5.0]), "{:?}", m.ys);
    }

    #[test]
    fn serde_round_trip_and_errors() {
        let m = IsotonicMap::fit(&[1.0, 2.0], &[2.0, 3.0]).unwrap();
        let back: IsotonicMap = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(IsotonicMap::fit(&[], &[]), Err(IsotonicError::Empty));
        assert!(matches!(
            IsotonicMap::fit(&[1.0], &[1.0, 2.0]),
            Err(IsotonicError::LengthMismatch { .. })
        ));
        assert!(matches!(
            IsotonicMap::fit(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(IsotonicError::NonFinite {
                which: "x",
                index: 1
            })
        ));
        assert!(matches!(
            IsotonicMap::fit_weighted(&[1.0], &[1.0], &[0.0]),
            Err(IsotonicError::BadWeight { index: 0, .. })
        ));
    }
}
