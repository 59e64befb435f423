//! Agreement on red/green flags: precision, recall and F1 per flag id.
//!
//! Each item has the set of flag ids the AI raised and a reference set from the human
//! graders. Per flag id, over items: TP = both raised it, FP = only the AI, FN = only the
//! humans. `precision = TP / (TP + FP)`, `recall = TP / (TP + FN)`,
//! `F1 = 2 TP / (2 TP + FP + FN)` (the harmonic mean of the two, written so that it is
//! defined, as 0, when one of them is 0). A ratio whose denominator is 0 is `None`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::consensus::human_consensus;

/// One item's flags.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlagItem {
    /// Flag ids the AI raised.
    pub ai: BTreeSet<String>,
    /// The reference flag ids (see [`human_flag_consensus`] for several graders).
    pub human: BTreeSet<String>,
}

/// The reference flags of an item graded by several humans: the flags a STRICT majority
/// raised. This is the score consensus rule applied to 0/1 indicators (median, halves
/// down), so with two graders both must raise a flag and one of two is not enough.
pub fn human_flag_consensus(graders: &[BTreeSet<String>]) -> BTreeSet<String> {
    let all: BTreeSet<&String> = graders.iter().flatten().collect();
    all.into_iter()
        .filter(|id| {
            let votes: Vec<f64> = graders
                .iter()
                .map(|g| f64::from(u8::from(g.contains(*id))))
                .collect();
            human_consensus(&votes) == Some(1.0)
        })
        .cloned()
        .collect()
}

/// Counts and ratios for one flag id (or all flags pooled).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FlagMetrics {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

impl FlagMetrics {
    fn finish(mut self) -> Self {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        self.precision = ratio(self.tp, self.tp + self.fp);
        self.recall = ratio(self.tp, self.tp + self.fn_);
        self.f1 = ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_);
        self
    }
}

/// Per-flag figures plus the micro average (all flag decisions pooled).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlagReport {
    pub per_flag: BTreeMap<String, FlagMetrics>,
    pub micro: FlagMetrics,
}

/// Precision, recall and F1 of the AI's flags against the reference, per flag id.
pub fn flag_agreement(items: &[FlagItem]) -> FlagReport {
    let mut per: BTreeMap<String, FlagMetrics> = BTreeMap::new();
    let mut micro = FlagMetrics::default();
    for it in items {
        for id in it.ai.union(&it.human) {
            let e = per.entry(id.clone()).or_default();
            match (it.ai.contains(id), it.human.contains(id)) {
                (true, true) => {
                    e.tp += 1;
                    micro.tp += 1;
                }
                (true, false) => {
                    e.fp += 1;
                    micro.fp += 1;
                }
                _ => {
                    e.fn_ += 1;
                    micro.fn_ += 1;
                }
            }
        }
    }
    FlagReport {
        per_flag: per.into_iter().map(|(k, v)| (k, v.finish())).collect(),
        micro: micro.finish(),
    }
}
