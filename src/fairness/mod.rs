//! Bias audits of AI scores across demographic groups: pure functions, no I/O.
//!
//! The method is the one NYC Local Law 144 prescribes for tools that output a continuous
//! score, read with the EEOC's four-fifths rule:
//! - the **scoring rate** of a category is the share of its items scoring strictly above the
//!   median score of the whole sample;
//! - its **impact ratio** is its scoring rate divided by the highest scoring rate among the
//!   categories of the same field;
//! - a ratio below 0.8 (four fifths) is **flagged** as possible adverse impact.
//!
//! Rates and ratios are computed per category of every demographic field and per
//! intersectional category (all fields combined). `unknown` (a missing, empty or literally
//! "unknown" value) is counted and reported but never serves as the reference and gets no
//! ratio, as LL144 audits do. A category under 2% of the sample is marked `small_sample`: its
//! ratio is reported but it is neither the reference nor flagged (LL144 lets an auditor
//! exclude such categories from the calculation).
//!
//! Beside it, a **length-bias check**: the correlation of answer length (words) with the AI
//! score, next to the same correlation with the human score where people graded the item; an
//! AI that rewards length more than people do shows up as the gap. The correlations are
//! `crate::calibration`'s.
//!
//! Demographics come in separately (a file for `grader bias-audit`, the request body of
//! `POST /v1/bias-audit`); they never enter a `Submission`, so they can never reach a model.

pub mod audit;

pub use audit::{
    bias_audit, AuditOptions, AuditRow, BiasAudit, CategoryStats, FairnessError, FieldReport,
    LengthBias, INTERSECTIONAL, UNKNOWN,
};
pub use audit::{median, normalize_category, render_table};
