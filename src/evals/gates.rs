//! The regression gates, per stage and dimension.
//!
//! - `min_qwk`: QWK (AI vs human consensus) >= `min_qwk`. An undefined QWK (no scored item, or
//!   no variance at all) fails: agreement that cannot be measured has not been shown.
//! - `gap_to_human`: QWK >= human-human QWK - `max_gap_to_human`, so the judge is held to
//!   what people achieve on the same items. Skipped when there is no ceiling (no item with
//!   two human graders, or the ceiling itself is undefined).
//! - `abs_smd`: |SMD| <= `max_abs_smd`: the AI's mean sits where the humans' does, in pooled
//!   standard deviations. Undefined fails, for the same reason as QWK.
//! - `baseline`: only with `--baseline`: fails when the candidate is significantly worse
//!   (the upper end of the paired bootstrap's 95% interval of QWK(candidate) - QWK(baseline)
//!   is below 0).
//!
//! Comparisons allow a 1e-9 tolerance so that a figure exactly on a threshold (0.80 - 0.70
//! is 0.10000000000000009 in floating point) passes as the threshold says it should.

use serde::{Deserialize, Serialize};

use crate::config::EvalConfig;

/// Slack for floating-point comparisons against thresholds.
const EPS: f64 = 1e-9;

/// The gate thresholds of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    pub min_qwk: f64,
    pub max_gap_to_human: f64,
    pub max_abs_smd: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates::from(&EvalConfig::default())
    }
}

impl From<&EvalConfig> for Gates {
    fn from(c: &EvalConfig) -> Self {
        Gates {
            min_qwk: c.min_qwk,
            max_gap_to_human: c.max_gap_to_human,
            max_abs_smd: c.max_abs_smd,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    MinQwk,
    GapToHuman,
    AbsSmd,
    Baseline,
}

impl GateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::MinQwk => "min_qwk",
            GateKind::GapToHuman => "gap_to_human",
            GateKind::AbsSmd => "abs_smd",
            GateKind::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    Pass,
    Fail,
    Skipped,
}

impl GateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GateStatus::Pass => "pass",
            GateStatus::Fail => "fail",
            GateStatus::Skipped => "skipped",
        }
    }
}

/// One gate's verdict with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: GateKind,
    pub status: GateStatus,
    /// The measured figure the gate tested (QWK, the gap, |SMD|, or the QWK difference).
    pub value: Option<f64>,
    /// The threshold it was tested against.
    pub threshold: Option<f64>,
    /// One sentence with the figures, shown in reports and JUnit failures.
    pub detail: String,
}

fn f3(v: f64) -> String {
    format!("{v:.3}")
}

/// QWK >= min_qwk.
pub fn min_qwk(qwk: Option<f64>, n: usize, gates: &Gates) -> GateResult {
    let t = gates.min_qwk;
    let (status, detail) = match qwk {
        None => (
            GateStatus::Fail,
            format!(
                "QWK is undefined over {n} scored item(s); need >= {}",
                f3(t)
            ),
        ),
        Some(q) if q + EPS >= t => (GateStatus::Pass, format!("QWK {} >= {}", f3(q), f3(t))),
        Some(q) => (GateStatus::Fail, format!("QWK {} < {}", f3(q), f3(t))),
    };
    GateResult {
        gate: GateKind::MinQwk,
        status,
        value: qwk,
        threshold: Some(t),
        detail,
    }
}

/// QWK >= ceiling - max_gap; the value is the gap `ceiling - QWK`.
pub fn gap_to_human(qwk: Option<f64>, ceiling: Option<f64>, gates: &Gates) -> GateResult {
    let t = gates.max_gap_to_human;
    let (status, value, detail) = match (qwk, ceiling) {
        (_, None) => (
            GateStatus::Skipped,
            None,
            "no human-human QWK (no item with two human graders, or no variance)".to_string(),
        ),
        (None, Some(c)) => (
            GateStatus::Fail,
            None,
            format!("QWK is undefined; human-human QWK {}", f3(c)),
        ),
        (Some(q), Some(c)) => {
            let gap = c - q;
            if gap <= t + EPS {
                (
                    GateStatus::Pass,
                    Some(gap),
                    format!(
                        "QWK {} vs human-human {}: gap {} <= {}",
                        f3(q),
                        f3(c),
                        f3(gap),
                        f3(t)
                    ),
                )
            } else {
                (
                    GateStatus::Fail,
                    Some(gap),
                    format!(
                        "QWK {} vs human-human {}: gap {} > {}",
                        f3(q),
                        f3(c),
                        f3(gap),
                        f3(t)
                    ),
                )
            }
        }
    };
    GateResult {
        gate: GateKind::GapToHuman,
        status,
        value,
        threshold: Some(t),
        detail,
    }
}

/// |SMD| <= max_abs_smd; the value is |SMD|.
pub fn abs_smd(smd: Option<f64>, gates: &Gates) -> GateResult {
    let t = gates.max_abs_smd;
    let (status, detail) = match smd {
        None => (
            GateStatus::Fail,
            format!(
                "SMD is undefined (fewer than 2 scored items or no variance); need |SMD| <= {}",
                f3(t)
            ),
        ),
        Some(s) if s.abs() <= t + EPS => (
            GateStatus::Pass,
            format!("|SMD| {} <= {} (SMD {:+.3})", f3(s.abs()), f3(t), s),
        ),
        Some(s) => (
            GateStatus::Fail,
            format!("|SMD| {} > {} (SMD {:+.3})", f3(s.abs()), f3(t), s),
        ),
    };
    GateResult {
        gate: GateKind::AbsSmd,
        status,
        value: smd.map(f64::abs),
        threshold: Some(t),
        detail,
    }
}

/// The baseline gate from a paired comparison.
pub fn baseline(cmp: &super::PairedComparison, baseline_key: &str) -> GateResult {
    let ci = cmp
        .ci
        .map(|[lo, hi]| format!(" (95% CI [{:+.3}, {:+.3}])", lo, hi))
        .unwrap_or_default();
    let diff = cmp
        .diff
        .map_or_else(|| "undefined".to_string(), |d| format!("{d:+.3}"));
    let (status, detail) = if cmp.significantly_worse {
        (
            GateStatus::Fail,
            format!("significantly worse than {baseline_key}: QWK difference {diff}{ci}"),
        )
    } else if cmp.ci.is_none() {
        (
            GateStatus::Skipped,
            format!("no interval for the QWK difference against {baseline_key} ({diff} over {} paired items)", cmp.n),
        )
    } else {
        (
            GateStatus::Pass,
            format!("not significantly worse than {baseline_key}: QWK difference {diff}{ci}"),
        )
    };
    GateResult {
        gate: GateKind::Baseline,
        status,
        value: cmp.diff,
        threshold: Some(0.0),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_inclusive_despite_float_error() {
        let g = Gates::default();
        assert_eq!(min_qwk(Some(0.70), 10, &g).status, GateStatus::Pass);
        assert_eq!(min_qwk(Some(0.699), 10, &g).status, GateStatus::Fail);
        assert_eq!(min_qwk(None, 0, &g).status, GateStatus::Fail);
        assert_eq!(
            gap_to_human(Some(0.70), Some(0.80), &g).status,
            GateStatus::Pass
        );
        assert_eq!(
            gap_to_human(Some(0.69), Some(0.80), &g).status,
            GateStatus::Fail
        );
        assert_eq!(
            gap_to_human(Some(0.1), None, &g).status,
            GateStatus::Skipped
        );
        assert_eq!(abs_smd(Some(-0.15), &g).status, GateStatus::Pass);
        assert_eq!(abs_smd(Some(0.151), &g).status, GateStatus::Fail);
        assert_eq!(abs_smd(None, &g).status, GateStatus::Fail);
    }
}
