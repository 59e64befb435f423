//! Standard Webhooks ([standardwebhooks.com](https://www.standardwebhooks.com)): headers
//! `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature` (space-separated
//! `v1,<base64>` entries, any one matching passes); the signed content is
//! `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 keyed by the base64-decoded
//! secret after its `whsec_` prefix ([`standard_key`]); a timestamp outside ±tolerance is
//! refused. Delivery id: `webhook-id`.
//!
//! # Accepted payload
//!
//! The body of `POST /v1/submissions` ([`submission_from_json`]):
//! `{"stage", "transcript" | ("question", "answer"), "format"?, "prompt"?, "candidate"?:
//! {"name", "email"}, "external_id"?, "metadata"?}`.
//!
//! * `stage` is one of the exact stage names (`system_design`, …), as in the submissions API.
//! * `transcript` is text (`format` names its format, else auto-detected), a list of turns
//!   `[{"speaker", "text"}]` or `{"turns": [...]}`; or instead `question` + `answer` for a
//!   written answer. A transcript that is only a URL, or a body with only a
//!   `transcript_url`-style field, is refused (`transcript_link_only`).
//! * `metadata` is kept as given (any JSON); `external_id` may be a string or a number.
//! * Unknown fields are ignored, so the Standard Webhooks envelope `{"type", "timestamp",
//!   "data": {...}}` also works: when the body has no `stage` but a `data` object, `data` is
//!   the submission. `type` `ping`, `test`, `webhook.ping` or `webhook.test` → ping.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{Candidate, Stage};
use crate::ingest::{IngestError, Limits};

use super::payload::{
    self, find_transcript_link, norm_key, parse_format, parse_transcript, scalar_string,
    transcript_value, RawTranscript,
};
use super::signature::{
    standard_header_matches, standard_key, standard_mac, STANDARD_SECRET_PREFIX,
};
use super::{AtsError, Delivery, IncomingSubmission};

const SENDER: &str = "Standard Webhooks";
const PING_TYPES: &[&str] = &["ping", "test", "webhook_ping", "webhook_test"];

/// Verifies the three headers, then the tolerance, then maps the body.
pub(crate) fn receive(
    headers: &dyn Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
    limits: &Limits,
) -> Result<Delivery, AtsError> {
    let delivery_id = verify(headers, raw_body, secret, now, tolerance)?;
    let root = payload::parse_object(raw_body, "(the submission JSON)")?;
    if root
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| PING_TYPES.contains(&norm_key(t).as_str()))
    {
        return Ok(Delivery::Ping {
            delivery_id: Some(delivery_id),
        });
    }
    let body = match root.get("data") {
        Some(data) if data.is_object() && root.get("stage").is_none() => data,
        _ => &root,
    };
    let submission = submission_from_json(body, limits)?;
    Ok(Delivery::Submission {
        delivery_id,
        submission,
    })
}

/// Verifies a Standard Webhooks request and returns its `webhook-id`. The signature is checked
/// before the timestamp window, so a stale error is only ever reported for an authentic
/// message.
pub fn verify(
    headers: &dyn Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<String, AtsError> {
    let secret_body = secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .unwrap_or(secret);
    if secret_body.trim().is_empty() {
        return Err(AtsError::SecretNotConfigured { sender: SENDER });
    }
    let signature = headers("webhook-signature").ok_or(AtsError::MissingSignature {
        sender: SENDER,
        expected: "`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>` headers",
    })?;
    let id = headers("webhook-id")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or(AtsError::MissingHeader("webhook-id"))?;
    let timestamp = headers("webhook-timestamp")
        .map(|s| s.trim().to_string())
        .ok_or(AtsError::MissingHeader("webhook-timestamp"))?;
    let ts: i64 = timestamp.parse().map_err(|_| AtsError::InvalidTimestamp {
        field: "the webhook-timestamp header",
        reason: format!("expected unix seconds, got \"{timestamp}\""),
    })?;
    let expected = standard_mac(&standard_key(secret), &id, &timestamp, raw_body);
    match standard_header_matches(&expected, &signature) {
        Err(reason) => {
            return Err(AtsError::MalformedSignature {
                location: "the webhook-signature header",
                reason,
            })
        }
        Ok(false) => {
            return Err(AtsError::InvalidSignature {
                location: "the webhook-signature header",
                sender: SENDER,
            })
        }
        Ok(true) => {}
    }
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now.timestamp().saturating_sub(ts);
    if age > tol {
        return Err(AtsError::Stale {
            field: "webhook-timestamp",
            age_secs: age,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    if age < -tol {
        return Err(AtsError::TimestampInFuture {
            field: "webhook-timestamp",
            ahead_secs: -age,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(id)
}

/// Maps the contract's submission JSON (the body of `POST /v1/submissions`, already parsed)
/// to an [`IncomingSubmission`]. Public so the submissions route can share it and both
/// entrances accept and refuse exactly the same bodies.
pub fn submission_from_json(body: &Value, limits: &Limits) -> Result<IncomingSubmission, AtsError> {
    let Value::Object(obj) = body else {
        return Err(AtsError::InvalidEnvelope(
            "request body must be a JSON object".to_string(),
        ));
    };
    let text = |key: &str| -> Result<Option<String>, AtsError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(AtsError::InvalidField {
                field: key.to_string(),
                expected: "a string",
            }),
        }
    };

    // The transcript first, so a link-only body says so even when it lacks a stage too.
    let transcript_given = obj.get("transcript").filter(|v| !v.is_null());
    let answer = text("answer")?;
    let question = text("question")?;
    let (raw, field) = match (transcript_given, answer) {
        (Some(_), Some(_)) => {
            return Err(AtsError::InvalidField {
                field: "answer".to_string(),
                expected: "absent when `transcript` is given (send either `transcript` or `question` + `answer`)",
            })
        }
        (Some(t), None) => match transcript_value(t, "transcript")? {
            Some(raw) => (raw, "transcript"),
            None => {
                return Err(AtsError::Transcript {
                    field: "transcript".to_string(),
                    error: IngestError::Empty,
                })
            }
        },
        (None, Some(answer)) => {
            if question.is_none() {
                return Err(AtsError::InvalidField {
                    field: "question".to_string(),
                    expected: "the question the `answer` responds to",
                });
            }
            if payload::looks_like_url(&answer) {
                return Err(AtsError::TranscriptLinkOnly {
                    field: "answer".to_string(),
                });
            }
            (RawTranscript::Answer(answer), "answer")
        }
        (None, None) => {
            if let Some(field) = find_transcript_link(body, "", 0) {
                return Err(AtsError::TranscriptLinkOnly { field });
            }
            return Err(AtsError::MissingTranscript {
                hint: "send `transcript` (text or a list of turns) or `question` + `answer`"
                    .to_string(),
            });
        }
    };

    let stage = match obj.get("stage") {
        None | Some(Value::Null) => {
            return Err(AtsError::MissingStage {
                hint: "`stage`".to_string(),
                seen: Vec::new(),
            })
        }
        Some(Value::String(s)) => Stage::from_str(s).map_err(|_| AtsError::UnknownStage {
            field: "stage".to_string(),
            value: s.clone(),
        })?,
        Some(_) => {
            return Err(AtsError::InvalidField {
                field: "stage".to_string(),
                expected: "a stage name such as \"system_design\"",
            })
        }
    };
    let format = parse_format(text("format")?, "format")?;
    let prompt = text("prompt")?;
    let candidate = match obj.get("candidate") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            let part = |key: &str| -> Result<Option<String>, AtsError> {
                match c.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                    Some(_) => Err(AtsError::InvalidField {
                        field: format!("candidate.{key}"),
                        expected: "a string",
                    }),
                }
            };
            let candidate = Candidate {
                name: part("name")?,
                email: part("email")?,
            };
            (candidate.name.is_some() || candidate.email.is_some()).then_some(candidate)
        }
        Some(_) => {
            return Err(AtsError::InvalidField {
                field: "candidate".to_string(),
                expected: "an object {\"name\", \"email\"}",
            })
        }
    };
    let external_id = match obj.get("external_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(scalar_string(v).ok_or_else(|| AtsError::InvalidField {
            field: "external_id".to_string(),
            expected: "a non-empty string or a number",
        })?),
    };
    let metadata = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let transcript = parse_transcript(raw, field, format, limits)?;
    Ok(IncomingSubmission {
        stage,
        question,
        transcript,
        candidate,
        external_id,
        metadata,
        prompt,
    })
}
