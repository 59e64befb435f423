//! Agreement between the AI judge and human graders: pure functions, no I/O.
//!
//! Every figure has one exact definition, written down where it is computed:
//! - [`kappa`]: Cohen's kappa, linear- and quadratic-weighted kappa over the FULL scale;
//! - [`alpha`]: Krippendorff's alpha (nominal, ordinal, interval), any raters, missing values;
//! - [`agreement`]: the pairwise figures (correlations, MAE, RMSE, bias, SMD, exact and
//!   adjacent agreement) and [`pairwise`], which computes them all at once;
//! - [`bootstrap`]: seeded percentile bootstrap 95% intervals resampling items;
//! - [`consensus`]: the human consensus (median, halves down), the human ceiling, and
//!   per-grader agreement;
//! - [`flags`]: flag precision, recall and F1 per flag id;
//! - [`isotonic`]: the calibration map, a weighted isotonic (PAVA) fit from AI raw scores to
//!   the human scale;
//! - [`input`] and [`report`]: long-form ratings in, `grader calibrate` reports out.
//!
//! Conventions: the AI (first operand) is compared with a reference (second operand), so
//! `bias = ai - human`; an undefined figure is `None` (JSON `null`), never NaN.

pub mod agreement;
pub mod alpha;
pub mod bootstrap;
pub mod consensus;
pub mod error;
pub mod flags;
pub mod input;
pub mod isotonic;
pub mod kappa;
pub mod report;
mod table;

pub use agreement::{
    adjacent_agreement, exact_agreement, kendall_tau_b, mae, mean_bias, pairwise, pairwise_pairs,
    pearson, rmse, smd, spearman, Pair, PairwiseMetrics,
};
pub use alpha::{krippendorff_alpha, AlphaLevel};
pub use bootstrap::{bootstrap_ci, percentile, ConfidenceIntervals, CI_LEVEL};
pub use consensus::{
    human_ceiling, human_consensus, per_grader, GraderAgreement, HumanCeiling, ItemScores,
};
pub use error::CalibrationError;
pub use flags::{flag_agreement, human_flag_consensus, FlagItem, FlagMetrics, FlagReport};
pub use input::{parse_ratings, parse_scale, Rating, RatingsInput};
pub use isotonic::{pava, IsotonicError, IsotonicMap};
pub use kappa::{round_half_down, weighted_kappa, ConfusionMatrix, KappaWeights};
pub use report::{
    calibration_report, dimension_report, render_table, resolve_scales, BootstrapSettings,
    CalibrationReport, DimensionReport,
};
