//! Lever: the body carries `token`, `triggeredAt` (ms since the epoch) and `signature` = hex
//! HMAC-SHA256(signatureToken, `token` + `triggeredAt`); body
//! `{"triggeredAt", "event", "signature", "token", "data": {...}}`.
//!
//! Lever's signature covers only `token` and `triggeredAt`, never `data`: the body must be
//! parsed to find the signature, and a changed `data` cannot be detected. A delivery is
//! therefore accepted only when its `triggeredAt` is within the tolerance, and its delivery id
//! is the `token`, so replaying a captured token with other data within the window collides
//! with the genuine delivery in the store's idempotency key instead of grading twice.
//!
//! # Accepted payload
//!
//! * `event` `test`, `ping` or `webhookTest` → [`Delivery::Ping`].
//! * **Transcript** (inline text; first found): `data.transcript`, `data.interview.transcript`,
//!   `data.feedback.transcript`, `data.opportunity.transcript`, or a custom field titled
//!   "Interview Transcript" in `data.customFields` / `data.interview.customFields` /
//!   `data.opportunity.customFields`. Or a written answer in `data.answer` with the question
//!   in `data.question`.
//! * **Format** (optional): `data.transcriptFormat`.
//! * **Stage**: `data.stage`, `data.interview.stage` or an "Interview Stage" custom field (must
//!   name a stage); else the first of `data.interview.subject`, `data.interview.name`,
//!   `data.toStage.text`, `data.toStageName`, `data.opportunity.stage.text` that names one.
//! * **Candidate**: `data.candidate`, `data.contact` or `data.opportunity`: `name`, `email` or
//!   the first of `emails[]`.
//! * **Prompt** (optional): `data.graderPrompt`.
//! * `external_id` = `data.opportunityId`; `metadata` = `{source, event, triggered_at,
//!   opportunity_id, candidate_id, contact_id, interview_id, panel_id}` (those present).
//!
//! Delivery id: the `token`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::ingest::Limits;

use super::payload::{self, norm_key, put, str_at, Shape};
use super::signature::{hex_matches, hmac_sha256};
use super::{AtsError, Delivery};

const SENDER: &str = "Lever";

pub(crate) const SHAPE: Shape = Shape {
    transcript: &[
        "data.transcript",
        "data.interview.transcript",
        "data.feedback.transcript",
        "data.opportunity.transcript",
    ],
    answer: &["data.answer", "data.interview.answer"],
    question: &["data.question", "data.interview.question"],
    format: &["data.transcriptFormat", "data.transcript_format"],
    prompt: &["data.graderPrompt", "data.grader_prompt"],
    stage: &["data.stage", "data.interview.stage", "data.interviewStage"],
    stage_titles: &[
        "data.interview.subject",
        "data.interview.name",
        "data.toStage.text",
        "data.toStageName",
        "data.opportunity.stage.text",
    ],
    custom_fields: &[
        "data.customFields",
        "data.interview.customFields",
        "data.opportunity.customFields",
    ],
    candidate: &["data.candidate", "data.contact", "data.opportunity"],
    transcript_hint:
        "put the transcript text in `data.interview.transcript` (or `data.transcript`)",
    stage_hint: "`data.interview.stage` (or `data.stage`)",
};

const PING_EVENTS: &[&str] = &["test", "ping", "webhook_test"];

/// Verifies `signature` over `token + triggeredAt`, then the tolerance, then maps `data`.
pub(crate) fn receive(
    raw_body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
    limits: &Limits,
) -> Result<Delivery, AtsError> {
    // Lever's signature is inside the body: the body must be read to find it.
    let root = payload::parse_object(
        raw_body,
        "{\"triggeredAt\", \"event\", \"signature\", \"token\", \"data\": {...}}",
    )?;
    let missing = AtsError::MissingSignature {
        sender: SENDER,
        expected: "`token`, `triggeredAt` and `signature` fields in the body",
    };
    let token = root
        .get("token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(missing.clone())?;
    let signature = root
        .get("signature")
        .and_then(Value::as_str)
        .ok_or(missing.clone())?;
    let triggered = triggered_at(root.get("triggeredAt").ok_or(missing)?)?;
    let expected = hmac_sha256(
        secret.as_bytes(),
        &[token.as_bytes(), triggered.text.as_bytes()],
    );
    match hex_matches(&expected, signature) {
        None => {
            return Err(AtsError::MalformedSignature {
                location: "the body's `signature` field",
                reason: "the digest is not hex".to_string(),
            })
        }
        Some(false) => {
            return Err(AtsError::InvalidSignature {
                location: "the body's `signature` field",
                sender: SENDER,
            })
        }
        Some(true) => {}
    }
    check_window(triggered.ms, now, tolerance)?;

    let event = str_at(&root, "event");
    let delivery_id = token.to_string();
    if event
        .as_deref()
        .is_some_and(|e| PING_EVENTS.contains(&norm_key(e).as_str()))
    {
        return Ok(Delivery::Ping {
            delivery_id: Some(delivery_id),
        });
    }
    if !root.get("data").is_some_and(Value::is_object) {
        return Err(AtsError::InvalidEnvelope(
            "Lever body must carry `data: {...}`; it is missing or not an object".to_string(),
        ));
    }
    let mapped = payload::map_vendor(&root, &SHAPE, limits)?;
    let opportunity_id = str_at(&root, "data.opportunityId");
    let mut meta = Map::new();
    meta.insert("source".into(), Value::from("lever"));
    put(&mut meta, "event", event);
    put(&mut meta, "triggered_at", Some(triggered.text.clone()));
    put(&mut meta, "opportunity_id", opportunity_id.clone());
    put(&mut meta, "candidate_id", str_at(&root, "data.candidateId"));
    put(&mut meta, "contact_id", str_at(&root, "data.contactId"));
    put(
        &mut meta,
        "interview_id",
        str_at(&root, "data.interviewId").or_else(|| str_at(&root, "data.interview.id")),
    );
    put(&mut meta, "panel_id", str_at(&root, "data.panelId"));
    Ok(Delivery::Submission {
        delivery_id,
        submission: mapped.into_incoming(opportunity_id, meta),
    })
}

struct TriggeredAt {
    /// The decimal digits as they enter the signed string.
    text: String,
    ms: i64,
}

/// `triggeredAt`: an integer of milliseconds (or the same digits as a string).
fn triggered_at(v: &Value) -> Result<TriggeredAt, AtsError> {
    let invalid = |reason: &str| AtsError::InvalidTimestamp {
        field: "triggeredAt",
        reason: reason.to_string(),
    };
    let text = match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => {
            return Err(invalid(
                "expected milliseconds since the epoch as an integer",
            ))
        }
    };
    let ms = text.parse::<i64>().map_err(|_| invalid("out of range"))?;
    Ok(TriggeredAt { text, ms })
}

fn check_window(ms: i64, now: DateTime<Utc>, tolerance: Duration) -> Result<(), AtsError> {
    let tol_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    let age_ms = now.timestamp_millis().saturating_sub(ms);
    if age_ms > tol_ms {
        return Err(AtsError::Stale {
            field: "triggeredAt",
            age_secs: age_ms / 1000,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    if age_ms < -tol_ms {
        return Err(AtsError::TimestampInFuture {
            field: "triggeredAt",
            ahead_secs: -age_ms / 1000,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}
