//! The vocabulary every other module speaks: stages, transcripts, rubrics, flags and the
//! report. Pure data plus the small amount of logic that is part of a type's meaning
//! (parsing a stage name, normalising a score). Knows no I/O, no HTTP, no SQL, no model API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The interview stages of the guide's 5-stage framework, plus a single take-home question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    PortfolioReview,
    SystemDesign,
    HandsOn,
    DeepDive,
    ProductionReadiness,
    WrittenAnswer,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::PortfolioReview,
        Stage::SystemDesign,
        Stage::HandsOn,
        Stage::DeepDive,
        Stage::ProductionReadiness,
        Stage::WrittenAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::PortfolioReview => "portfolio_review",
            Stage::SystemDesign => "system_design",
            Stage::HandsOn => "hands_on",
            Stage::DeepDive => "deep_dive",
            Stage::ProductionReadiness => "production_readiness",
            Stage::WrittenAnswer => "written_answer",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a stage name that is not one of [`Stage::ALL`]; it lists the valid ones so a
/// caller (CLI or HTTP) can show a useful message without knowing the list itself.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown stage `{0}`; expected one of: portfolio_review, system_design, hands_on, deep_dive, production_readiness, written_answer")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == norm)
            .ok_or_else(|| UnknownStage(s.to_string()))
    }
}

/// Who said a turn. `Other` keeps any label we could not map (e.g. a second interviewer's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Interviewer,
    Candidate,
    Other(String),
}

impl Speaker {
    pub fn label(&self) -> &str {
        match self {
            Speaker::Interviewer => "Interviewer",
            Speaker::Candidate => "Candidate",
            Speaker::Other(s) => s,
        }
    }
}

/// The input format a transcript arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Unlabelled prose; treated as one candidate turn.
    Text,
    /// `Interviewer: ...` / `Candidate: ...` lines.
    Speaker,
    Vtt,
    Srt,
    /// A JSON list of `{speaker, text, start?, end?}` objects.
    Json,
    /// A single question and the candidate's written answer.
    WrittenAnswer,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Speaker => "speaker",
            Format::Vtt => "vtt",
            Format::Srt => "srt",
            Format::Json => "json",
            Format::WrittenAnswer => "written_answer",
        }
    }
}

/// One turn of the normalized transcript. `start`/`end` are **character** (Unicode scalar)
/// offsets of the turn's text inside [`Transcript::text`]; `start_ms`/`end_ms` are the cue
/// times from WebVTT/SRT/JSON input so evidence can point to a moment of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
    pub start: usize,
    pub end: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
}

/// The normalized transcript: one canonical text that every evidence offset refers to, and
/// the turns that make it up. The canonical text is `"{Speaker}: {text}\n"` per turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub format: Format,
    pub text: String,
    pub turns: Vec<Turn>,
}

impl Transcript {
    /// Only what the candidate said: the part a judge grades and the offline judge scans.
    pub fn candidate_text(&self) -> String {
        let mut out = String::new();
        for t in self
            .turns
            .iter()
            .filter(|t| t.speaker == Speaker::Candidate)
        {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&t.text);
        }
        out
    }

    /// The turn that contains the character offset `pos`, for mapping evidence to cue times.
    pub fn turn_at(&self, pos: usize) -> Option<&Turn> {
        self.turns
            .iter()
            .find(|t| t.start <= pos && pos < t.end.max(t.start + 1))
    }
}

/// What the ATS or the caller told us about the candidate; used by redaction, never sent to a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// One thing to grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub tenant: String,
    pub stage: Stage,
    /// The interview question or take-home prompt, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    pub transcript: Transcript,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// The six layers of the guide's skill stack (section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillLayer {
    Rag,
    PromptEngineering,
    LlmApis,
    FineTuning,
    Evaluation,
    Guardrails,
}

impl SkillLayer {
    pub const ALL: [SkillLayer; 6] = [
        SkillLayer::Rag,
        SkillLayer::PromptEngineering,
        SkillLayer::LlmApis,
        SkillLayer::FineTuning,
        SkillLayer::Evaluation,
        SkillLayer::Guardrails,
    ];
}

/// An inclusive integer score range, e.g. 1-4 or 1-5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub min: u8,
    pub max: u8,
}

impl Scale {
    pub fn contains(&self, score: u8) -> bool {
        (self.min..=self.max).contains(&score)
    }
    /// Position of `score` on the scale as 0.0..=1.0, so 1-4 and 1-5 dimensions compare.
    pub fn normalize(&self, score: f64) -> f64 {
        if self.max == self.min {
            return 1.0;
        }
        ((score - self.min as f64) / (self.max - self.min) as f64).clamp(0.0, 1.0)
    }
    pub fn levels(&self) -> impl Iterator<Item = u8> {
        self.min..=self.max
    }
}

/// A regex-based matcher used by the offline judge. Every pattern is a case-insensitive
/// regular expression over the candidate's text. It matches when all of `all` match, at
/// least one of `any` matches (if `any` is non-empty), and none of `none` match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub none: Vec<String>,
}

/// Per-level indicators for the offline judge: the level is reached when at least `min_hits`
/// distinct patterns of `patterns` occur in the candidate's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelIndicator {
    pub level: u8,
    #[serde(default = "one")]
    pub min_hits: usize,
    pub patterns: Vec<String>,
}

fn one() -> usize {
    1
}

fn default_weight() -> f64 {
    1.0
}

/// One rubric dimension of a judge prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub id: String,
    pub name: String,
    pub description: String,
    pub scale: Scale,
    /// Anchor description per score level; keys are the levels as strings ("1".."5")
    /// because TOML tables have string keys.
    pub anchors: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<SkillLayer>,
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// When true this dimension's score (on a 1-4 scale) is the RAG maturity level.
    #[serde(default)]
    pub rag_maturity: bool,
    /// Offline-judge indicators, one entry per level above the minimum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offline: Vec<LevelIndicator>,
}

impl Dimension {
    pub fn anchor(&self, level: u8) -> Option<&str> {
        self.anchors.get(&level.to_string()).map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    Red,
    Green,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// A red or green flag a judge prompt can raise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagDef {
    pub id: String,
    pub kind: FlagKind,
    pub severity: Severity,
    pub label: String,
    pub description: String,
    /// How the offline judge detects it.
    #[serde(default)]
    pub offline: Matcher,
}

/// An evidence quote located in the normalized transcript (character offsets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub quote: String,
    pub start: usize,
    pub end: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionScore {
    pub dimension: String,
    /// The aggregated (median) score; `None` when the dimension could not be scored.
    pub score: Option<f64>,
    pub scale: Scale,
    /// 0..1, from the agreement of the samples (1.0 = all samples equal).
    pub confidence: f64,
    pub rationale: String,
    pub evidence: Vec<Evidence>,
    /// Per-sample raw scores, so aggregation is auditable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<u8>,
    /// `score` through the tenant's isotonic calibration map for this stage, dimension and
    /// prompt version (fitted on human grades, `POST /v1/calibration/refit`); `None` when no
    /// map exists or the dimension is unscored. `score` stays the raw judge score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaisedFlag {
    pub id: String,
    pub kind: FlagKind,
    pub label: String,
    pub severity: Severity,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerLevel {
    NotAssessed,
    None,
    Competent,
    Excellent,
}

/// The six-layer profile computed from the scores, with the guide's bar:
/// competent in at least four layers and excellent in at least two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillProfile {
    pub layers: BTreeMap<SkillLayer, LayerLevel>,
    pub competent: usize,
    pub excellent: usize,
    pub assessed: usize,
    /// `Some(true)` when the bar is met; `None` when fewer than four layers were assessed,
    /// so a single stage cannot fail a candidate on layers it never asked about.
    pub meets_bar: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    StrongHire,
    Hire,
    LeanNoHire,
    NoHire,
    /// Nothing (or too little) could be scored; a person must decide.
    InsufficientEvidence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRef {
    pub id: String,
    pub version: String,
    pub sha256: String,
}

/// Whether the L1/L2 response cache answered. Filled by the caching layer; `Miss` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    Hit,
    #[default]
    Miss,
    Coalesced,
    Bypass,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeInfo {
    /// `"offline"` for the offline judge, else the provider's model id.
    pub model: String,
    pub tier: String,
    pub samples: u32,
    pub cached: bool,
    pub cache: CacheStatus,
    pub escalated: bool,
    /// Repair retries used across samples (malformed or invalid model output).
    pub repairs: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// What the guard (`crate::guard`) did before the transcript was sent: redaction counts by
/// kind (never the values) and the suspected injection attempts with their evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardInfo {
    pub pii_redactions: u32,
    pub injection_suspected: bool,
    /// Redactions by kind: `email`, `phone`, `url`, `name`, `handle`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pii_by_kind: BTreeMap<String, u32>,
    /// The detector's findings; offsets are characters into `report.transcript.text`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injection: Vec<InjectionFinding>,
}

/// One suspected instruction aimed at the grader, found in the candidate's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectionFinding {
    /// `override`, `role_tag`, `delimiter`, `encoded`, `obfuscated` or `hidden`.
    pub family: String,
    pub evidence: Evidence,
}

/// The result of one grading. Everything a consumer needs to trust or question it: which
/// prompt version and model produced each number, the evidence, and why it needs a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeReport {
    pub id: String,
    pub created_at: String,
    pub stage: Stage,
    pub prompt: PromptRef,
    pub judge: JudgeInfo,
    /// `scored` or `unscored` (a parse/validation failure is never a low score).
    pub status: ReportStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored_reason: Option<String>,
    pub scores: Vec<DimensionScore>,
    pub flags: Vec<RaisedFlag>,
    pub skill_profile: SkillProfile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag_maturity: Option<u8>,
    /// Weighted mean of the normalized dimension scores, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall: Option<f64>,
    pub recommendation: Recommendation,
    pub needs_review: bool,
    pub review_reasons: Vec<String>,
    /// Evidence quotes the judge produced that do not occur in the transcript, dropped.
    pub dropped_quotes: u32,
    pub usage: Usage,
    pub guard: GuardInfo,
    /// The normalized transcript the evidence offsets refer to.
    pub transcript: Transcript,
    /// A short statement that this is AI-generated and advisory.
    pub notice: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Scored,
    Unscored,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_parses_names_and_rejects_unknown() {
        assert_eq!(
            "system_design".parse::<Stage>().unwrap(),
            Stage::SystemDesign
        );
        assert_eq!("Hands-On".parse::<Stage>().unwrap(), Stage::HandsOn);
        let err = "design".parse::<Stage>().unwrap_err().to_string();
        assert!(err.contains("design") && err.contains("portfolio_review"));
    }

    #[test]
    fn scale_normalizes_both_ends_and_middle() {
        let s = Scale { min: 1, max: 5 };
        assert_eq!(s.normalize(1.0), 0.0);
        assert_eq!(s.normalize(5.0), 1.0);
        assert_eq!(s.normalize(3.0), 0.5);
        assert!(!s.contains(0) && s.contains(5) && !s.contains(6));
    }
}
