//! The offline judge: a deterministic, pattern-based grader used when no model is configured.
//!
//! It needs no network and no randomness: everything it knows comes from the prompt file, the
//! per-level indicators of each dimension (`[[dimensions.offline]]`) and the matchers of each
//! flag (`[flags.offline]`). Every pattern is compiled once, case-insensitively, when the judge
//! is built for a prompt version.
//!
//! # What it reads
//! Only the candidate's turns (all turns when no turn is labelled as the candidate, the whole
//! text when there are no turns): an interviewer's question full of keywords must not score.
//!
//! # Matching
//! A pattern *hits* when it matches somewhere in the candidate's words and that occurrence is
//! not negated: an occurrence whose own clause (the text before it back to the nearest `,`,
//! `;`, `.`, line break, … or "but"/"however"/"because"…, at most 48 characters) contains a
//! negation (`no`, `not`, `never`, `without`, `…n't`, …) does not count, so "we didn't do any
//! re-ranking" is not evidence of re-ranking. Patterns that *are* a negation ("no
//! guardrails") still work: only the text before the match is inspected.
//!
//! # Scoring rule (per dimension)
//! Start at the scale minimum and walk up the levels in order. A level whose indicator has at
//! least `min_hits` distinct hitting patterns is **met** and becomes the score. A level with
//! some hits but fewer than `min_hits` is **partly met**: the walk continues past it without
//! raising the score. A level with no hits at all **stops** the walk. (A level without
//! indicators is passed through.) So one advanced buzzword cannot lift a score over empty
//! lower levels, while a candidate who touches a lower level only lightly can still be
//! credited for a higher level that is fully evidenced. The prompt files make the lower levels
//! broad (any mention of the topic) and the upper ones narrow and demanding (several specific
//! techniques, metrics or numbers).
//!
//! # Red-flag caps
//! A few red flags describe an answer the rubric puts at the bottom of a dimension, so when
//! one is raised it caps that dimension (see [`CAPS`]): `level1_rag` caps the RAG-maturity
//! dimension at 1 (the guide calls such answers Level 1 by definition); fine-tuning for
//! factual QA, jumping to full fine-tuning, claiming hallucinations are solved, manual-only
//! testing, no guardrails and dismissing cost cap the dimensions they contradict. Caps are
//! stated in the rationale.
//!
//! # Evidence
//! Each hit is quoted as the sentence that contains it (or at most 160 characters around the
//! match when the sentence is longer), sliced verbatim from the transcript so the pipeline's
//! evidence check finds it; at most 3 quotes per dimension and 2 per flag.

use std::collections::BTreeSet;

use regex::{Regex, RegexBuilder};

use super::judgment::{JudgedFlag, JudgedScore, Judgment};
use crate::domain::{FlagKind, Scale, Speaker, Transcript, Turn};
use crate::prompts::PromptFile;

/// At most this many evidence quotes per dimension.
pub const MAX_QUOTES_PER_DIMENSION: usize = 3;
/// At most this many evidence quotes per raised flag.
pub const MAX_QUOTES_PER_FLAG: usize = 2;
/// A quote longer than this (in characters) is cut to a window around the match.
const MAX_QUOTE_CHARS: usize = 160;
/// How far back (in characters) a negation is looked for inside the clause of a match.
const NEGATION_WINDOW: usize = 48;

/// What a raised red flag caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapTarget {
    /// The dimension marked `rag_maturity = true`.
    RagMaturity,
    /// A dimension by id (ignored when the prompt has no such dimension).
    Dimension(&'static str),
}

/// `(red flag id, capped dimension, highest score allowed)`: when the flag is raised the
/// dimension scores at most the given level (never below its scale minimum).
pub const CAPS: &[(&str, CapTarget, u8)] = &[
    ("level1_rag", CapTarget::RagMaturity, 1),
    (
        "finetune_for_factual_qa",
        CapTarget::Dimension("fine_tune_vs_rag_judgment"),
        1,
    ),
    (
        "finetune_for_factual_qa",
        CapTarget::Dimension("technical_accuracy"),
        1,
    ),
    (
        "premature_full_finetune",
        CapTarget::Dimension("fine_tune_vs_rag_judgment"),
        2,
    ),
    (
        "overclaims_no_hallucination",
        CapTarget::Dimension("technical_accuracy"),
        2,
    ),
    (
        "overclaims_no_hallucination",
        CapTarget::Dimension("hallucination_mitigation"),
        2,
    ),
    (
        "manual_testing_only",
        CapTarget::Dimension("evaluation_plan"),
        2,
    ),
    (
        "manual_testing_only",
        CapTarget::Dimension("evaluation_metrics"),
        2,
    ),
    (
        "manual_testing_only",
        CapTarget::Dimension("evaluation_harnesses"),
        2,
    ),
    (
        "manual_testing_only",
        CapTarget::Dimension("fine_tuned_vs_base_evaluation"),
        2,
    ),
    (
        "manual_testing_only",
        CapTarget::Dimension("production_awareness"),
        2,
    ),
    (
        "no_guardrails_customer_facing",
        CapTarget::Dimension("guardrails_architecture"),
        1,
    ),
    (
        "no_cost_awareness",
        CapTarget::Dimension("cost_estimation"),
        1,
    ),
    (
        "no_cost_awareness",
        CapTarget::Dimension("cost_management"),
        1,
    ),
];

/// A prompt whose offline patterns cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineError {
    #[error("prompt {prompt}: dimension `{dimension}`, offline level {level}: invalid pattern `{pattern}`: {message}")]
    DimensionPattern {
        prompt: String,
        dimension: String,
        level: u8,
        pattern: String,
        message: String,
    },
    #[error(
        "prompt {prompt}: flag `{flag}`, offline.{part}: invalid pattern `{pattern}`: {message}"
    )]
    FlagPattern {
        prompt: String,
        flag: String,
        part: &'static str,
        pattern: String,
        message: String,
    },
    #[error("prompt {prompt}: dimension `{dimension}`: offline level {level} must be above the scale minimum and at most its maximum ({min}-{max})")]
    LevelOutsideScale {
        prompt: String,
        dimension: String,
        level: u8,
        min: u8,
        max: u8,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    re: Regex,
}

#[derive(Debug, Clone)]
struct LevelRule {
    level: u8,
    min_hits: usize,
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct DimensionRule {
    id: String,
    scale: Scale,
    weight: f64,
    rag_maturity: bool,
    /// Sorted by level; several entries may share a level (the level is met when one is).
    levels: Vec<LevelRule>,
}

#[derive(Debug, Clone)]
struct FlagRule {
    id: String,
    kind: FlagKind,
    any: Vec<Pattern>,
    all: Vec<Pattern>,
    none: Vec<Pattern>,
}

/// The offline judge for one prompt version. Build it once per version and reuse it: every
/// regex is compiled in [`OfflineJudge::new`].
#[derive(Debug, Clone)]
pub struct OfflineJudge {
    prompt: String,
    dimensions: Vec<DimensionRule>,
    flags: Vec<FlagRule>,
}

fn compile(pattern: &str) -> Result<Pattern, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map(|re| Pattern { re })
        .map_err(|e| {
            e.to_string()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_string()
        })
}

impl OfflineJudge {
    /// Compiles every indicator and flag pattern of `prompt`, case-insensitively.
    pub fn new(prompt: &PromptFile) -> Result<OfflineJudge, OfflineError> {
        let key = format!("{}@{}", prompt.id, prompt.version);
        let mut dimensions = Vec::with_capacity(prompt.dimensions.len());
        for d in &prompt.dimensions {
            let mut levels = Vec::with_capacity(d.offline.len());
            for ind in &d.offline {
                if ind.level <= d.scale.min || ind.level > d.scale.max {
                    return Err(OfflineError::LevelOutsideScale {
                        prompt: key,
                        dimension: d.id.clone(),
                        level: ind.level,
                        min: d.scale.min,
                        max: d.scale.max,
                    });
                }
                let mut patterns = Vec::with_capacity(ind.patterns.len());
                for p in &ind.patterns {
                    let compiled =
                        compile(p).map_err(|message| OfflineError::DimensionPattern {
                            prompt: key.clone(),
                            dimension: d.id.clone(),
                            level: ind.level,
                            pattern: p.clone(),
                            message,
                        })?;
                    patterns.push(compiled);
                }
                levels.push(LevelRule {
                    level: ind.level,
                    min_hits: ind.min_hits.max(1),
                    patterns,
                });
            }
            levels.sort_by_key(|l| l.level);
            dimensions.push(DimensionRule {
                id: d.id.clone(),
                scale: d.scale,
                weight: d.weight,
                rag_maturity: d.rag_maturity,
                levels,
            });
        }
        let mut flags = Vec::with_capacity(prompt.flags.len());
        for f in &prompt.flags {
            let part =
                |name: &'static str, list: &[String]| -> Result<Vec<Pattern>, OfflineError> {
                    list.iter()
                        .map(|p| {
                            compile(p).map_err(|message| OfflineError::FlagPattern {
                                prompt: key.clone(),
                                flag: f.id.clone(),
                                part: name,
                                pattern: p.clone(),
                                message,
                            })
                        })
                        .collect()
                };
            flags.push(FlagRule {
                id: f.id.clone(),
                kind: f.kind,
                any: part("any", &f.offline.any)?,
                all: part("all", &f.offline.all)?,
                none: part("none", &f.offline.none)?,
            });
        }
        Ok(OfflineJudge {
            prompt: key,
            dimensions,
            flags,
        })
    }

    /// `id@version` of the prompt this judge was built from.
    pub fn prompt_key(&self) -> &str {
        &self.prompt
    }

    /// Grades the candidate's words. Deterministic: the same transcript always gives the same
    /// judgment.
    pub fn judge(&self, transcript: &Transcript) -> Judgment {
        let segs = candidate_segments(transcript);

        let mut flags = Vec::new();
        let mut raised: Vec<(&str, FlagKind)> = Vec::new();
        for rule in &self.flags {
            if let Some(hits) = rule.evaluate(&segs) {
                let evidence = pick_quotes(&hits, &segs, MAX_QUOTES_PER_FLAG);
                raised.push((rule.id.as_str(), rule.kind));
                flags.push(JudgedFlag {
                    id: rule.id.clone(),
                    evidence,
                });
            }
        }
        let raised_ids: BTreeSet<&str> = raised.iter().map(|(id, _)| *id).collect();

        let scores: Vec<JudgedScore> = self
            .dimensions
            .iter()
            .map(|d| d.score(&segs, &raised_ids))
            .collect();

        let summary = self.summary(&scores, &raised);
        Judgment {
            scores,
            flags,
            summary,
        }
    }

    fn summary(&self, scores: &[JudgedScore], raised: &[(&str, FlagKind)]) -> String {
        let mut wsum = 0.0;
        let mut total = 0.0;
        for (d, s) in self.dimensions.iter().zip(scores) {
            wsum += d.weight;
            total += d.weight * d.scale.normalize(s.score as f64);
        }
        let mean = if wsum > 0.0 { total / wsum } else { 0.0 };
        let list = |kind: FlagKind| {
            let ids: Vec<&str> = raised
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(id, _)| *id)
                .collect();
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        };
        format!(
            "Offline judge: a deterministic, pattern-based assessment of the candidate's words \
             with {} (no language model was used). {} dimensions scored; weighted mean {:.2} of \
             the scale (0 = every minimum, 1 = every maximum). Red flags: {}. Green flags: {}. \
             The patterns detect vocabulary and reasoning markers, not whether the reasoning \
             is correct, so a person should review these scores.",
            self.prompt,
            scores.len(),
            mean,
            list(FlagKind::Red),
            list(FlagKind::Green)
        )
    }
}

/// One occurrence of a pattern: a byte range inside one candidate segment.
#[derive(Debug, Clone, Copy)]
struct Hit {
    seg: usize,
    start: usize,
    end: usize,
}

impl Hit {
    fn matched<'a>(&self, segs: &[&'a str]) -> &'a str {
        &segs[self.seg][self.start..self.end]
    }
    /// The quote for this hit as `(segment, byte range)`.
    fn quote(&self, segs: &[&str]) -> Quote {
        let (start, end) = quote_range(segs[self.seg], self.start, self.end);
        Quote {
            seg: self.seg,
            start,
            end,
        }
    }
}

/// A verbatim quote: a byte range of one candidate segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quote {
    seg: usize,
    start: usize,
    end: usize,
}

/// Up to `max` quotes for `hits`, in order, skipping empty ones and any that overlaps a quote
/// already taken (two hits in one sentence give one quote).
fn pick_quotes<'h>(
    hits: impl IntoIterator<Item = &'h Hit>,
    segs: &[&str],
    max: usize,
) -> Vec<String> {
    let mut taken: Vec<Quote> = Vec::new();
    for h in hits {
        if taken.len() == max {
            break;
        }
        let q = h.quote(segs);
        let overlaps = taken
            .iter()
            .any(|t| t.seg == q.seg && t.start < q.end && q.start < t.end);
        if q.start < q.end && !overlaps {
            taken.push(q);
        }
    }
    taken
        .into_iter()
        .map(|q| segs[q.seg][q.start..q.end].to_string())
        .collect()
}

impl Pattern {
    /// The first occurrence in the candidate's words that is not negated.
    fn find(&self, segs: &[&str]) -> Option<Hit> {
        for (i, seg) in segs.iter().enumerate() {
            for m in self.re.find_iter(seg) {
                if m.start() == m.end() || negated(seg, m.start()) {
                    continue;
                }
                return Some(Hit {
                    seg: i,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        None
    }
}

impl FlagRule {
    /// The hits that raise the flag (`all` hits first, then the first `any` hit), or `None`
    /// when the matcher does not match. A matcher with neither `any` nor `all` never matches.
    fn evaluate(&self, segs: &[&str]) -> Option<Vec<Hit>> {
        if self.any.is_empty() && self.all.is_empty() {
            return None;
        }
        let mut hits = Vec::new();
        for p in &self.all {
            hits.push(p.find(segs)?);
        }
        if !self.any.is_empty() {
            hits.push(self.any.iter().find_map(|p| p.find(segs))?);
        }
        if self.none.iter().any(|p| p.find(segs).is_some()) {
            return None;
        }
        Some(hits)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LevelState {
    Met,
    Partly,
    Empty,
}

struct LevelOutcome {
    level: u8,
    min_hits: usize,
    hits: Vec<Hit>,
    state: LevelState,
}

impl DimensionRule {
    fn cap(&self, raised: &BTreeSet<&str>) -> Option<(u8, &'static str)> {
        CAPS.iter()
            .filter(|(flag, target, _)| {
                raised.contains(flag)
                    && match target {
                        CapTarget::RagMaturity => self.rag_maturity,
                        CapTarget::Dimension(id) => *id == self.id,
                    }
            })
            .map(|(flag, _, max)| (*max, *flag))
            .min()
    }

    fn outcomes(&self, segs: &[&str]) -> Vec<LevelOutcome> {
        let mut out: Vec<LevelOutcome> = Vec::new();
        for rule in &self.levels {
            let hits: Vec<Hit> = rule.patterns.iter().filter_map(|p| p.find(segs)).collect();
            let state = if hits.len() >= rule.min_hits {
                LevelState::Met
            } else if hits.is_empty() {
                LevelState::Empty
            } else {
                LevelState::Partly
            };
            // Several entries for one level: keep the best of them.
            if let Some(prev) = out.last_mut().filter(|o| o.level == rule.level) {
                let better = match (&prev.state, &state) {
                    (LevelState::Met, _) => false,
                    (_, LevelState::Met) => true,
                    (LevelState::Empty, LevelState::Partly) => true,
                    _ => false,
                };
                if better {
                    *prev = LevelOutcome {
                        level: rule.level,
                        min_hits: rule.min_hits,
                        hits,
                        state,
                    };
                }
                continue;
            }
            out.push(LevelOutcome {
                level: rule.level,
                min_hits: rule.min_hits,
                hits,
                state,
            });
        }
        out
    }

    fn score(&self, segs: &[&str], raised: &BTreeSet<&str>) -> JudgedScore {
        let outcomes = self.outcomes(segs);
        let mut score = self.scale.min;
        let mut walked = 0;
        let mut stopped_at = None;
        for o in &outcomes {
            walked += 1;
            match o.state {
                LevelState::Met => score = o.level,
                LevelState::Partly => {}
                LevelState::Empty => {
                    stopped_at = Some(o.level);
                    break;
                }
            }
        }
        let uncapped = score;
        let cap = self.cap(raised);
        if let Some((max, _)) = cap {
            score = score.min(max.max(self.scale.min));
        }

        // Rationale: the levels walked, what each matched, where the walk stopped, the cap.
        let mut parts = Vec::new();
        for o in outcomes.iter().take(walked) {
            let names: Vec<String> = o
                .hits
                .iter()
                .map(|h| format!("'{}'", short_match(h.matched(segs))))
                .collect();
            let part = match o.state {
                LevelState::Met => format!(
                    "level {} met: {} ({} of {} needed)",
                    o.level,
                    names.join(", "),
                    o.hits.len(),
                    o.min_hits
                ),
                LevelState::Partly => format!(
                    "level {} partly met: {} ({} of {} needed)",
                    o.level,
                    names.join(", "),
                    o.hits.len(),
                    o.min_hits
                ),
                LevelState::Empty => format!("level {}: no indicators found", o.level),
            };
            parts.push(part);
        }
        let mut rationale = if outcomes.iter().all(|o| o.hits.is_empty()) {
            format!(
                "offline judge: no indicators of any level above {} in the candidate's words; \
                 scored the scale minimum",
                self.scale.min
            )
        } else {
            format!(
                "offline judge: scored {} on {}-{}; {}",
                score,
                self.scale.min,
                self.scale.max,
                parts.join("; ")
            )
        };
        if let Some(level) = stopped_at {
            if outcomes
                .iter()
                .any(|o| o.level > level && !o.hits.is_empty())
            {
                rationale.push_str(&format!(
                    "; higher-level indicators were not credited because level {level} has none"
                ));
            }
        }
        if let Some((max, flag)) = cap {
            if uncapped > score {
                rationale.push_str(&format!(
                    "; capped at {} (from {}) because red flag `{}` was raised",
                    max.max(self.scale.min),
                    uncapped,
                    flag
                ));
            }
        }
        rationale.push('.');

        // Evidence: the met levels supporting the score, highest first, then partly met ones.
        // Levels beyond the one that stopped the walk were not assessed and give no quotes.
        let walked = &outcomes[..walked];
        let mut ordered: Vec<&LevelOutcome> = walked
            .iter()
            .filter(|o| o.state == LevelState::Met && o.level <= uncapped)
            .rev()
            .collect();
        ordered.extend(
            walked
                .iter()
                .filter(|o| !(o.state == LevelState::Met && o.level <= uncapped)),
        );
        let evidence = pick_quotes(
            ordered.iter().flat_map(|o| o.hits.iter()),
            segs,
            MAX_QUOTES_PER_DIMENSION,
        );

        JudgedScore {
            dimension: self.id.clone(),
            score: score as i64,
            rationale,
            evidence,
        }
    }
}

/// The matched text for a rationale: whitespace collapsed, at most 40 characters.
fn short_match(s: &str) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= 40 {
        collapsed
    } else {
        let cut: String = collapsed.chars().take(37).collect();
        format!("{cut}...")
    }
}

/// The texts the judge reads, each a verbatim slice of `transcript.text` where possible.
fn candidate_segments(t: &Transcript) -> Vec<&str> {
    let candidate: Vec<&Turn> = t
        .turns
        .iter()
        .filter(|turn| turn.speaker == Speaker::Candidate)
        .collect();
    let turns: Vec<&Turn> = if candidate.is_empty() {
        t.turns.iter().collect()
    } else {
        candidate
    };
    if turns.is_empty() {
        return vec![t.text.as_str()];
    }
    turns.into_iter().map(|turn| turn_source(t, turn)).collect()
}

/// The turn's text as it occurs in the canonical text (so quotes are verbatim substrings of
/// it): the slice at the turn's character offsets when it equals the turn's text, else the
/// turn's own text.
fn turn_source<'a>(t: &'a Transcript, turn: &'a Turn) -> &'a str {
    match char_slice(&t.text, turn.start, turn.end) {
        Some(slice) if slice == turn.text => slice,
        _ => &turn.text,
    }
}

fn char_slice(s: &str, start: usize, end: usize) -> Option<&str> {
    if start > end {
        return None;
    }
    let mut idx = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()));
    let b0 = idx.nth(start)?;
    let b1 = if end == start {
        b0
    } else {
        idx.nth(end - start - 1)?
    };
    s.get(b0..b1)
}

/// Characters that end a clause for the negation check.
fn is_clause_break(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | '\n' | '(' | ')' | '—' | '–' | '"' | '“' | '”'
    )
}

/// Words that start a new clause for the negation check ("we didn't fine-tune but used RAG").
const CLAUSE_WORDS: &[&str] = &[
    "but", "however", "although", "though", "whereas", "instead", "because", "since", "so",
    "while", "then",
];

fn is_negator(word: &str) -> bool {
    matches!(
        word,
        "no" | "not"
            | "never"
            | "without"
            | "cannot"
            | "nor"
            | "neither"
            | "none"
            | "nothing"
            | "lack"
            | "lacks"
            | "lacked"
            | "lacking"
            | "skip"
            | "skipped"
            | "skipping"
    ) || word.ends_with("n't")
        || word.ends_with("n’t")
}

/// True when the clause before byte offset `at` negates what follows.
fn negated(text: &str, at: usize) -> bool {
    let mut start = at;
    for (i, c) in text[..at].char_indices().rev().take(NEGATION_WINDOW) {
        if is_clause_break(c) {
            break;
        }
        start = i;
    }
    let clause = text[start..at].to_lowercase();
    let words: Vec<&str> = clause
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .collect();
    let from = words
        .iter()
        .rposition(|w| CLAUSE_WORDS.contains(w))
        .map_or(0, |i| i + 1);
    words[from..].iter().any(|w| is_negator(w))
}

/// The sentence around `[m_start, m_end)` in `text`, trimmed, or a window of at most
/// [`MAX_QUOTE_CHARS`] characters around the match when the sentence is longer. Always a
/// slice of `text`.
#[cfg(test)]
fn quote_around(text: &str, m_start: usize, m_end: usize) -> &str {
    let (s, e) = quote_range(text, m_start, m_end);
    &text[s..e]
}

/// The byte range of the quote for the match `[m_start, m_end)`; see [`quote_around`].
fn quote_range(text: &str, m_start: usize, m_end: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let is_space_at = |i: usize| i >= bytes.len() || bytes[i].is_ascii_whitespace();
    // Sentence start: after a line break, or after . ! ? followed by whitespace.
    let mut s = 0;
    for (i, c) in text[..m_start].char_indices().rev() {
        if c == '\n' {
            s = i + 1;
            break;
        }
        if matches!(c, '.' | '!' | '?') && is_space_at(i + 1) && !abbreviation(text, i) {
            s = i + 1;
            break;
        }
    }
    // Sentence end: a line break, or . ! ? followed by whitespace or the end.
    let mut e = text.len();
    for (i, c) in text[m_end..].char_indices() {
        let at = m_end + i;
        if c == '\n' {
            e = at;
            break;
        }
        if matches!(c, '.' | '!' | '?') && is_space_at(at + 1) && !abbreviation(text, at) {
            e = at + 1;
            break;
        }
    }
    let (s, e) = trim_range(text, s, e);
    if text[s..e].chars().count() <= MAX_QUOTE_CHARS {
        return (s, e);
    }
    // Window: about 60 characters before the match, up to MAX_QUOTE_CHARS in all.
    let match_chars = text[m_start..m_end].chars().count();
    if match_chars >= MAX_QUOTE_CHARS {
        return (m_start, m_end);
    }
    let before = 60.min((MAX_QUOTE_CHARS - match_chars) / 2);
    let mut ws = m_start;
    for (n, (i, _)) in text[s..m_start].char_indices().rev().enumerate() {
        if n >= before {
            break;
        }
        ws = s + i;
    }
    let budget = MAX_QUOTE_CHARS - text[ws..m_end].chars().count();
    let mut we = m_end;
    for (n, (i, c)) in text[m_end..e].char_indices().enumerate() {
        if n >= budget {
            break;
        }
        we = m_end + i + c.len_utf8();
    }
    // Snap to word boundaries without cutting into the match.
    if ws > s {
        if let Some(p) = text[ws..m_start].find(char::is_whitespace) {
            ws += p;
        }
    }
    if we < e {
        if let Some(p) = text[m_end..we].rfind(char::is_whitespace) {
            we = m_end + p;
        }
    }
    trim_range(text, ws, we)
}

/// True when the `.` at byte `i` ends an abbreviation ("e.g.", "i.e.", "vs.") rather than a
/// sentence.
fn abbreviation(text: &str, i: usize) -> bool {
    if text.as_bytes().get(i) != Some(&b'.') {
        return false;
    }
    let word: String = text[..i]
        .chars()
        .rev()
        .take_while(|c| c.is_alphabetic() || *c == '.')
        .collect::<String>()
        .chars()
        .rev()
        .collect::<String>()
        .to_lowercase();
    matches!(
        word.as_str(),
        "e.g" | "i.e" | "vs" | "cf" | "approx" | "incl" | "etc" | "e" | "i" | "eg" | "ie"
    )
}

fn trim_range(text: &str, s: usize, e: usize) -> (usize, usize) {
    let slice = &text[s..e];
    let lead = slice.len() - slice.trim_start().len();
    let trail = slice.len() - slice.trim_end().len();
    if lead + trail >= slice.len() {
        return (s, s);
    }
    (s + lead, e - trail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Dimension, FlagDef, Format, LevelIndicator, Matcher, Severity};
    use crate::prompts::{PromptFile, Template};
    use std::collections::BTreeMap;

    fn transcript(candidate: &str) -> Transcript {
        let interviewer = "Tell me about hybrid search, re-ranking and golden sets.";
        let text = format!("Interviewer: {interviewer}\nCandidate: {candidate}\n");
        let i_start = "Interviewer: ".chars().count();
        let c_start = i_start + interviewer.chars().count() + 1 + "Candidate: ".chars().count();
        Transcript {
            format: Format::Speaker,
            text,
            turns: vec![
                Turn {
                    speaker: Speaker::Interviewer,
                    text: interviewer.into(),
                    start: i_start,
                    end: i_start + interviewer.chars().count(),
                    start_ms: None,
                    end_ms: None,
                },
                Turn {
                    speaker: Speaker::Candidate,
                    text: candidate.into(),
                    start: c_start,
                    end: c_start + candidate.chars().count(),
                    start_ms: None,
                    end_ms: None,
                },
            ],
        }
    }

    fn level(level: u8, min_hits: usize, patterns: &[&str]) -> LevelIndicator {
        LevelIndicator {
            level,
            min_hits,
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn prompt() -> PromptFile {
        let anchors: BTreeMap<String, String> = (1..=4)
            .map(|l| (l.to_string(), format!("level {l}")))
            .collect();
        PromptFile {
            id: "t".into(),
            version: "v1".into(),
            stage: crate::domain::Stage::SystemDesign,
            title: "t".into(),
            description: "t".into(),
            dimensions: vec![Dimension {
                id: "retrieval".into(),
                name: "Retrieval".into(),
                description: "d".into(),
                scale: Scale { min: 1, max: 4 },
                anchors,
                layer: None,
                weight: 1.0,
                rag_maturity: true,
                offline: vec![
                    level(2, 2, &[r"\bhybrid\b", r"\bre-?rank", r"\bbm25\b"]),
                    level(3, 2, &[r"\bagentic\b", r"\bself-?correct"]),
                    level(4, 2, &[r"\bgolden\b", r"\bmulti-?tenant"]),
                ],
            }],
            flags: vec![FlagDef {
                id: "level1_rag".into(),
                kind: FlagKind::Red,
                severity: Severity::High,
                label: "l1".into(),
                description: "d".into(),
                offline: Matcher {
                    any: vec![],
                    all: vec![r"\blangchain\b".into(), r"\bpinecone\b".into()],
                    none: vec![r"\bchunk".into(), r"\bre-?rank".into()],
                },
            }],
            examples: vec![],
            template: Template {
                system: String::new(),
                user: String::new(),
            },
        }
    }

    #[test]
    fn walks_levels_and_stops_at_an_empty_one() {
        let j = OfflineJudge::new(&prompt()).unwrap();
        let s = |text: &str| j.judge(&transcript(text)).scores[0].score;
        assert_eq!(s("Hybrid search with BM25, then a re-ranker."), 2);
        assert_eq!(
            s("Hybrid BM25 plus re-ranking, agentic retrieval that can self-correct, golden sets, multi-tenant."),
            4
        );
        // Level 3 empty: level 4 indicators are not credited.
        assert_eq!(s("Hybrid BM25, golden sets, multi-tenant isolation."), 2);
        // Level 2 only partly met, level 3 met.
        assert_eq!(
            s("A re-ranker, and agentic retrieval that can self-correct."),
            3
        );
        // The interviewer's keywords never count.
        assert_eq!(s("I am not sure."), 1);
    }

    #[test]
    fn negated_mentions_do_not_count_and_flags_cap() {
        let j = OfflineJudge::new(&prompt()).unwrap();
        let out = j.judge(&transcript(
            "We used LangChain and Pinecone; we didn't do any re-ranking.",
        ));
        assert_eq!(out.flags.len(), 1, "{out:?}");
        assert_eq!(out.flags[0].id, "level1_rag");
        let out = j.judge(&transcript(
            "LangChain and Pinecone, with hybrid BM25 and agentic retrieval that self-corrects.",
        ));
        // no `re-rank` and no `chunk`: still level 1 by the flag, and the cap applies.
        assert_eq!(out.flags[0].id, "level1_rag");
        assert_eq!(out.scores[0].score, 1);
        assert!(
            out.scores[0].rationale.contains("capped"),
            "{}",
            out.scores[0].rationale
        );
    }

    #[test]
    fn negation_is_clause_local() {
        let t = "We didn't fine-tune, we used hybrid search";
        assert!(!negated(t, t.find("hybrid").unwrap()));
        let t = "We didn't fine-tune but used hybrid search";
        assert!(!negated(t, t.find("hybrid").unwrap()));
        let t = "We never had hybrid search";
        assert!(negated(t, t.find("hybrid").unwrap()));
        let t = "There was no re-ranking";
        assert!(negated(t, t.find("re-ranking").unwrap()));
        let t = "We don’t use BM25";
        assert!(negated(t, t.find("BM25").unwrap()));
    }

    #[test]
    fn quotes_are_verbatim_sentences_or_windows() {
        let text = "First sentence. We use hybrid search with BM25, e.g. for clause numbers! Last.";
        let at = text.find("hybrid").unwrap();
        assert_eq!(
            quote_around(text, at, at + 6),
            "We use hybrid search with BM25, e.g. for clause numbers!"
        );
        let long = format!("{} hybrid {}", "word ".repeat(60), "tail ".repeat(60));
        let at = long.find("hybrid").unwrap();
        let q = quote_around(&long, at, at + 6);
        assert!(q.contains("hybrid") && q.chars().count() <= MAX_QUOTE_CHARS);
        assert!(long.contains(q));
        assert!(!q.starts_with(' ') && !q.ends_with(' '));
        let uni = "Überlegung: wir nutzen “hybrid” Suche → gut.";
        let at = uni.find("hybrid").unwrap();
        assert_eq!(quote_around(uni, at, at + 6), uni);
    }

    #[test]
    fn a_bad_pattern_names_prompt_dimension_and_pattern() {
        let mut p = prompt();
        p.dimensions[0].offline[1].patterns.push("(unclosed".into());
        let err = OfflineJudge::new(&p).unwrap_err().to_string();
        assert!(
            err.contains("t@v1") && err.contains("retrieval") && err.contains("(unclosed"),
            "{err}"
        );
        let mut p = prompt();
        p.flags[0].offline.none.push("[z-a]".into());
        let err = OfflineJudge::new(&p).unwrap_err().to_string();
        assert!(
            err.contains("level1_rag") && err.contains("offline.none"),
            "{err}"
        );
        let mut p = prompt();
        p.dimensions[0].offline[0].level = 1;
        assert!(matches!(
            OfflineJudge::new(&p),
            Err(OfflineError::LevelOutsideScale { level: 1, .. })
        ));
    }

    #[test]
    fn char_slice_handles_multibyte_and_bounds() {
        assert_eq!(char_slice("añb→c", 1, 4), Some("ñb→"));
        assert_eq!(char_slice("abc", 3, 3), Some(""));
        assert_eq!(char_slice("abc", 2, 5), None);
    }
}
