//! The measured effect of the isotonic calibration map, by cross-validation.
//!
//! A map fitted on the golden items and then scored on the same items always looks good (it
//! was chosen to fit them), so its effect is measured on held-out items only: the items are
//! shuffled with the run's seed and dealt into `k` folds; for each fold the map is fitted on
//! the other folds (AI raw score -> human consensus) and applied to this fold's raw scores.
//! The pooled held-out predictions are then compared with the consensus: QWK, MAE and SMD
//! raw vs calibrated, on exactly the same items.
//!
//! The map fitted on ALL items is returned too (what would be stored and applied to new
//! reports); its figures are not reported because they would be in-sample.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::calibration::{pairwise, CalibrationError, IsotonicMap};

/// The figures compared raw vs calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CalibrationFigures {
    pub qwk: Option<f64>,
    pub mae: Option<f64>,
    pub smd: Option<f64>,
}

/// Raw vs calibrated agreement on held-out folds, or why it was not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationEffect {
    /// Folds actually used (fewer than asked when there are few items).
    pub folds: usize,
    /// Items in the comparison (all scored items; each is held out exactly once).
    pub n: usize,
    pub raw: CalibrationFigures,
    pub calibrated: CalibrationFigures,
    /// The map fitted on all items.
    pub map: Option<IsotonicMap>,
    /// Why the effect was not measured (too few items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The fewest items for which a cross-validated figure means anything.
pub const MIN_ITEMS: usize = 6;

fn figures(
    pred: &[f64],
    human: &[f64],
    scale: (i64, i64),
) -> Result<CalibrationFigures, CalibrationError> {
    let m = pairwise(pred, human, scale)?;
    Ok(CalibrationFigures {
        qwk: m.qwk,
        mae: m.mae,
        smd: m.smd,
    })
}

/// `k`-fold cross-validated effect of an isotonic map from `ai` (raw) to `human`
/// (consensus), seeded by `seed`. With fewer than [`MIN_ITEMS`] items the effect is skipped
/// (but the map is still fitted when there is at least one item).
pub fn cross_validate(
    ai: &[f64],
    human: &[f64],
    scale: (i64, i64),
    folds: usize,
    seed: u64,
) -> Result<CalibrationEffect, CalibrationError> {
    let n = ai.len();
    if human.len() != n {
        return Err(CalibrationError::LengthMismatch {
            ai: n,
            human: human.len(),
        });
    }
    let raw = figures(ai, human, scale)?;
    // The fit can only fail on empty or non-finite input, which `pairwise` already rejected
    // or which means "no map": either way there is nothing to store.
    let map = IsotonicMap::fit(ai, human).ok();
    let k = folds.min(n);
    if n < MIN_ITEMS || k < 2 {
        return Ok(CalibrationEffect {
            folds: 0,
            n,
            raw,
            calibrated: CalibrationFigures::default(),
            map,
            skipped: Some(format!(
                "{n} scored item(s): cross-validation needs at least {MIN_ITEMS}"
            )),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut fold_of = vec![0usize; n];
    for (pos, &i) in order.iter().enumerate() {
        fold_of[i] = pos % k;
    }
    let mut pred = vec![0.0; n];
    for f in 0..k {
        let (mut tx, mut ty) = (Vec::new(), Vec::new());
        for i in (0..n).filter(|&i| fold_of[i] != f) {
            tx.push(ai[i]);
            ty.push(human[i]);
        }
        let fold_map = IsotonicMap::fit(&tx, &ty).ok();
        for i in (0..n).filter(|&i| fold_of[i] == f) {
            // A training set is never empty here (k <= n and k >= 2), so the map exists;
            // falling back to the raw score keeps this total.
            pred[i] = fold_map.as_ref().map_or(ai[i], |m| m.apply(ai[i]));
        }
    }
    Ok(CalibrationEffect {
        folds: k,
        n,
        raw,
        calibrated: figures(&pred, human, scale)?,
        map,
        skipped: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_offset_is_removed_on_held_out_items() {
        // The AI is one point too harsh everywhere; the map learns +1 from the other folds.
        let human: Vec<f64> = (0..30).map(|i| f64::from(2 + i % 4)).collect();
        let ai: Vec<f64> = human.iter().map(|h| h - 1.0).collect();
        let e = cross_validate(&ai, &human, (1, 5), 5, 42).unwrap();
        assert_eq!(e.folds, 5);
        assert!(e.raw.mae.unwrap() > 0.99);
        assert!(e.calibrated.mae.unwrap() < 1e-9, "{e:?}");
        assert!(e.calibrated.qwk.unwrap() > e.raw.qwk.unwrap());
    }

    #[test]
    fn too_few_items_skip_the_effect_but_keep_the_map() {
        let e = cross_validate(&[1.0, 2.0], &[2.0, 3.0], (1, 5), 5, 1).unwrap();
        assert!(e.skipped.is_some());
        assert!(e.map.is_some());
    }
}
