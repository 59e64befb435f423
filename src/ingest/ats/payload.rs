//! Shared payload reading for the ATS vendors: where a vendor keeps the transcript, stage,
//! question and candidate (a [`Shape`]), custom-field lookup, link detection, and turning the
//! transcript value into a [`Transcript`] with the ingest parsers.

use serde_json::{Map, Value};

use crate::domain::{Candidate, Format, Stage, Transcript};
use crate::ingest::{self, Limits};

use super::{stage_from_title, AtsError, IncomingSubmission};

/// Normalizes a key or display name: camelCase split, lowercase, every run of
/// non-alphanumerics one `_`, no leading or trailing `_`. "Interview Transcript",
/// `interviewTranscript` and `interview-transcript` all become `interview_transcript`.
pub(crate) fn norm_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev: Option<char> = None;
    for c in s.trim().chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase()
                && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                && !out.ends_with('_')
            {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        prev = Some(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// The value at a dotted path (`payload.application.id`); `None` when absent or `null`.
/// A numeric segment indexes an array (`payload.application.jobs.0.id`).
pub(crate) fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = root;
    for seg in path.split('.') {
        v = match v {
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => v.get(seg)?,
        };
    }
    (!v.is_null()).then_some(v)
}

/// A string, or a number written as a string (ATS ids are often numbers).
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The string at `path` (numbers too), if any.
pub(crate) fn str_at(root: &Value, path: &str) -> Option<String> {
    at(root, path).and_then(scalar_string)
}

/// An id made safe for a delivery id: at most 64 characters of `[A-Za-z0-9_.-]`, `-` if absent.
pub(crate) fn id_part(v: Option<String>) -> String {
    match v {
        Some(s) => {
            let clean: String = s
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                .take(64)
                .collect();
            if clean.is_empty() {
                "-".to_string()
            } else {
                clean
            }
        }
        None => "-".to_string(),
    }
}

/// The delivery id of a sender without one: `{action}:{a}:{b}:{sha256(raw)[..32]}`.
pub(crate) fn derived_delivery_id(
    action: Option<String>,
    primary: Option<String>,
    secondary: Option<String>,
    raw_body: &[u8],
) -> String {
    let hash = super::signature::sha256_hex(raw_body);
    format!(
        "{}:{}:{}:{}",
        id_part(action),
        id_part(primary),
        id_part(secondary),
        &hash[..32]
    )
}

/// Parses a verified body as a JSON object.
pub(crate) fn parse_object(raw_body: &[u8], envelope: &str) -> Result<Value, AtsError> {
    let value: Value = serde_json::from_slice(raw_body).map_err(|e| json_error(&e))?;
    if !value.is_object() {
        return Err(AtsError::InvalidEnvelope(format!(
            "request body must be a JSON object {envelope}"
        )));
    }
    Ok(value)
}

pub(crate) fn json_error(e: &serde_json::Error) -> AtsError {
    AtsError::InvalidJson(e.to_string())
}

/// Where one vendor keeps what grader needs. Paths are dotted, from the document root; the
/// first present one wins. Custom-field containers are objects keyed by field (Greenhouse:
/// `{"key": {"name", "type", "value"}}`) or arrays of `{"title"|"name"|"label", "value"}`
/// (Ashby), matched by normalized key or display name against the `*_NAMES` lists below.
pub(crate) struct Shape {
    pub transcript: &'static [&'static str],
    pub answer: &'static [&'static str],
    pub question: &'static [&'static str],
    pub format: &'static [&'static str],
    pub prompt: &'static [&'static str],
    /// Fields that are meant to name the stage: a value that names none is an error.
    pub stage: &'static [&'static str],
    /// Descriptive names (an interview's title, the pipeline stage): used when they name a
    /// stage, skipped (and listed in the error) when they do not.
    pub stage_titles: &'static [&'static str],
    pub custom_fields: &'static [&'static str],
    pub candidate: &'static [&'static str],
    /// For messages: where to put the transcript / the stage.
    pub transcript_hint: &'static str,
    pub stage_hint: &'static str,
}

pub(crate) const TRANSCRIPT_NAMES: &[&str] = &[
    "transcript",
    "interview_transcript",
    "transcript_text",
    "grader_transcript",
];
pub(crate) const ANSWER_NAMES: &[&str] = &["answer", "written_answer", "take_home_answer"];
pub(crate) const QUESTION_NAMES: &[&str] =
    &["question", "interview_question", "take_home_question"];
pub(crate) const STAGE_NAMES: &[&str] =
    &["stage", "interview_stage", "grader_stage", "grading_stage"];
pub(crate) const FORMAT_NAMES: &[&str] = &["transcript_format", "grader_format"];
pub(crate) const PROMPT_NAMES: &[&str] = &["grader_prompt", "judge_prompt"];

/// A value found in the payload and where.
struct Found<'a> {
    path: String,
    value: &'a Value,
}

fn first_path<'a>(root: &'a Value, paths: &[&str]) -> Option<Found<'a>> {
    paths.iter().find_map(|p| {
        at(root, p).map(|value| Found {
            path: (*p).to_string(),
            value,
        })
    })
}

/// The value of a custom field whose key or display name normalizes to one of `names`.
fn custom_field<'a>(root: &'a Value, containers: &[&str], names: &[&str]) -> Option<Found<'a>> {
    let wanted = |s: &str| names.contains(&norm_key(s).as_str());
    for container in containers {
        let Some(fields) = at(root, container) else {
            continue;
        };
        match fields {
            Value::Object(map) => {
                for (key, field) in map {
                    let label = field_label(field);
                    if wanted(key) || label.is_some_and(wanted) {
                        let (value, suffix) = field_value(field);
                        if let Some(value) = value {
                            return Some(Found {
                                path: format!("{container}.{key}{suffix}"),
                                value,
                            });
                        }
                    }
                }
            }
            Value::Array(items) => {
                for (i, field) in items.iter().enumerate() {
                    if field_label(field).is_some_and(wanted) {
                        let (value, suffix) = field_value(field);
                        if let Some(value) = value {
                            return Some(Found {
                                path: format!("{container}[{i}]{suffix}"),
                                value,
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn field_label(field: &Value) -> Option<&str> {
    ["name", "title", "label"]
        .iter()
        .find_map(|k| field.get(*k).and_then(Value::as_str))
}

/// A custom field's value: `field.value` for `{name, value}` objects, else the field itself.
fn field_value(field: &Value) -> (Option<&Value>, &'static str) {
    match field {
        Value::Object(map) if map.contains_key("value") => {
            (map.get("value").filter(|v| !v.is_null()), ".value")
        }
        Value::Null => (None, ""),
        other => (Some(other), ""),
    }
}

fn lookup<'a>(
    root: &'a Value,
    paths: &[&str],
    containers: &[&str],
    names: &[&str],
) -> Option<Found<'a>> {
    first_path(root, paths).or_else(|| custom_field(root, containers, names))
}

fn string_field(found: Option<Found<'_>>) -> Result<Option<String>, AtsError> {
    match found {
        None => Ok(None),
        Some(f) => match f.value {
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.trim().to_string())),
            _ => Err(AtsError::InvalidField {
                field: f.path,
                expected: "a string",
            }),
        },
    }
}

/// The transcript as found, before parsing.
pub(crate) enum RawTranscript {
    /// Text in any format ingest reads.
    Text(String),
    /// JSON turns, re-serialized from the parsed payload for the JSON-turns parser (the
    /// signature was already verified over the raw body).
    Turns(String),
    /// A written answer.
    Answer(String),
}

/// Whether a string is only a link: one token starting with a URL scheme.
pub(crate) fn looks_like_url(s: &str) -> bool {
    let t = s.trim();
    if t.is_empty() || t.chars().any(char::is_whitespace) {
        return false;
    }
    let lower = t.to_ascii_lowercase();
    ["http://", "https://", "s3://", "gs://", "ftp://", "file://"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// Reads a transcript value: text, a list of turns, `{"turns": [...]}`, or `{"text": ...}`.
/// `Ok(None)` for an empty value; a bare URL (or `{"url": ...}`) is a link-only error.
pub(crate) fn transcript_value(v: &Value, path: &str) -> Result<Option<RawTranscript>, AtsError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) if looks_like_url(s) => Err(AtsError::TranscriptLinkOnly {
            field: path.to_string(),
        }),
        Value::String(s) => Ok(Some(RawTranscript::Text(s.clone()))),
        Value::Array(items) if items.is_empty() => Ok(None),
        Value::Array(_) => Ok(Some(RawTranscript::Turns(v.to_string()))),
        Value::Object(map) => {
            if ["turns", "messages"]
                .iter()
                .any(|k| map.get(*k).is_some_and(Value::is_array))
            {
                return Ok(Some(RawTranscript::Turns(v.to_string())));
            }
            for key in ["text", "content", "value"] {
                if let Some(inner) = map.get(key).filter(|x| !x.is_null()) {
                    return transcript_value(inner, &format!("{path}.{key}"));
                }
            }
            for key in ["url", "href", "link", "uri"] {
                if map.get(key).and_then(Value::as_str).is_some() {
                    return Err(AtsError::TranscriptLinkOnly {
                        field: format!("{path}.{key}"),
                    });
                }
            }
            Err(AtsError::InvalidField {
                field: path.to_string(),
                expected: "the transcript text, a list of turns [{\"speaker\", \"text\"}] or {\"turns\": [...]}",
            })
        }
        _ => Err(AtsError::InvalidField {
            field: path.to_string(),
            expected: "the transcript text, a list of turns [{\"speaker\", \"text\"}] or {\"turns\": [...]}",
        }),
    }
}

const LINK_SUBJECTS: &[&str] = &[
    "transcript",
    "transcripts",
    "transcription",
    "recording",
    "recordings",
    "video",
    "audio",
];
const LINK_WORDS: &[&str] = &["url", "urls", "uri", "link", "links", "href"];

fn is_link_key(key: &str) -> bool {
    let n = norm_key(key);
    let words: Vec<&str> = n.split('_').collect();
    words.iter().any(|w| LINK_SUBJECTS.contains(w)) && words.iter().any(|w| LINK_WORDS.contains(w))
}

fn names_transcript(s: &str) -> bool {
    let n = norm_key(s);
    n.split('_')
        .any(|w| w.starts_with("transcript") || w.starts_with("recording"))
}

fn has_link(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(items) => items.iter().any(has_link),
        Value::Object(map) => ["value", "url", "href"]
            .iter()
            .any(|k| map.get(*k).is_some_and(has_link)),
        _ => false,
    }
}

/// The path of the first transcript or recording link in the payload: a `*_url`/`*Link`
/// style key about a transcript or recording, or an object with a `url` whose
/// name/filename/type/title says transcript or recording (an attachment). Ordinary URLs
/// (profile pages, résumés) are not links to a transcript.
pub(crate) fn find_transcript_link(v: &Value, path: &str, depth: usize) -> Option<String> {
    if depth > 32 {
        return None;
    }
    match v {
        Value::Object(map) => {
            if map.get("url").is_some_and(has_link)
                && [
                    "name",
                    "filename",
                    "file_name",
                    "fileName",
                    "type",
                    "title",
                    "kind",
                ]
                .iter()
                .filter_map(|k| map.get(*k).and_then(Value::as_str))
                .any(names_transcript)
            {
                return Some(format!("{path}.url"));
            }
            for (key, child) in map {
                let child_path = join(path, key);
                if is_link_key(key) && has_link(child) {
                    return Some(child_path);
                }
                // A custom field `{"name": "Transcript link", "type": "url", "value": ...}`.
                if child.get("type").and_then(Value::as_str) == Some("url")
                    && field_label(child).is_some_and(names_transcript)
                    && child.get("value").is_some_and(has_link)
                {
                    return Some(format!("{child_path}.value"));
                }
                if let Some(found) = find_transcript_link(child, &child_path, depth + 1) {
                    return Some(found);
                }
            }
            None
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_transcript_link(item, &format!("{path}[{i}]"), depth + 1)),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Finds the transcript (or written answer) of a vendor payload, rejecting link-only payloads.
fn find_transcript(root: &Value, shape: &Shape) -> Result<(RawTranscript, String), AtsError> {
    let mut candidates = Vec::new();
    candidates.extend(shape.transcript.iter().filter_map(|p| {
        at(root, p).map(|value| Found {
            path: (*p).to_string(),
            value,
        })
    }));
    candidates.extend(custom_field(root, shape.custom_fields, TRANSCRIPT_NAMES));
    for found in candidates {
        if let Some(raw) = transcript_value(found.value, &found.path)? {
            return Ok((raw, found.path));
        }
    }
    if let Some(found) = lookup(root, shape.answer, shape.custom_fields, ANSWER_NAMES) {
        match found.value {
            Value::String(s) if looks_like_url(s) => {
                return Err(AtsError::TranscriptLinkOnly { field: found.path })
            }
            Value::String(s) if !s.trim().is_empty() => {
                return Ok((RawTranscript::Answer(s.clone()), found.path))
            }
            Value::String(_) => {}
            _ => {
                return Err(AtsError::InvalidField {
                    field: found.path,
                    expected: "the written answer as a string",
                })
            }
        }
    }
    if let Some(field) = find_transcript_link(root, "", 0) {
        return Err(AtsError::TranscriptLinkOnly { field });
    }
    Err(AtsError::MissingTranscript {
        hint: shape.transcript_hint.to_string(),
    })
}

/// The stage: explicit stage fields (authoritative), then stage custom fields, then the
/// descriptive titles that happen to name a stage.
fn find_stage(root: &Value, shape: &Shape) -> Result<Stage, AtsError> {
    let explicit = first_path(root, shape.stage)
        .or_else(|| custom_field(root, shape.custom_fields, STAGE_NAMES));
    if let Some(found) = explicit {
        let value = stage_text(&found)?;
        return stage_from_title(&value).ok_or(AtsError::UnknownStage {
            field: found.path,
            value,
        });
    }
    let mut seen = Vec::new();
    for path in shape.stage_titles {
        if let Some(title) = at(root, path).and_then(Value::as_str) {
            match stage_from_title(title) {
                Some(stage) => return Ok(stage),
                None => seen.push(format!("{path} = \"{}\"", truncate(title, 80))),
            }
        }
    }
    Err(AtsError::MissingStage {
        hint: shape.stage_hint.to_string(),
        seen,
    })
}

fn stage_text(found: &Found<'_>) -> Result<String, AtsError> {
    match found.value {
        Value::String(s) => Ok(s.trim().to_string()),
        // A stage object such as `{"id": 1, "name": "System Design"}`.
        Value::Object(map) => ["name", "title", "text", "label"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| AtsError::InvalidField {
                field: found.path.clone(),
                expected: "a stage name such as \"system_design\"",
            }),
        _ => Err(AtsError::InvalidField {
            field: found.path.clone(),
            expected: "a stage name such as \"system_design\"",
        }),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Parses the raw transcript with the ingest parsers; errors name the field it came from.
pub(crate) fn parse_transcript(
    raw: RawTranscript,
    field: &str,
    format: Option<Format>,
    limits: &Limits,
) -> Result<Transcript, AtsError> {
    let wrap = |error| AtsError::Transcript {
        field: field.to_string(),
        error,
    };
    match raw {
        RawTranscript::Text(text) => ingest::parse(text.as_bytes(), format, limits).map_err(wrap),
        RawTranscript::Turns(json) => {
            ingest::parse(json.as_bytes(), Some(Format::Json), limits).map_err(wrap)
        }
        RawTranscript::Answer(answer) => ingest::written_answer(&answer, limits).map_err(wrap),
    }
}

pub(crate) fn parse_format(found: Option<String>, field: &str) -> Result<Option<Format>, AtsError> {
    found
        .map(|name| {
            ingest::format_from_name(&name).map_err(|error| AtsError::Transcript {
                field: field.to_string(),
                error,
            })
        })
        .transpose()
}

/// The candidate from the first candidate object found: `name` (or `first_name`/`firstName` +
/// `last_name`/`lastName`) and `email` (or `primaryEmailAddress.value`, the first of
/// `email_addresses`/`emailAddresses`/`emails`, each a string or `{"value"}`).
pub(crate) fn candidate_from(root: &Value, paths: &[&str]) -> Option<Candidate> {
    let obj = paths
        .iter()
        .find_map(|p| at(root, p).filter(|v| v.is_object()))?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let name = text("name").map(str::to_string).or_else(|| {
        let first = text("first_name").or_else(|| text("firstName"));
        let last = text("last_name").or_else(|| text("lastName"));
        let joined = [first, last]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!joined.is_empty()).then_some(joined)
    });
    let email_of = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) if s.contains('@') => Some(s.trim().to_string()),
            Value::Object(m) => m
                .get("value")
                .or_else(|| m.get("email"))
                .and_then(Value::as_str)
                .filter(|s| s.contains('@'))
                .map(|s| s.trim().to_string()),
            _ => None,
        }
    };
    let email = text("email")
        .filter(|s| s.contains('@'))
        .map(str::to_string)
        .or_else(|| {
            ["primaryEmailAddress", "primary_email_address"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(email_of))
        })
        .or_else(|| {
            ["email_addresses", "emailAddresses", "emails"]
                .iter()
                .filter_map(|k| obj.get(*k).and_then(Value::as_array))
                .flat_map(|items| items.iter())
                .find_map(email_of)
        });
    (name.is_some() || email.is_some()).then_some(Candidate { name, email })
}

/// Reads a vendor payload per its [`Shape`]. Order: the transcript (so a link-only payload is
/// reported as such even when it also lacks a stage), the stage, then parsing.
pub(crate) fn map_vendor(root: &Value, shape: &Shape, limits: &Limits) -> Result<Mapped, AtsError> {
    let (raw, transcript_field) = find_transcript(root, shape)?;
    let stage = find_stage(root, shape)?;
    let question = string_field(lookup(
        root,
        shape.question,
        shape.custom_fields,
        QUESTION_NAMES,
    ))?;
    let format_found = lookup(root, shape.format, shape.custom_fields, FORMAT_NAMES);
    let format_field = format_found
        .as_ref()
        .map_or_else(String::new, |f| f.path.clone());
    let format = parse_format(string_field(format_found)?, &format_field)?;
    let prompt = string_field(lookup(
        root,
        shape.prompt,
        shape.custom_fields,
        PROMPT_NAMES,
    ))?;
    let transcript = parse_transcript(raw, &transcript_field, format, limits)?;
    Ok(Mapped {
        stage,
        question,
        transcript,
        prompt,
        candidate: candidate_from(root, shape.candidate),
    })
}

pub(crate) struct Mapped {
    pub stage: Stage,
    pub question: Option<String>,
    pub transcript: Transcript,
    pub prompt: Option<String>,
    pub candidate: Option<Candidate>,
}

impl Mapped {
    pub(crate) fn into_incoming(
        self,
        external_id: Option<String>,
        metadata: Map<String, Value>,
    ) -> IncomingSubmission {
        IncomingSubmission {
            stage: self.stage,
            question: self.question,
            transcript: self.transcript,
            candidate: self.candidate,
            external_id,
            metadata: Value::Object(metadata),
            prompt: self.prompt,
        }
    }
}

/// Adds `key: value` to provenance metadata when the value is present.
pub(crate) fn put(meta: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        meta.insert(key.to_string(), Value::String(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ats_norm_key_variants() {
        assert_eq!(norm_key("Interview Transcript"), "interview_transcript");
        assert_eq!(norm_key("interviewTranscript"), "interview_transcript");
        assert_eq!(norm_key("  interview-transcript: "), "interview_transcript");
        assert_eq!(norm_key("HANDS_ON"), "hands_on");
        assert_eq!(norm_key("recordingURL"), "recording_url");
    }

    #[test]
    fn ats_link_detection_ignores_ordinary_urls() {
        let v = json!({
            "application": {
                "url": "https://app.greenhouse.io/people/1",
                "candidate": {"photo_url": null, "attachments": [
                    {"filename": "resume.pdf", "url": "https://s3/r", "type": "resume"}
                ]}
            }
        });
        assert_eq!(find_transcript_link(&v, "payload", 0), None);
        let v = json!({"a": {"attachments": [
            {"filename": "resume.pdf", "url": "https://s3/r"},
            {"filename": "interview-transcript.txt", "url": "https://s3/t"}
        ]}});
        assert_eq!(
            find_transcript_link(&v, "payload", 0).as_deref(),
            Some("payload.a.attachments[1].url")
        );
        let v = json!({"interview": {"recordingUrl": "https://zoom/rec/1"}});
        assert_eq!(
            find_transcript_link(&v, "data", 0).as_deref(),
            Some("data.interview.recordingUrl")
        );
    }

    #[test]
    fn ats_transcript_value_shapes() {
        assert!(matches!(
            transcript_value(&json!("https://x.test/t.vtt"), "t"),
            Err(AtsError::TranscriptLinkOnly { .. })
        ));
        assert!(matches!(
            transcript_value(&json!({"url": "https://x.test/t"}), "t"),
            Err(AtsError::TranscriptLinkOnly { field }) if field == "t.url"
        ));
        assert!(matches!(
            transcript_value(&json!([{"speaker": "Candidate", "text": "hi"}]), "t"),
            Ok(Some(RawTranscript::Turns(_)))
        ));
        assert!(matches!(transcript_value(&json!("  "), "t"), Ok(None)));
        assert!(matches!(
            transcript_value(&json!(42), "t"),
            Err(AtsError::InvalidField { .. })
        ));
    }
}
