//! Per-dimension calibration reports: every figure of `grader calibrate`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::agreement::PairwiseMetrics;
use super::alpha::{krippendorff_alpha, AlphaLevel};
use super::bootstrap::{intervals, ConfidenceIntervals, CI_LEVEL};
use super::consensus::{
    human_ceiling, human_consensus, per_grader, GraderAgreement, HumanCeiling, ItemScores,
};
use super::error::CalibrationError;
use super::input::{Rating, RatingsInput};
use super::kappa::{check_scale, ConfusionMatrix};
use super::table::{all_metrics, confusion_flat, PairTable};

/// Every figure for one rubric dimension.
///
/// The flattened pairwise figures (`n`, `qwk`, ... `adjacent`) are the AI against the human
/// consensus (median of the humans, halves down) on the items both rated; `ci` holds their
/// bootstrap intervals. The alphas are over ALL raters, the AI included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionReport {
    #[serde(flatten)]
    pub metrics: PairwiseMetrics,
    /// Krippendorff's alpha, ordinal metric, all raters including the AI.
    pub alpha_ordinal: Option<f64>,
    /// Krippendorff's alpha, interval metric, all raters including the AI.
    pub alpha_interval: Option<f64>,
    /// Percentile bootstrap 95% intervals of the pairwise figures.
    pub ci: ConfidenceIntervals,
    /// The same pairwise figures among the human graders.
    pub human_ceiling: HumanCeiling,
    /// Human consensus (rows) against the AI (columns) over the full scale.
    pub confusion: ConfusionMatrix,
    /// Each human against the other humans and against the AI.
    pub per_grader: BTreeMap<String, GraderAgreement>,
    /// The scale `[min, max]` the categorical figures used.
    pub scale: (i64, i64),
    /// Items with at least one rating on this dimension.
    pub items: usize,
    /// Distinct human raters on this dimension.
    pub humans: usize,
}

/// How the intervals were computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSettings {
    pub resamples: usize,
    pub seed: u64,
    pub level: f64,
}

/// The whole `grader calibrate` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    pub ai_rater: String,
    pub bootstrap: BootstrapSettings,
    pub dimensions: BTreeMap<String, DimensionReport>,
}

fn out_of_scale(score: f64, scale: (i64, i64), line: Option<usize>) -> Option<CalibrationError> {
    (score < scale.0 as f64 || score > scale.1 as f64).then(|| CalibrationError::OutOfScale {
        location: line.map(|l| format!("line {l}: ")).unwrap_or_default(),
        score,
        min: scale.0,
        max: scale.1,
    })
}

/// The report of one dimension. `ratings` may hold other dimensions (ignored); the same
/// seed gives the same intervals here as inside [`calibration_report`].
pub fn dimension_report(
    ratings: &[Rating],
    dimension: &str,
    ai_rater: &str,
    scale: (i64, i64),
    bootstrap_n: usize,
    seed: u64,
) -> Result<DimensionReport, CalibrationError> {
    check_scale(scale)?;
    let mut by_item: BTreeMap<&str, ItemScores> = BTreeMap::new();
    let mut raters: BTreeSet<&str> = BTreeSet::new();
    for (index, r) in ratings
        .iter()
        .enumerate()
        .filter(|(_, r)| r.dimension == dimension)
    {
        if !r.score.is_finite() {
            return Err(CalibrationError::NonFinite { index });
        }
        if let Some(e) = out_of_scale(r.score, scale, None) {
            return Err(e);
        }
        raters.insert(&r.rater);
        let e = by_item.entry(&r.item_id).or_insert_with(|| ItemScores {
            item_id: r.item_id.clone(),
            ai: None,
            humans: Vec::new(),
        });
        if r.rater == ai_rater {
            e.ai = Some(r.score);
        } else {
            e.humans.push((r.rater.clone(), r.score));
        }
    }
    if by_item.is_empty() {
        return Err(CalibrationError::UnknownDimension(dimension.to_string()));
    }
    let items: Vec<ItemScores> = by_item.into_values().collect();

    // AI against the human consensus.
    let (mut ai, mut consensus) = (Vec::new(), Vec::new());
    for it in &items {
        let hs: Vec<f64> = it.humans.iter().map(|(_, s)| *s).collect();
        if let (Some(a), Some(c)) = (it.ai, human_consensus(&hs)) {
            ai.push(a);
            consensus.push(c);
        }
    }
    let table = PairTable::new(&ai, &consensus)?;
    let cats = table.categories(scale)?;
    let k = (scale.1 - scale.0 + 1) as usize;
    let metrics = all_metrics(&table, &cats, k, &table.base_counts);
    let ci = intervals(&table, &cats, k, bootstrap_n, seed);
    let confusion = ConfusionMatrix::from_flat(
        (scale.0..=scale.1).collect(),
        &confusion_flat(&cats, &table.base_counts, k),
    );

    // Krippendorff's alpha over all raters (units x raters).
    let rater_index: BTreeMap<&str, usize> =
        raters.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let matrix: Vec<Vec<Option<f64>>> = items
        .iter()
        .map(|it| {
            let mut row = vec![None; rater_index.len()];
            if let (Some(a), Some(&i)) = (it.ai, rater_index.get(ai_rater)) {
                row[i] = Some(a);
            }
            for (r, s) in &it.humans {
                if let Some(&i) = rater_index.get(r.as_str()) {
                    row[i] = Some(*s);
                }
            }
            row
        })
        .collect();

    Ok(DimensionReport {
        metrics,
        alpha_ordinal: krippendorff_alpha(&matrix, AlphaLevel::Ordinal),
        alpha_interval: krippendorff_alpha(&matrix, AlphaLevel::Interval),
        ci,
        human_ceiling: human_ceiling(&items, scale)?,
        confusion,
        per_grader: per_grader(&items, scale)?,
        scale,
        items: items.len(),
        humans: raters.iter().filter(|r| **r != ai_rater).count(),
    })
}

/// Each dimension's scale: `scale_override` (the `--scale` flag) if given, else the file's
/// `scale_min`/`scale_max` for that dimension, else the observed range (lowest score
/// rounded down to highest rounded up). Every score is checked against its dimension's
/// scale, and an error names the line.
pub fn resolve_scales(
    input: &RatingsInput,
    scale_override: Option<(i64, i64)>,
) -> Result<BTreeMap<String, (i64, i64)>, CalibrationError> {
    if let Some(s) = scale_override {
        check_scale(s)?;
    }
    let mut observed: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in &input.ratings {
        let e = observed.entry(&r.dimension).or_insert((r.score, r.score));
        e.0 = e.0.min(r.score);
        e.1 = e.1.max(r.score);
    }
    let scales: BTreeMap<String, (i64, i64)> = observed
        .into_iter()
        .map(|(d, (lo, hi))| {
            let s = scale_override
                .or_else(|| input.scales.get(d).copied())
                .unwrap_or((lo.floor() as i64, hi.ceil() as i64));
            (d.to_string(), s)
        })
        .collect();
    for (i, r) in input.ratings.iter().enumerate() {
        if let Some(&s) = scales.get(&r.dimension) {
            if let Some(e) = out_of_scale(r.score, s, input.lines.get(i).copied()) {
                return Err(e);
            }
        }
    }
    Ok(scales)
}

/// The report for every dimension in `input`.
///
/// Errors when the AI rater never appears (almost always a wrong `--ai-rater`) or when
/// there is no human rating at all.
pub fn calibration_report(
    input: &RatingsInput,
    ai_rater: &str,
    scale_override: Option<(i64, i64)>,
    bootstrap_n: usize,
    seed: u64,
) -> Result<CalibrationReport, CalibrationError> {
    if input.ratings.is_empty() {
        return Err(CalibrationError::Empty);
    }
    let raters: BTreeSet<&str> = input.ratings.iter().map(|r| r.rater.as_str()).collect();
    if !raters.contains(ai_rater) {
        let mut seen: Vec<&str> = raters.iter().copied().take(10).collect();
        if raters.len() > 10 {
            seen.push("...");
        }
        return Err(CalibrationError::NoAiRatings {
            rater: ai_rater.to_string(),
            seen: seen.join(", "),
        });
    }
    if raters.len() == 1 {
        return Err(CalibrationError::NoHumanRatings(ai_rater.to_string()));
    }
    let scales = resolve_scales(input, scale_override)?;
    let dimensions = scales
        .iter()
        .map(|(d, &s)| {
            Ok((
                d.clone(),
                dimension_report(&input.ratings, d, ai_rater, s, bootstrap_n, seed)?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>, CalibrationError>>()?;
    Ok(CalibrationReport {
        ai_rater: ai_rater.to_string(),
        bootstrap: BootstrapSettings {
            resamples: bootstrap_n,
            seed,
            level: CI_LEVEL,
        },
        dimensions,
    })
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:+.3}"))
}

/// A readable, aligned plain-text rendering of the report.
pub fn render_table(report: &CalibrationReport) -> String {
    let mut s = String::new();
    let b = &report.bootstrap;
    let _ = writeln!(
        s,
        "AI rater {:?}; intervals: {:.0}% percentile bootstrap over items, {} resamples, seed {}",
        report.ai_rater,
        b.level * 100.0,
        b.resamples,
        b.seed
    );
    for (dim, d) in &report.dimensions {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "== {dim}  (scale {}-{}, {} items, {} human rater{})",
            d.scale.0,
            d.scale.1,
            d.items,
            d.humans,
            if d.humans == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "{:<15} {:>12} {:>18} {:>14}",
            "figure", "AI vs humans", "95% CI", "human ceiling"
        );
        let _ = writeln!(
            s,
            "{:<15} {:>12} {:>18} {:>14}",
            "n", d.metrics.n, "", d.human_ceiling.metrics.n
        );
        for ((name, v), (_, h)) in d
            .metrics
            .figures()
            .iter()
            .zip(d.human_ceiling.metrics.figures())
        {
            let ci =
                d.ci.get(name)
                    .map_or_else(String::new, |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"));
            let _ = writeln!(s, "{:<15} {:>12} {:>18} {:>14}", name, num(*v), ci, num(h));
        }
        let _ = writeln!(
            s,
            "{:<15} {:>12}   (all raters, AI included)",
            "alpha_ordinal",
            num(d.alpha_ordinal)
        );
        let _ = writeln!(s, "{:<15} {:>12}", "alpha_interval", num(d.alpha_interval));

        let _ = writeln!(s);
        let _ = writeln!(s, "confusion (rows: human consensus, columns: AI)");
        let width = d
            .confusion
            .counts
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .chain(d.confusion.labels.iter().map(|l| l.to_string().len()))
            .max()
            .unwrap_or(1)
            .max(3);
        let mut head = format!("{:>width$}", "");
        for l in &d.confusion.labels {
            let _ = write!(head, " {l:>width$}");
        }
        let _ = writeln!(s, "{head}");
        for (l, row) in d.confusion.labels.iter().zip(&d.confusion.counts) {
            let mut line = format!("{l:>width$}");
            for c in row {
                let _ = write!(line, " {c:>width$}");
            }
            let _ = writeln!(s, "{line}");
        }

        if !d.per_grader.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "per grader (bias = grader - reference; others = median of the other humans)"
            );
            let name_w = d
                .per_grader
                .keys()
                .map(|k| k.len())
                .max()
                .unwrap_or(5)
                .max(6);
            let _ = writeln!(
                s,
                "{:<name_w$} {:>6} {:>10} {:>11} {:>10} {:>10} {:>10}",
                "grader", "items", "qwk/others", "bias/others", "mae/others", "qwk/AI", "bias/AI"
            );
            for (g, a) in &d.per_grader {
                let _ = writeln!(
                    s,
                    "{:<name_w$} {:>6} {:>10} {:>11} {:>10} {:>10} {:>10}",
                    g,
                    a.items,
                    num(a.vs_others.qwk),
                    signed(a.vs_others.bias),
                    num(a.vs_others.mae),
                    num(a.vs_ai.qwk),
                    signed(a.vs_ai.bias)
                );
            }
        }
    }
    s
}
