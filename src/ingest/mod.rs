//! Transcript formats to one normalized [`Transcript`].
//!
//! Every input — plain text, speaker-labelled text, WebVTT, SRT, a JSON list of turns or a
//! written answer — ends as the same canonical text, `"{speaker}: {turn text}\n"` per turn,
//! because every evidence offset in a report refers to that text and nothing else. Turn
//! offsets are *character* (Unicode scalar) offsets, so they mean the same thing in Rust, in
//! JSON consumers and in a browser highlighting the transcript.
//!
//! Bad input is rejected before parsing, cheapest check first (empty, binary, undecodable,
//! oversized), each with an error that names the problem, so an ATS integrator or a grader
//! can fix the file instead of reading a low score.

pub mod ats;
mod build;
mod cues;
mod json;
mod labels;
mod speaker;

use serde::{Deserialize, Serialize};

use crate::domain::{Format, Transcript};

use build::{Draft, Who};
use labels::Role;

/// Input limits. Both protect the judge's context budget and the service's memory from one
/// oversized upload; both are configurable because a long system-design interview is
/// legitimately long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Maximum characters (Unicode scalars) of the decoded input.
    pub max_chars: usize,
    /// Maximum turns of the normalized transcript (after merging caption cues).
    pub max_turns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chars: 200_000,
            max_turns: 5_000,
        }
    }
}

/// Why an input could not become a transcript. Every message names the problem in words an
/// uploader can act on; [`IngestError::code`] gives a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("transcript is empty")]
    Empty,
    #[error("input looks binary ({reason})")]
    Binary { reason: String },
    /// `offset` is the byte offset in the input as given (a byte-order mark included).
    #[error("input is not valid UTF-8 at byte {offset}")]
    NotUtf8 { offset: usize },
    #[error("transcript has {chars} characters; the limit is {limit}")]
    TooLarge { chars: usize, limit: usize },
    #[error("transcript has {turns} turns; the limit is {limit}")]
    TooManyTurns { turns: usize, limit: usize },
    /// `line` is 1-based.
    #[error("malformed {format} transcript at line {line}: {message}")]
    Malformed {
        format: &'static str,
        line: usize,
        message: String,
    },
    /// `speakers` lists the speakers that were found, to show what the labels were read as.
    #[error("{}", no_candidate_message(.speakers))]
    NoCandidateTurns { speakers: Vec<String> },
    #[error(
        "unknown transcript format `{0}`; expected one of: text, speaker, vtt, webvtt, srt, json"
    )]
    UnknownFormat(String),
}

fn no_candidate_message(speakers: &[String]) -> String {
    if speakers.is_empty() {
        "transcript has no candidate turns (it has no turns at all)".to_string()
    } else {
        const SHOWN: usize = 10;
        let mut list = speakers[..speakers.len().min(SHOWN)].join(", ");
        if speakers.len() > SHOWN {
            list.push_str(&format!(" and {} more", speakers.len() - SHOWN));
        }
        format!(
            "transcript has no candidate turns (speakers found: {list}); label the candidate's \
             lines `Candidate:`"
        )
    }
}

impl IngestError {
    /// A stable code for API error bodies (`{"error":{"code","message"}}`).
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Empty => "empty_input",
            IngestError::Binary { .. } => "binary_input",
            IngestError::NotUtf8 { .. } => "not_utf8",
            IngestError::TooLarge { .. } => "input_too_large",
            IngestError::TooManyTurns { .. } => "too_many_turns",
            IngestError::Malformed { .. } => "malformed_transcript",
            IngestError::NoCandidateTurns { .. } => "no_candidate_turns",
            IngestError::UnknownFormat(_) => "unknown_format",
        }
    }
}

/// The format named by a CLI flag or an API field (`text`, `speaker`, `vtt`/`webvtt`, `srt`,
/// `json`), case-insensitively.
pub fn format_from_name(s: &str) -> Result<Format, IngestError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" | "txt" => Ok(Format::Text),
        "speaker" => Ok(Format::Speaker),
        "vtt" | "webvtt" => Ok(Format::Vtt),
        "srt" => Ok(Format::Srt),
        "json" => Ok(Format::Json),
        _ => Err(IngestError::UnknownFormat(s.to_string())),
    }
}

/// Parses an uploaded transcript. `format: None` auto-detects it with [`detect`].
///
/// Checks run in this order, so the first problem reported is the most basic one: empty or
/// whitespace-only, binary, not UTF-8 (a UTF-8 byte-order mark is stripped first), more than
/// `limits.max_chars` characters; then the format's own parse, the turn limit, and whether
/// any candidate text remains.
pub fn parse(
    input: &[u8],
    format: Option<Format>,
    limits: &Limits,
) -> Result<Transcript, IngestError> {
    let bom = if input.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let bytes = &input[bom..];
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::Empty);
    }
    check_binary(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|e| IngestError::NotUtf8 {
        offset: bom + e.valid_up_to(),
    })?;
    check_text(text, limits)?;
    let format = format.unwrap_or_else(|| detect(text));
    let (drafts, merge) = match format {
        Format::Text | Format::WrittenAnswer => (vec![candidate_draft(text)], false),
        Format::Speaker => (speaker::parse(text)?, false),
        Format::Vtt => (cues::parse_vtt(text)?, true),
        Format::Srt => (cues::parse_srt(text)?, true),
        Format::Json => (json::parse(text)?, false),
    };
    build::build(format, drafts, merge, limits)
}

/// A written answer to a take-home question: one candidate turn, format
/// [`Format::WrittenAnswer`], with the same checks as [`parse`]. The question is the caller's
/// to keep (it is not the candidate's content and must not be quotable as evidence).
pub fn written_answer(answer: &str, limits: &Limits) -> Result<Transcript, IngestError> {
    let answer = answer.strip_prefix('\u{FEFF}').unwrap_or(answer);
    if answer.trim().is_empty() {
        return Err(IngestError::Empty);
    }
    check_binary(answer.as_bytes())?;
    check_text(answer, limits)?;
    build::build(
        Format::WrittenAnswer,
        vec![candidate_draft(answer)],
        false,
        limits,
    )
}

/// Guesses the format of decoded text:
/// a `WEBVTT` first line → [`Format::Vtt`]; a cue number then a timing with comma decimals →
/// [`Format::Srt`]; a JSON array (or an object with a `turns` array) → [`Format::Json`]; at
/// least two `Name:`-labelled lines forming a dialogue (a known role such as `Interviewer` or
/// `Q`, or two names of which one recurs) → [`Format::Speaker`]; anything else →
/// [`Format::Text`]. A wrong guess is cheap to override by naming the format.
pub fn detect(text: &str) -> Format {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if cues::is_vtt_header(first) {
        Format::Vtt
    } else if cues::looks_like_srt(text) {
        Format::Srt
    } else if json::looks_like(text) {
        Format::Json
    } else if speaker::looks_like(text) {
        Format::Speaker
    } else {
        Format::Text
    }
}

/// Unlabelled prose: all of it is the candidate's.
fn candidate_draft(text: &str) -> Draft {
    Draft {
        who: Who::Role(Role::Candidate),
        text: text.to_string(),
        start_ms: None,
        end_ms: None,
    }
}

/// Share of control bytes (other than tab, newline, carriage return and form feed), in
/// percent of the sample, above which input is treated as binary. Text files have none; a
/// few stray escape codes from a terminal copy-paste are tolerated.
const MAX_CONTROL_PERCENT: usize = 10;
/// How much of the input the control-share check samples.
const BINARY_SAMPLE: usize = 64 * 1024;

fn check_binary(bytes: &[u8]) -> Result<(), IngestError> {
    if bytes.contains(&0) {
        let utf16 = bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF");
        let reason = if utf16 {
            "contains NUL bytes; it looks like UTF-16, save it as UTF-8"
        } else {
            "contains NUL bytes"
        };
        return Err(IngestError::Binary {
            reason: reason.to_string(),
        });
    }
    let sample = &bytes[..bytes.len().min(BINARY_SAMPLE)];
    // Branch-free per byte, counted in byte-wide lanes over 255-byte chunks (no lane can
    // overflow) so that the count vectorizes 16+ bytes at a time; it reads every sample byte.
    let controls: usize = sample
        .chunks(255)
        .map(|chunk| {
            let n = chunk.iter().fold(0u8, |n, &b| {
                let low = (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r') & (b != 0x0C);
                n + u8::from(low | (b == 0x7F))
            });
            usize::from(n)
        })
        .sum();
    if !sample.is_empty() && controls * 100 > sample.len() * MAX_CONTROL_PERCENT {
        return Err(IngestError::Binary {
            reason: format!(
                "{}% of the first {} bytes are control characters",
                controls * 100 / sample.len(),
                sample.len()
            ),
        });
    }
    Ok(())
}

/// The checks on decoded text: whitespace-only in any script is empty, and the size limit.
fn check_text(text: &str, limits: &Limits) -> Result<(), IngestError> {
    if text.trim().is_empty() {
        return Err(IngestError::Empty);
    }
    let chars = text.chars().count();
    if chars > limits.max_chars {
        return Err(IngestError::TooLarge {
            chars,
            limit: limits.max_chars,
        });
    }
    Ok(())
}
