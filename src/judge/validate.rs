//! Parsing a model's output into a [`Judgment`] and checking it against the rubric. Both
//! produce human-readable problems: they are fed back to the model in the repair retry and,
//! if the repair fails too, shown as the reason the grading is unscored.

use std::collections::BTreeSet;

use super::Judgment;
use crate::prompts::PromptFile;

/// Parses the assistant's text. Tolerates a Markdown code fence around the JSON because some
/// OpenAI-compatible servers add one even in JSON mode; anything else is a parse failure.
pub fn parse_judgment(content: &str) -> Result<Judgment, String> {
    let trimmed = content.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    if body.is_empty() {
        return Err("the output was empty".into());
    }
    serde_json::from_str::<Judgment>(body)
        .map_err(|e| format!("the output is not a valid judgment JSON object: {e}"))
}

/// Checks every dimension is scored exactly once and within its scale, and that only known
/// flags are raised. Returns every problem found, not just the first, so one repair can fix all.
pub fn validate(judgment: &Judgment, prompt: &PromptFile) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &judgment.scores {
        match prompt.dimensions.iter().find(|d| d.id == s.dimension) {
            None => problems.push(format!("unknown dimension `{}`", s.dimension)),
            Some(d) => {
                if !seen.insert(s.dimension.as_str()) {
                    problems.push(format!("dimension `{}` is scored twice", s.dimension));
                }
                let ok = u8::try_from(s.score).is_ok_and(|v| d.scale.contains(v));
                if !ok {
                    problems.push(format!(
                        "score {} for `{}` is outside its scale {}-{}",
                        s.score, s.dimension, d.scale.min, d.scale.max
                    ));
                }
            }
        }
    }
    for d in &prompt.dimensions {
        if !seen.contains(d.id.as_str()) {
            problems.push(format!("dimension `{}` is missing", d.id));
        }
    }
    let mut flags_seen = BTreeSet::new();
    for f in &judgment.flags {
        if !prompt.flags.iter().any(|fd| fd.id == f.id) {
            problems.push(format!("unknown flag `{}`", f.id));
        } else if !flags_seen.insert(f.id.as_str()) {
            problems.push(format!("flag `{}` is raised twice", f.id));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
