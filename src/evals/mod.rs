//! `grader eval`: regression tests of judge prompts against golden sets graded by people.
//!
//! A golden set is JSONL, one item per line: `id`, `stage`, `question`?, `answer` or
//! `transcript`, and `grades`, a list of `{rater, scores: {dimension: n}, flags: [id]}`
//! written by independent human graders. An eval
//!
//! 1. loads and checks the golden files ([`golden`]): every problem names `file:line`;
//!    scores are checked against the rubric of the prompt version actually used;
//! 2. grades every item with the judge under test, and with a baseline prompt version when
//!    one is given, with bounded concurrency and a progress line ([`run`]); with the model
//!    judge the persistent response cache makes a rerun free;
//! 3. measures per stage and dimension ([`analysis`]): the AI against the human consensus
//!    (median, halves down) with bootstrap intervals, the human-human ceiling, flag
//!    precision/recall/F1, the cross-validated effect of an isotonic calibration map
//!    ([`crossval`]), and against a baseline the paired bootstrap of the QWK difference
//!    ([`paired`]); an item the AI could not score is counted as unscored, never as a low
//!    score;
//! 4. applies the gates ([`gates`]) and renders markdown, JSON and JUnit XML ([`report`]).
//!
//! The exit code contract lives in [`EvalReport::exit_code`]: 1 when a gate fails or the
//! candidate is significantly worse than the baseline, 2 when items could not be graded at
//! all (the figures would describe a different set), 0 otherwise.

pub mod analysis;
pub mod crossval;
pub mod gates;
pub mod golden;
pub mod paired;
pub mod report;
pub mod run;

pub use analysis::{
    analyze_stage, BaselineComparison, DimensionEval, EvalReport, EvalSettings, ItemFailure,
    ItemResult, StageGrades, StageReport, Summary,
};
pub use crossval::{cross_validate, CalibrationEffect, CalibrationFigures};
pub use gates::{GateKind, GateResult, GateStatus, Gates};
pub use golden::{
    check_against_prompt, collect_files, load_golden, parse_golden, GoldenError, GoldenGrade,
    GoldenItem, Problem,
};
pub use paired::{paired_qwk_bootstrap, PairedComparison};
pub use report::{render_junit, render_markdown, render_summary};
pub use run::{
    grade_all, run_eval, AiGrade, EvalPlan, ItemJudge, Progress, ProgressMode, StagePlan,
};

/// The rater name the judge under test gets inside the calibration figures. Golden raters
/// may not use it, so the AI can never be mistaken for a human grader.
pub const AI_RATER: &str = "grader:ai";

/// Everything that stops an eval before it has figures to report.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Golden(#[from] GoldenError),
    #[error("calibration figures for {stage}/{dimension}: {source}")]
    Metrics {
        stage: String,
        dimension: String,
        source: Box<crate::calibration::CalibrationError>,
    },
    #[error("{0}")]
    Plan(String),
}
