//! Errors of the calibration module.
//!
//! Metrics whose value is mathematically undefined (zero variance, no pairs) are not errors:
//! they come back as `None`. Errors are reserved for input that cannot be interpreted at all,
//! so a caller can tell "the data say nothing" from "the data are malformed".

use thiserror::Error;

/// Everything that can go wrong while reading ratings or computing a report.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CalibrationError {
    /// The input had no data rows at all.
    #[error("the input holds no ratings")]
    Empty,

    /// The CSV header lacks a required column.
    #[error(
        "line {line}: the header has no `{column}` column (need item_id,dimension,rater,score)"
    )]
    MissingColumn { line: usize, column: &'static str },

    /// A row lacks a required field (short CSV row, absent JSON key, empty cell).
    #[error("line {line}: missing `{field}`")]
    MissingField { line: usize, field: &'static str },

    /// A CSV row could not be split into fields (e.g. an unterminated quote).
    #[error("line {line}: malformed CSV: {message}")]
    Csv { line: usize, message: String },

    /// A JSONL line is not a JSON object, or a field has the wrong type.
    #[error("line {line}: {message}")]
    Json { line: usize, message: String },

    /// A score (or scale bound) is not a finite number.
    #[error("line {line}: `{field}` value {value:?} is not a finite number")]
    NotNumeric {
        line: usize,
        field: &'static str,
        value: String,
    },

    /// The same rater rated the same item on the same dimension twice.
    #[error(
        "line {line}: duplicate rating for item {item_id:?}, dimension {dimension:?}, rater {rater:?} (first given on line {first_line})"
    )]
    Duplicate {
        line: usize,
        first_line: usize,
        item_id: String,
        dimension: String,
        rater: String,
    },

    /// `scale_min`/`scale_max` disagree between rows of one dimension, or are not integers.
    #[error("line {line}: {message}")]
    BadScaleColumn { line: usize, message: String },

    /// A `--scale` argument that is not `MIN-MAX` with integers MIN <= MAX.
    #[error("invalid scale {0:?}: expected MIN-MAX with integers MIN <= MAX, e.g. 1-5")]
    BadScaleSpec(String),

    /// A scale whose bounds are reversed.
    #[error("invalid scale {min}-{max}: the minimum exceeds the maximum")]
    InvalidScale { min: i64, max: i64 },

    /// A score falls outside its dimension's scale.
    #[error("{location}score {score} is outside the scale {min}-{max}")]
    OutOfScale {
        /// `"line N: "` when the line is known, empty otherwise.
        location: String,
        score: f64,
        min: i64,
        max: i64,
    },

    /// A non-finite score was handed to a metric function.
    #[error("score at position {index} is not a finite number")]
    NonFinite { index: usize },

    /// The two score vectors of a pairwise comparison differ in length.
    #[error("the AI scores ({ai}) and human scores ({human}) differ in length")]
    LengthMismatch { ai: usize, human: usize },

    /// The AI rater never appears, which almost always means a wrong `--ai-rater`.
    #[error("no ratings by the AI rater {rater:?} (raters seen: {seen}); pass --ai-rater NAME")]
    NoAiRatings { rater: String, seen: String },

    /// Every rater is the AI: there is nothing to agree with.
    #[error("no human ratings: every rating is by the AI rater {0:?}")]
    NoHumanRatings(String),

    /// A dimension was asked for that the ratings do not contain.
    #[error("no ratings for dimension {0:?}")]
    UnknownDimension(String),
}
