//! The judgment a model (or the offline judge) returns for one sample, before validation.
//! This is exactly the JSON the output schema asks for.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Judgment {
    pub scores: Vec<JudgedScore>,
    pub flags: Vec<JudgedFlag>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgedScore {
    pub dimension: String,
    /// Signed so an out-of-range negative is a validation error, not a parse error.
    pub score: i64,
    pub rationale: String,
    /// Verbatim quotes from the candidate content supporting the score.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgedFlag {
    pub id: String,
    pub evidence: Vec<String>,
}
