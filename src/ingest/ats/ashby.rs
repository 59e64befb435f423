//! Ashby: `Ashby-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, body
//! `{"action", "data": {...}}`.
//!
//! # Accepted payload
//!
//! * `action: "ping"` (Ashby's check that the URL is live; its `data.webhookActionType` names
//!   the webhook's event type) → [`Delivery::Ping`].
//! * **Transcript** (inline text; first found): `data.transcript`, `data.interview.transcript`,
//!   `data.interviewSchedule.transcript`, `data.feedback.transcript`,
//!   `data.application.transcript`, or a custom field titled "Interview Transcript" /
//!   "Transcript" in `data.customFields`, `data.interview.customFields`,
//!   `data.application.customFields`, `data.candidate.customFields` or
//!   `data.application.candidate.customFields` (Ashby's `[{"id", "title", "value"}]` form).
//!   Or a written answer in `data.answer` / `data.interview.answer` / an "Answer" custom field,
//!   with the question in `data.question` / `data.interview.question` / an "Interview
//!   Question" custom field.
//! * **Format** (optional): `data.transcriptFormat`, `data.interview.transcriptFormat` or a
//!   "Transcript Format" custom field.
//! * **Stage**: `data.stage`, `data.interview.stage` or an "Interview Stage" custom field (must
//!   name a stage); else the first of `data.interviewStage.title`, `data.interview.title`,
//!   `data.interview.name`, `data.application.currentInterviewStage.title` that names one (an
//!   interview plan whose stages carry the guide's titles needs no extra field).
//! * **Candidate**: `data.application.candidate` or `data.candidate`: `name`,
//!   `primaryEmailAddress.value` (else the first of `emailAddresses[].value`).
//! * **Prompt** (optional): `data.graderPrompt` or a "Grader Prompt" custom field.
//! * `external_id` = `data.application.id` (or `data.applicationId`); `metadata` = `{source,
//!   event, application_id, candidate_id, job_id, interview_id}` (those present).
//!
//! Delivery id: `{action}:{application id}:{interview, schedule or feedback id}:{sha256(body)[..32]}`.

use serde_json::{Map, Value};

use crate::ingest::Limits;

use super::payload::{self, derived_delivery_id, put, str_at, Shape};
use super::signature::{hex_matches, hmac_sha256};
use super::{AtsError, Delivery};

const SENDER: &str = "Ashby";

pub(crate) const SHAPE: Shape = Shape {
    transcript: &[
        "data.transcript",
        "data.interview.transcript",
        "data.interviewSchedule.transcript",
        "data.feedback.transcript",
        "data.application.transcript",
    ],
    answer: &["data.answer", "data.interview.answer"],
    question: &["data.question", "data.interview.question"],
    format: &[
        "data.transcriptFormat",
        "data.transcript_format",
        "data.interview.transcriptFormat",
    ],
    prompt: &["data.graderPrompt", "data.grader_prompt"],
    stage: &["data.stage", "data.interview.stage", "data.interview_stage"],
    stage_titles: &[
        "data.interviewStage.title",
        "data.interview.title",
        "data.interview.name",
        "data.application.currentInterviewStage.title",
    ],
    custom_fields: &[
        "data.customFields",
        "data.interview.customFields",
        "data.application.customFields",
        "data.candidate.customFields",
        "data.application.candidate.customFields",
    ],
    candidate: &["data.application.candidate", "data.candidate"],
    transcript_hint: "put the transcript text in `data.interview.transcript` or in an application custom field titled \"Interview Transcript\"",
    stage_hint: "`data.interview.stage` or an application custom field titled \"Interview Stage\" (or title the Ashby interview stage, `data.application.currentInterviewStage.title`, after a guide stage, e.g. \"System Design\")",
};

/// Verifies the `Ashby-Signature` header over the raw body, then maps the payload.
pub(crate) fn receive(
    headers: &dyn Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &str,
    limits: &Limits,
) -> Result<Delivery, AtsError> {
    verify(headers, raw_body, secret)?;
    let root = payload::parse_object(raw_body, "{\"action\", \"data\": {...}}")?;
    let action = str_at(&root, "action");
    let application_id = str_at(&root, "data.application.id")
        .or_else(|| str_at(&root, "data.applicationId"))
        .or_else(|| str_at(&root, "data.interviewSchedule.applicationId"));
    let interview_id = str_at(&root, "data.interview.id")
        .or_else(|| str_at(&root, "data.interviewSchedule.id"))
        .or_else(|| str_at(&root, "data.feedback.id"));
    let delivery_id = derived_delivery_id(
        action.clone(),
        application_id.clone(),
        interview_id.clone(),
        raw_body,
    );
    if action.as_deref() == Some("ping") {
        return Ok(Delivery::Ping {
            delivery_id: Some(delivery_id),
        });
    }
    if !root.get("data").is_some_and(Value::is_object) {
        return Err(AtsError::InvalidEnvelope(
            "Ashby body must be {\"action\", \"data\": {...}}; `data` is missing or not an object"
                .to_string(),
        ));
    }
    let mapped = payload::map_vendor(&root, &SHAPE, limits)?;
    let mut meta = Map::new();
    meta.insert("source".into(), Value::from("ashby"));
    put(&mut meta, "event", action);
    put(&mut meta, "application_id", application_id.clone());
    put(
        &mut meta,
        "candidate_id",
        str_at(&root, "data.application.candidate.id")
            .or_else(|| str_at(&root, "data.candidate.id")),
    );
    put(
        &mut meta,
        "job_id",
        str_at(&root, "data.application.job.id"),
    );
    put(&mut meta, "interview_id", interview_id);
    Ok(Delivery::Submission {
        delivery_id,
        submission: mapped.into_incoming(application_id, meta),
    })
}

/// `Ashby-Signature: sha256=<hex>`.
fn verify(
    headers: &dyn Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &str,
) -> Result<(), AtsError> {
    let header = headers("ashby-signature").ok_or(AtsError::MissingSignature {
        sender: SENDER,
        expected: "an `Ashby-Signature: sha256=<hex>` header",
    })?;
    let malformed = |reason: &str| AtsError::MalformedSignature {
        location: "the Ashby-Signature header",
        reason: reason.to_string(),
    };
    let Some((algorithm, hex)) = header.trim().split_once('=') else {
        return Err(malformed("expected `sha256=<hex digest>`"));
    };
    if !algorithm.trim().eq_ignore_ascii_case("sha256") {
        return Err(malformed("only `sha256` signatures are supported"));
    }
    let expected = hmac_sha256(secret.as_bytes(), &[raw_body]);
    match hex_matches(&expected, hex) {
        None => Err(malformed("the digest is not hex")),
        Some(false) => Err(AtsError::InvalidSignature {
            location: "the Ashby-Signature header",
            sender: SENDER,
        }),
        Some(true) => Ok(()),
    }
}
