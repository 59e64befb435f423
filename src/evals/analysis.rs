//! The figures of an eval, per stage and dimension, and the verdict.
//!
//! Per dimension of the candidate prompt:
//! - the AI against the human consensus (median of the graders, halves down) on the items
//!   the AI scored, with bootstrap 95% intervals, Krippendorff's alpha, the confusion matrix,
//!   per-grader agreement and the human-human ceiling: exactly `grader calibrate`'s
//!   [`DimensionReport`], so both commands give the same number for the same data;
//! - items the AI could not score are counted (`unscored`), never scored low; items whose
//!   grading failed are counted apart (`errors`);
//! - the gates ([`super::gates`]), the cross-validated effect of the isotonic calibration map
//!   ([`super::crossval`]), and with a baseline the paired bootstrap ([`super::paired`]).
//!
//! Per stage: flag precision/recall/F1 of the AI against the graders' majority flags (a flag
//! counts as the humans' when a strict majority raised it), over the items the AI scored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::crossval::{cross_validate, CalibrationEffect};
use super::gates::{self, GateKind, GateResult, GateStatus, Gates};
use super::paired::{paired_qwk_bootstrap, PairedComparison};
use super::run::{AiGrade, StagePlan};
use super::{EvalError, AI_RATER};
use crate::calibration::{
    dimension_report, flag_agreement, human_consensus, human_flag_consensus, pairwise,
    CalibrationError, DimensionReport, FlagItem, FlagReport, PairwiseMetrics, Rating,
};
use crate::domain::{PromptRef, Stage};
use crate::judge::pipeline::JudgeError;

/// How an eval measures and gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    pub gates: Gates,
    /// Bootstrap resamples (intervals and the paired comparison); 0 disables both.
    pub bootstrap: usize,
    pub seed: u64,
    /// Folds of the calibration map's cross-validation.
    pub folds: usize,
    /// Gradings in flight at once.
    pub concurrency: usize,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings::from(&crate::config::EvalConfig::default())
    }
}

impl From<&crate::config::EvalConfig> for EvalSettings {
    fn from(c: &crate::config::EvalConfig) -> Self {
        EvalSettings {
            gates: Gates::from(c),
            bootstrap: c.bootstrap,
            seed: c.seed,
            folds: 5,
            concurrency: c.concurrency,
        }
    }
}

/// The gradings of one stage's items, parallel to `StagePlan::items`.
pub struct StageGrades {
    pub candidate: Vec<Result<AiGrade, JudgeError>>,
    pub baseline: Option<Vec<Result<AiGrade, JudgeError>>>,
}

/// An item the judge could not score, or whose grading failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemFailure {
    pub id: String,
    pub reason: String,
}

/// The candidate against the baseline on one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// `id@version` of the baseline.
    pub prompt: String,
    /// The baseline against the consensus on the items IT scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<PairwiseMetrics>,
    /// The paired comparison on the items BOTH scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedComparison>,
    /// Why there is no comparison (dimension missing from the baseline, other scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Everything measured on one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionEval {
    pub dimension: String,
    pub scale: (i64, i64),
    /// Items with at least one human score on this dimension.
    pub graded_items: usize,
    /// Of those, items the AI scored: the `n` of the figures.
    pub scored: usize,
    /// Of those, items the AI left unscored: counted here, never as low scores.
    pub unscored: usize,
    /// Of those, items whose grading failed.
    pub errors: usize,
    /// The AI against the human consensus, the ceiling, alpha, confusion, per grader.
    pub agreement: DimensionReport,
    pub gates: Vec<GateResult>,
    pub calibration: CalibrationEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineComparison>,
}

impl DimensionEval {
    /// True when no gate of this dimension failed.
    pub fn passed(&self) -> bool {
        self.gates.iter().all(|g| g.status != GateStatus::Fail)
    }
}

/// One item's scores, for the JSON report (regressions are debugged item by item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    /// Human consensus per dimension.
    pub consensus: BTreeMap<String, f64>,
    /// The candidate's scores; absent when it failed or was unscored (see `status`).
    pub ai: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BTreeMap<String, f64>>,
    /// `scored`, `unscored` or `error`.
    pub status: String,
    pub ai_flags: BTreeSet<String>,
    pub human_flags: BTreeSet<String>,
}

/// Everything measured on one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: Stage,
    pub prompt: PromptRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<PromptRef>,
    pub items: usize,
    /// Items the candidate scored.
    pub scored: usize,
    /// Answered entirely from the response cache.
    pub cached: usize,
    pub unscored: Vec<ItemFailure>,
    pub errors: Vec<ItemFailure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_unscored: Vec<ItemFailure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_errors: Vec<ItemFailure>,
    pub dimensions: Vec<DimensionEval>,
    /// Prompt dimensions no golden grade scores: nothing to measure or gate.
    pub ungraded_dimensions: Vec<String>,
    /// Flags over the items the candidate scored.
    pub flags: FlagReport,
    pub flag_items: usize,
    pub item_results: Vec<ItemResult>,
}

/// The verdict of the whole eval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub items: usize,
    pub unscored: usize,
    /// Gradings that failed (candidate and baseline).
    pub errors: usize,
    pub gates_passed: usize,
    pub gates_failed: usize,
    pub gates_skipped: usize,
    /// Dimensions on which the candidate is significantly worse than the baseline.
    pub regressions: usize,
    /// No gate failed and no grading failed.
    pub passed: bool,
    /// 0 pass, 1 a gate failed or a significant regression, 2 gradings failed.
    pub exit_code: i32,
}

impl Summary {
    pub fn of(stages: &[StageReport]) -> Summary {
        let mut s = Summary::default();
        for st in stages {
            s.items += st.items;
            s.unscored += st.unscored.len();
            s.errors += st.errors.len() + st.baseline_errors.len();
            for d in &st.dimensions {
                for g in &d.gates {
                    match g.status {
                        GateStatus::Pass => s.gates_passed += 1,
                        GateStatus::Fail => s.gates_failed += 1,
                        GateStatus::Skipped => s.gates_skipped += 1,
                    }
                    if g.gate == GateKind::Baseline && g.status == GateStatus::Fail {
                        s.regressions += 1;
                    }
                }
            }
        }
        s.exit_code = if s.errors > 0 {
            2
        } else if s.gates_failed > 0 {
            1
        } else {
            0
        };
        s.passed = s.exit_code == 0;
        s
    }
}

/// The whole eval: what `--json` writes and the other formats render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model id of the judge under test (`offline` for the offline judge).
    pub judge: String,
    pub offline: bool,
    pub golden: Vec<String>,
    pub settings: EvalSettings,
    pub stages: Vec<StageReport>,
    pub summary: Summary,
}

impl EvalReport {
    /// The process exit code (see [`Summary::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.summary.exit_code
    }
}

fn scored(r: &Result<AiGrade, JudgeError>) -> Option<&AiGrade> {
    r.as_ref().ok().filter(|g| g.unscored.is_none())
}

fn failures(
    items: &[&super::GoldenItem],
    results: &[Result<AiGrade, JudgeError>],
) -> (Vec<ItemFailure>, Vec<ItemFailure>) {
    let (mut unscored, mut errors) = (Vec::new(), Vec::new());
    for (it, r) in items.iter().zip(results) {
        match r {
            Ok(g) => {
                if let Some(reason) = &g.unscored {
                    unscored.push(ItemFailure {
                        id: it.id.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            Err(e) => errors.push(ItemFailure {
                id: it.id.clone(),
                reason: e.to_string(),
            }),
        }
    }
    (unscored, errors)
}

/// Measures and gates one stage.
pub fn analyze_stage(
    plan: &StagePlan<'_>,
    grades: &StageGrades,
    settings: &EvalSettings,
) -> Result<StageReport, EvalError> {
    let items = &plan.items;
    if grades.candidate.len() != items.len()
        || grades
            .baseline
            .as_ref()
            .is_some_and(|b| b.len() != items.len())
    {
        return Err(EvalError::Plan(format!(
            "{}: {} items but {} gradings",
            plan.stage,
            items.len(),
            grades.candidate.len()
        )));
    }
    let stage = plan.stage.to_string();
    let metrics_err = |dimension: &str| {
        let stage = stage.clone();
        let dimension = dimension.to_string();
        move |source: CalibrationError| EvalError::Metrics {
            stage,
            dimension,
            source: Box::new(source),
        }
    };
    let (unscored, errors) = failures(items, &grades.candidate);
    let (baseline_unscored, baseline_errors) = match &grades.baseline {
        Some(b) => failures(items, b),
        None => (Vec::new(), Vec::new()),
    };
    let cached = grades
        .candidate
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|g| g.cached))
        .count();

    let mut consensus: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); items.len()];
    let mut dimensions = Vec::new();
    let mut ungraded = Vec::new();
    for d in &plan.candidate.file.dimensions {
        let scale = (i64::from(d.scale.min), i64::from(d.scale.max));
        let mut ratings: Vec<Rating> = Vec::new();
        let (mut graded_items, mut n_unscored, mut n_errors) = (0, 0, 0);
        // (candidate, baseline, consensus) per item with a consensus
        let mut rows: Vec<(Option<f64>, Option<f64>, f64)> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let humans = it.human_scores(&d.id);
            let Some(cons) = human_consensus(&humans.iter().map(|(_, s)| *s).collect::<Vec<_>>())
            else {
                continue;
            };
            graded_items += 1;
            consensus[i].insert(d.id.clone(), cons);
            for (rater, score) in humans {
                ratings.push(Rating {
                    item_id: it.id.clone(),
                    dimension: d.id.clone(),
                    rater,
                    score,
                });
            }
            let ai = scored(&grades.candidate[i]).and_then(|g| g.scores.get(&d.id).copied());
            match (&grades.candidate[i], ai) {
                (Err(_), _) => n_errors += 1,
                (Ok(_), None) => n_unscored += 1,
                (Ok(_), Some(a)) => ratings.push(Rating {
                    item_id: it.id.clone(),
                    dimension: d.id.clone(),
                    rater: AI_RATER.to_string(),
                    score: a,
                }),
            }
            let base = grades
                .baseline
                .as_ref()
                .and_then(|b| scored(&b[i]))
                .and_then(|g| g.scores.get(&d.id).copied());
            rows.push((ai, base, cons));
        }
        if graded_items == 0 {
            ungraded.push(d.id.clone());
            continue;
        }
        let agreement = dimension_report(
            &ratings,
            &d.id,
            AI_RATER,
            scale,
            settings.bootstrap,
            settings.seed,
        )
        .map_err(metrics_err(&d.id))?;
        let m = &agreement.metrics;
        let mut gate_results = vec![
            gates::min_qwk(m.qwk, m.n, &settings.gates),
            gates::gap_to_human(m.qwk, agreement.human_ceiling.metrics.qwk, &settings.gates),
            gates::abs_smd(m.smd, &settings.gates),
        ];

        let (ai_v, cons_v): (Vec<f64>, Vec<f64>) = rows
            .iter()
            .filter_map(|(a, _, c)| a.map(|a| (a, *c)))
            .unzip();
        let calibration = cross_validate(&ai_v, &cons_v, scale, settings.folds, settings.seed)
            .map_err(metrics_err(&d.id))?;

        let baseline = match plan.baseline {
            None => None,
            Some(b) => {
                let key = b.key();
                let same = b.file.dimensions.iter().find(|bd| bd.id == d.id);
                Some(match same {
                    None => BaselineComparison {
                        prompt: key.clone(),
                        metrics: None,
                        paired: None,
                        skipped: Some(format!("{key} has no dimension `{}`", d.id)),
                    },
                    Some(bd) if bd.scale != d.scale => BaselineComparison {
                        prompt: key.clone(),
                        metrics: None,
                        paired: None,
                        skipped: Some(format!(
                            "{key} scores `{}` on {}-{}, the candidate on {}-{}",
                            d.id, bd.scale.min, bd.scale.max, d.scale.min, d.scale.max
                        )),
                    },
                    Some(_) => {
                        let (bv, bc): (Vec<f64>, Vec<f64>) = rows
                            .iter()
                            .filter_map(|(_, b, c)| b.map(|b| (b, *c)))
                            .unzip();
                        let metrics = pairwise(&bv, &bc, scale).map_err(metrics_err(&d.id))?;
                        let (mut pc, mut pb, mut ph) = (Vec::new(), Vec::new(), Vec::new());
                        for (a, b, c) in &rows {
                            if let (Some(a), Some(b)) = (a, b) {
                                pc.push(*a);
                                pb.push(*b);
                                ph.push(*c);
                            }
                        }
                        let paired = paired_qwk_bootstrap(
                            &pc,
                            &pb,
                            &ph,
                            scale,
                            settings.bootstrap,
                            settings.seed,
                        )
                        .map_err(metrics_err(&d.id))?;
                        gate_results.push(gates::baseline(&paired, &key));
                        BaselineComparison {
                            prompt: key,
                            metrics: Some(metrics),
                            paired: Some(paired),
                            skipped: None,
                        }
                    }
                })
            }
        };

        dimensions.push(DimensionEval {
            dimension: d.id.clone(),
            scale,
            graded_items,
            scored: agreement.metrics.n,
            unscored: n_unscored,
            errors: n_errors,
            agreement,
            gates: gate_results,
            calibration,
            baseline,
        });
    }

    let mut flag_items = Vec::new();
    let mut item_results = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let human_flags = human_flag_consensus(
            &it.grades
                .iter()
                .map(|g| g.flags.clone())
                .collect::<Vec<_>>(),
        );
        let cand = scored(&grades.candidate[i]);
        if let Some(g) = cand {
            flag_items.push(FlagItem {
                ai: g.flags.clone(),
                human: human_flags.clone(),
            });
        }
        let status = match &grades.candidate[i] {
            Err(_) => "error",
            Ok(g) if g.unscored.is_some() => "unscored",
            Ok(_) => "scored",
        };
        item_results.push(ItemResult {
            id: it.id.clone(),
            consensus: std::mem::take(&mut consensus[i]),
            ai: cand.map(|g| g.scores.clone()).unwrap_or_default(),
            baseline: grades
                .baseline
                .as_ref()
                .map(|b| scored(&b[i]).map(|g| g.scores.clone()).unwrap_or_default()),
            status: status.to_string(),
            ai_flags: cand.map(|g| g.flags.clone()).unwrap_or_default(),
            human_flags,
        });
    }

    Ok(StageReport {
        stage: plan.stage,
        prompt: plan.candidate.prompt_ref(),
        baseline: plan.baseline.map(|b| b.prompt_ref()),
        items: items.len(),
        scored: grades
            .candidate
            .iter()
            .filter(|r| scored(r).is_some())
            .count(),
        cached,
        unscored,
        errors,
        baseline_unscored,
        baseline_errors,
        dimensions,
        ungraded_dimensions: ungraded,
        flags: flag_agreement(&flag_items),
        flag_items: flag_items.len(),
        item_results,
    })
}
