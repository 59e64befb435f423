//! The human consensus, the human ceiling, and per-grader agreement.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::agreement::{pairwise, PairwiseMetrics};
use super::error::CalibrationError;
use super::kappa::round_half_down;

/// The median of the human scores for one item; `None` for no scores.
///
/// With an even count the two middle values are averaged and the average is rounded to
/// the nearest integer with halves going DOWN: median of `[2, 3]` is 2, of `[2, 4]` is 3,
/// of `[1, 2, 3, 4]` is 2. Rounding down is the conservative choice for a hiring score
/// (a split panel does not promote the candidate). An odd count returns the middle value
/// unchanged. Non-finite values are ignored.
pub fn human_consensus(scores: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    if s.len() % 2 == 1 {
        Some(s[mid])
    } else {
        Some(round_half_down((s[mid - 1] + s[mid]) / 2.0))
    }
}

/// One item's scores on one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemScores {
    pub item_id: String,
    /// The AI's score, if the AI rated the item.
    pub ai: Option<f64>,
    /// `(rater, score)` for every human who rated the item.
    pub humans: Vec<(String, f64)>,
}

/// Agreement among the human graders: the ceiling the AI is compared with.
///
/// Pairs: for every item with two or more humans, every ORDERED pair of distinct humans
/// `(a, b)` who both rated it, pooled over items; each unordered pair therefore counts
/// twice, once in each direction. Counting both directions makes the figures symmetric (no
/// human is arbitrarily the reference; kappa is computed on a symmetric table), which is
/// why `bias` and `smd` are 0 by construction here. An item with `m` humans contributes
/// `m (m - 1)` ordered pairs, so items with larger panels weigh more.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct HumanCeiling {
    /// Items with at least two human ratings.
    pub items: usize,
    /// Unordered human pairs; `n` below is twice this (ordered pairs).
    pub unordered_pairs: usize,
    #[serde(flatten)]
    pub metrics: PairwiseMetrics,
}

/// The human-human figures (see [`HumanCeiling`] for how pairs are formed).
pub fn human_ceiling(
    items: &[ItemScores],
    scale: (i64, i64),
) -> Result<HumanCeiling, CalibrationError> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut n_items = 0;
    for it in items {
        if it.humans.len() < 2 {
            continue;
        }
        n_items += 1;
        for (i, (_, x)) in it.humans.iter().enumerate() {
            for (j, (_, y)) in it.humans.iter().enumerate() {
                if i != j {
                    a.push(*x);
                    b.push(*y);
                }
            }
        }
    }
    Ok(HumanCeiling {
        items: n_items,
        unordered_pairs: a.len() / 2,
        metrics: pairwise(&a, &b, scale)?,
    })
}

/// How one human grader agrees with the others and with the AI, to spot outlier graders.
///
/// In both comparisons the GRADER is the rater under test (the first operand), so
/// `bias = grader - reference`: a positive bias means this grader scores higher (more
/// leniently) than the reference.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GraderAgreement {
    /// Items this grader rated.
    pub items: usize,
    /// Against the consensus (median, halves down) of the OTHER humans, on items at least
    /// one other human rated. Leaving the grader out keeps them from agreeing with
    /// themselves; this is the figure that exposes an outlier.
    pub vs_others: PairwiseMetrics,
    /// Against the AI, on items the AI also rated.
    pub vs_ai: PairwiseMetrics,
}

/// [`GraderAgreement`] for every human, keyed by rater name.
pub fn per_grader(
    items: &[ItemScores],
    scale: (i64, i64),
) -> Result<BTreeMap<String, GraderAgreement>, CalibrationError> {
    #[derive(Default)]
    struct Acc {
        items: usize,
        others: (Vec<f64>, Vec<f64>),
        ai: (Vec<f64>, Vec<f64>),
    }
    let mut acc: BTreeMap<&str, Acc> = BTreeMap::new();
    for it in items {
        for (i, (rater, score)) in it.humans.iter().enumerate() {
            let e = acc.entry(rater.as_str()).or_default();
            e.items += 1;
            let others: Vec<f64> = it
                .humans
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, (_, s))| *s)
                .collect();
            if let Some(c) = human_consensus(&others) {
                e.others.0.push(*score);
                e.others.1.push(c);
            }
            if let Some(ai) = it.ai {
                e.ai.0.push(*score);
                e.ai.1.push(ai);
            }
        }
    }
    acc.into_iter()
        .map(|(rater, a)| {
            Ok((
                rater.to_string(),
                GraderAgreement {
                    items: a.items,
                    vs_others: pairwise(&a.others.0, &a.others.1, scale)?,
                    vs_ai: pairwise(&a.ai.0, &a.ai.1, scale)?,
                },
            ))
        })
        .collect()
}
