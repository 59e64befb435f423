//! Greenhouse: `Signature: sha256 <hex HMAC-SHA256(secret, raw body)>`, body
//! `{"action", "payload": {...}}`.
//!
//! Greenhouse escapes unicode (`<` as `\u003c`) *before* signing, so the MAC is computed over
//! the body exactly as received; nothing is parsed before it verifies.
//!
//! # Accepted payload
//!
//! * `action: "ping"` (sent when a web hook is saved) → [`Delivery::Ping`].
//! * **Transcript** (inline text; first found): `payload.interview.transcript`,
//!   `payload.scorecard.transcript`, `payload.transcript`, `payload.application.transcript`,
//!   or a custom field keyed or named "Interview Transcript" / "Transcript" in
//!   `payload.interview.custom_fields`, `payload.application.custom_fields`,
//!   `payload.application.candidate.custom_fields` or `payload.candidate.custom_fields`
//!   (Greenhouse's `{"key": {"name", "type", "value"}}` form; a `long_text` field holds a whole
//!   transcript). Or a written answer in `payload.interview.answer` / `payload.answer` / an
//!   "Answer" custom field, with the question in `payload.interview.question` /
//!   `payload.question` / an "Interview Question" custom field.
//! * **Format** (optional, auto-detected otherwise): `payload.interview.transcript_format`,
//!   `payload.transcript_format` or a "Transcript Format" custom field.
//! * **Stage**: `payload.interview.stage`, `payload.stage` or an "Interview Stage" custom field
//!   (must name a stage); else the first of `payload.interview.name`,
//!   `payload.application.current_stage.name`, `payload.scorecard.interview_step.name`,
//!   `payload.scorecard.interview` that names one — so a hiring plan whose stages carry the
//!   guide's titles ("System Design: LLM Architecture") needs no extra field.
//! * **Candidate**: `payload.application.candidate` (or `payload.candidate`): `first_name` +
//!   `last_name`, the first of `email_addresses[].value`.
//! * **Prompt** (optional): `payload.interview.grader_prompt`, `payload.grader_prompt` or a
//!   "Grader Prompt" custom field.
//! * `external_id` = `payload.application.id`; `metadata` = `{source, event, application_id,
//!   candidate_id, job_id, interview_id, scorecard_id, greenhouse_event_id}` (those present).
//!
//! Delivery id: `{action}:{application id}:{interview or scorecard id}:{sha256(body)[..32]}`.

use serde_json::{Map, Value};

use crate::ingest::Limits;

use super::payload::{self, derived_delivery_id, put, str_at, Shape};
use super::signature::{hex_matches, hmac_sha256};
use super::{AtsError, Delivery};

const SENDER: &str = "Greenhouse";

pub(crate) const SHAPE: Shape = Shape {
    transcript: &[
        "payload.interview.transcript",
        "payload.scorecard.transcript",
        "payload.transcript",
        "payload.application.transcript",
    ],
    answer: &["payload.interview.answer", "payload.answer"],
    question: &["payload.interview.question", "payload.question"],
    format: &[
        "payload.interview.transcript_format",
        "payload.transcript_format",
    ],
    prompt: &["payload.interview.grader_prompt", "payload.grader_prompt"],
    stage: &[
        "payload.interview.stage",
        "payload.interview.interview_stage",
        "payload.stage",
        "payload.interview_stage",
    ],
    stage_titles: &[
        "payload.interview.name",
        "payload.application.current_stage.name",
        "payload.scorecard.interview_step.name",
        "payload.scorecard.interview",
    ],
    custom_fields: &[
        "payload.interview.custom_fields",
        "payload.application.custom_fields",
        "payload.application.candidate.custom_fields",
        "payload.candidate.custom_fields",
    ],
    candidate: &[
        "payload.application.candidate",
        "payload.candidate",
        "payload.person",
    ],
    transcript_hint: "put the transcript text in `payload.interview.transcript` or in an application custom field named \"Interview Transcript\" (key `interview_transcript`)",
    stage_hint: "`payload.interview.stage` or an application custom field named \"Interview Stage\" (or name the Greenhouse stage in `payload.application.current_stage.name` after a guide stage, e.g. \"System Design\")",
};

/// Verifies the `Signature` header over the raw body, then maps the payload.
pub(crate) fn receive(
    headers: &dyn Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &str,
    limits: &Limits,
) -> Result<Delivery, AtsError> {
    verify(headers, raw_body, secret)?;
    let root = payload::parse_object(raw_body, "{\"action\", \"payload\": {...}}")?;
    let action = str_at(&root, "action");
    let application_id = str_at(&root, "payload.application.id")
        .or_else(|| str_at(&root, "payload.scorecard.application_id"))
        .or_else(|| str_at(&root, "payload.application_id"));
    let interview_id = str_at(&root, "payload.interview.id");
    let scorecard_id = str_at(&root, "payload.scorecard.id");
    let delivery_id = derived_delivery_id(
        action.clone(),
        application_id.clone(),
        interview_id.clone().or_else(|| scorecard_id.clone()),
        raw_body,
    );
    if action.as_deref() == Some("ping") {
        return Ok(Delivery::Ping {
            delivery_id: Some(delivery_id),
        });
    }
    if !root.get("payload").is_some_and(Value::is_object) {
        return Err(AtsError::InvalidEnvelope(
            "Greenhouse body must be {\"action\", \"payload\": {...}}; `payload` is missing or not an object"
                .to_string(),
        ));
    }
    let mapped = payload::map_vendor(&root, &SHAPE, limits)?;
    let mut meta = Map::new();
    meta.insert("source".into(), Value::from("greenhouse"));
    put(&mut meta, "event", action);
    put(&mut meta, "application_id", application_id.clone());
    put(
        &mut meta,
        "candidate_id",
        str_at(&root, "payload.application.candidate.id")
            .or_else(|| str_at(&root, "payload.candidate.id")),
    );
    put(
        &mut meta,
        "job_id",
        str_at(&root, "payload.application.jobs.0.id"),
    );
    put(&mut meta, "interview_id", interview_id);
    put(&mut meta, "scorecard_id", scorecard_id);
    put(
        &mut meta,
        "greenhouse_event_id",
        headers("greenhouse-event-id").filter(|s| !s.trim().is_empty()),
    );
    Ok(Delivery::Submission {
        delivery_id,
        submission: mapped.into_incoming(application_id, meta),
    })
}

/// `Signature: sha256 <hex>`: the algorithm, one space, the hex HMAC-SHA256 of the raw body.
fn verify(
    headers: &dyn Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &str,
) -> Result<(), AtsError> {
    let header = headers("signature").ok_or(AtsError::MissingSignature {
        sender: SENDER,
        expected: "a `Signature: sha256 <hex>` header",
    })?;
    let malformed = |reason: &str| AtsError::MalformedSignature {
        location: "the Signature header",
        reason: reason.to_string(),
    };
    let mut parts = header.split_whitespace();
    let (Some(algorithm), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("expected `sha256 <hex digest>`"));
    };
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(malformed("only `sha256` signatures are supported"));
    }
    let expected = hmac_sha256(secret.as_bytes(), &[raw_body]);
    match hex_matches(&expected, hex) {
        None => Err(malformed("the digest is not hex")),
        Some(false) => Err(AtsError::InvalidSignature {
            location: "the Signature header",
            sender: SENDER,
        }),
        Some(true) => Ok(()),
    }
}
