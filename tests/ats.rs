//! ATS webhooks: per source a valid delivery, a wrong signature, a tampered body, a ping, a
//! link-only payload and a payload without a stage; for the timestamped schemes (Lever,
//! Standard Webhooks) stale and future deliveries; Standard Webhooks known-answer vectors,
//! several signatures in one header and `whsec_` decoding; the Greenhouse `\u003c` body
//! verified over its raw bytes.
//!
//! Sample payloads live in `tests/data/ats/`, modelled on each vendor's documented webhook
//! envelope; `tests/data/ats/generate.py` wrote them (and the Lever signatures inside them).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use grader::domain::{Candidate, Format, Speaker, Stage};
use grader::ingest::ats::{
    receive, sign_standard, standard_key, AtsError, Delivery, ErrorKind, Headers,
    IncomingSubmission, Source, DEFAULT_TOLERANCE,
};
use grader::ingest::Limits;

const GH_SECRET: &str = "gh-webhook-secret-5e1d0c";
const ASHBY_SECRET: &str = "ashby-secret-token-77c1";
/// The `signatureToken` the Lever samples were signed with (see generate.py).
const LEVER_SECRET: &str = "lever-signature-token-3b9c1e7f";
/// `triggeredAt` of every Lever sample: 2026-01-01T00:00:00Z.
const LEVER_TRIGGERED_MS: i64 = 1_767_225_600_000;
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ats")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

/// A moment 30 s after the Lever samples were triggered.
fn lever_now() -> DateTime<Utc> {
    t(LEVER_TRIGGERED_MS / 1000 + 30)
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn recv_at(
    source: Source,
    headers: &Headers,
    body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Delivery, AtsError> {
    receive(
        source,
        &|name| headers.get(name),
        body,
        secret,
        now,
        DEFAULT_TOLERANCE,
        &Limits::default(),
    )
}

fn greenhouse(body: &[u8], signature: &str) -> Result<Delivery, AtsError> {
    let headers: Headers = [
        ("Content-Type", "application/json"),
        ("Signature", signature),
        (
            "Greenhouse-Event-ID",
            "3ce5180d-9119-4ddc-9ef6-21edb6e76f8a",
        ),
    ]
    .into_iter()
    .collect();
    recv_at(Source::Greenhouse, &headers, body, GH_SECRET, t(0))
}

fn greenhouse_signed(body: &[u8]) -> Result<Delivery, AtsError> {
    greenhouse(body, &format!("sha256 {}", hex_hmac(GH_SECRET, body)))
}

fn ashby(body: &[u8], signature: &str) -> Result<Delivery, AtsError> {
    let headers: Headers = [("ashby-signature", signature)].into_iter().collect();
    recv_at(Source::Ashby, &headers, body, ASHBY_SECRET, t(0))
}

fn ashby_signed(body: &[u8]) -> Result<Delivery, AtsError> {
    ashby(body, &format!("sha256={}", hex_hmac(ASHBY_SECRET, body)))
}

fn lever(body: &[u8], secret: &str, now: DateTime<Utc>) -> Result<Delivery, AtsError> {
    recv_at(Source::Lever, &Headers::new(), body, secret, now)
}

fn std_headers(id: &str, ts: i64, signature: &str) -> Headers {
    [
        ("Webhook-Id", id.to_string()),
        ("Webhook-Timestamp", ts.to_string()),
        ("Webhook-Signature", signature.to_string()),
    ]
    .into_iter()
    .collect()
}

fn standard_signed(body: &[u8], ts: i64, now: DateTime<Utc>) -> Result<Delivery, AtsError> {
    let sig = sign_standard(STD_SECRET, "msg_test_1", ts, body);
    recv_at(
        Source::Standard,
        &std_headers("msg_test_1", ts, &sig),
        body,
        STD_SECRET,
        now,
    )
}

fn submission(result: Result<Delivery, AtsError>) -> (String, IncomingSubmission) {
    match result {
        Ok(Delivery::Submission {
            delivery_id,
            submission,
        }) => (delivery_id, submission),
        other => panic!("expected a submission, got {other:?}"),
    }
}

fn error(result: Result<Delivery, AtsError>) -> AtsError {
    match result {
        Err(e) => e,
        Ok(d) => panic!("expected an error, got {d:?}"),
    }
}

fn assert_auth(e: &AtsError, code: &str) {
    assert_eq!(e.code(), code, "{e}");
    assert!(e.is_auth(), "{e} should be an auth error");
    assert_eq!(e.http_status(), 401, "{e}");
}

fn turns(s: &IncomingSubmission) -> Vec<(Speaker, String)> {
    s.transcript
        .turns
        .iter()
        .map(|t| (t.speaker.clone(), t.text.clone()))
        .collect()
}

fn flip_byte(body: &[u8], needle: &[u8]) -> Vec<u8> {
    let at = body
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in body");
    let mut out = body.to_vec();
    out[at] ^= 0x01;
    out
}

// ---------------------------------------------------------------- Greenhouse

/// The body escapes `<`, `>`, `&` and non-ASCII as `\u003c`-style sequences, as Greenhouse
/// sends it. The signature below was computed by hand over the file's raw bytes with python3:
/// `hmac.new(b"gh-webhook-secret-5e1d0c", body, hashlib.sha256).hexdigest()`.
const GH_TRANSCRIPT_SIG: &str = "905b208ee53e343494b9a27669a28533a8c2dd974539c332aa0db48d50d5570d";

#[test]
fn greenhouse_valid_delivery_with_unicode_escapes_verified_over_raw_bytes() {
    let body = data("greenhouse/stage_change_transcript.json");
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.contains("\\u003c") && text.contains("\\u00eb"));
    assert!(!text.contains('<'), "the raw body carries only escapes");

    let (delivery_id, sub) = submission(greenhouse(&body, &format!("sha256 {GH_TRANSCRIPT_SIG}")));
    assert_eq!(sub.stage, Stage::SystemDesign, "from current_stage.name");
    assert_eq!(
        sub.candidate,
        Some(Candidate {
            name: Some("Zoë Okafor".into()),
            email: Some("zoe.okafor@example.com".into()),
        })
    );
    assert_eq!(sub.transcript.format, Format::Speaker);
    let turns = turns(&sub);
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[0].0, Speaker::Interviewer);
    assert_eq!(turns[1].0, Speaker::Candidate);
    assert!(
        turns[1].1.contains("p95 end-to-end latency < 2 s") && turns[1].1.contains("<title>"),
        "escapes decoded after verification: {}",
        turns[1].1
    );
    assert!(turns[1].1.contains("BM25 & dense"));
    assert_eq!(sub.external_id.as_deref(), Some("265277"));
    assert_eq!(sub.metadata["source"], "greenhouse");
    assert_eq!(sub.metadata["event"], "candidate_stage_change");
    assert_eq!(sub.metadata["candidate_id"], "265772");
    assert_eq!(sub.metadata["job_id"], "3485");
    assert_eq!(
        sub.metadata["greenhouse_event_id"],
        "3ce5180d-9119-4ddc-9ef6-21edb6e76f8a"
    );
    assert!(
        delivery_id.starts_with("candidate_stage_change:265277:-:"),
        "{delivery_id}"
    );
    assert_eq!(delivery_id.rsplit(':').next().unwrap().len(), 32);
}

#[test]
fn greenhouse_reserialized_body_does_not_verify() {
    // Parsing and re-serializing turns `\u003c` into `<`: a receiver that did so would compute
    // a different MAC. The signature is only valid for the bytes as sent.
    let body = data("greenhouse/stage_change_transcript.json");
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialized = serde_json::to_vec(&value).unwrap();
    assert_ne!(reserialized, body);
    assert_ne!(hex_hmac(GH_SECRET, &reserialized), GH_TRANSCRIPT_SIG);
    let e = error(greenhouse(
        &reserialized,
        &format!("sha256 {GH_TRANSCRIPT_SIG}"),
    ));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn greenhouse_interview_transcript_in_webvtt() {
    let body = data("greenhouse/interview_transcript.json");
    let (_, sub) = submission(greenhouse_signed(&body));
    assert_eq!(sub.stage, Stage::HandsOn, "from payload.interview.name");
    assert_eq!(sub.transcript.format, Format::Vtt);
    let turns = turns(&sub);
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[1].0, Speaker::Candidate);
    assert!(turns[1].1.starts_with("I start with a baseline"));
    assert_eq!(sub.transcript.turns[1].start_ms, Some(6_500));
    assert_eq!(sub.candidate.unwrap().name.as_deref(), Some("Ravi Menon"));
    assert_eq!(sub.metadata["interview_id"], "31087450");
}

#[test]
fn greenhouse_invalid_signature() {
    let body = data("greenhouse/stage_change_transcript.json");
    let wrong = hex_hmac("another-secret", &body);
    let e = error(greenhouse(&body, &format!("sha256 {wrong}")));
    assert_auth(&e, "invalid_signature");
    assert!(e.to_string().contains("Greenhouse"), "{e}");

    let e = error(greenhouse(&body, &format!("sha256={GH_TRANSCRIPT_SIG}")));
    assert_auth(&e, "malformed_signature");
    let e = error(greenhouse(&body, "sha1 0123abcd"));
    assert_auth(&e, "malformed_signature");
    let e = error(greenhouse(&body, "sha256 not-hex"));
    assert_auth(&e, "malformed_signature");

    let e = error(recv_at(
        Source::Greenhouse,
        &Headers::new(),
        &body,
        GH_SECRET,
        t(0),
    ));
    assert_auth(&e, "missing_signature");
    assert!(e.to_string().contains("Signature: sha256 <hex>"), "{e}");
}

#[test]
fn greenhouse_signature_accepts_uppercase_hex() {
    let body = data("greenhouse/stage_change_transcript.json");
    let upper = GH_TRANSCRIPT_SIG.to_uppercase();
    submission(greenhouse(&body, &format!("sha256 {upper}")));
}

#[test]
fn greenhouse_tampered_body() {
    let body = data("greenhouse/stage_change_transcript.json");
    // One byte of the candidate's answer changed after signing.
    let tampered = flip_byte(&body, b"hybrid retrieval");
    let e = error(greenhouse(
        &tampered,
        &format!("sha256 {GH_TRANSCRIPT_SIG}"),
    ));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn greenhouse_ping() {
    let body = data("greenhouse/ping.json");
    match greenhouse_signed(&body) {
        Ok(Delivery::Ping { delivery_id }) => {
            assert!(delivery_id.unwrap().starts_with("ping:"));
        }
        other => panic!("expected a ping, got {other:?}"),
    }
    // A ping is verified too.
    let e = error(greenhouse(
        &body,
        &format!("sha256 {}", hex_hmac("x", &body)),
    ));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn greenhouse_link_only_payload() {
    let body = data("greenhouse/link_only.json");
    let e = error(greenhouse_signed(&body));
    assert_eq!(e.code(), "transcript_link_only");
    assert_eq!(e.kind(), ErrorKind::Unprocessable);
    assert_eq!(e.http_status(), 422);
    assert_eq!(
        e.to_string(),
        "payload links to a transcript at payload.application.custom_fields.interview_transcript.value; \
         grader fetches no URLs — include the transcript text inline"
    );
}

#[test]
fn greenhouse_missing_stage() {
    let body = data("greenhouse/missing_stage.json");
    let e = error(greenhouse_signed(&body));
    assert_eq!(e.code(), "missing_stage");
    assert_eq!(e.http_status(), 422);
    let msg = e.to_string();
    assert!(msg.contains("`payload.interview.stage`"), "{msg}");
    assert!(msg.contains("Interview Stage"), "{msg}");
    assert!(
        msg.contains("payload.application.current_stage.name = \"Assessment\""),
        "{msg}"
    );
}

#[test]
fn greenhouse_redelivery_has_the_same_delivery_id() {
    let body = data("greenhouse/stage_change_transcript.json");
    let (first, _) = submission(greenhouse_signed(&body));
    let (again, _) = submission(greenhouse_signed(&body));
    assert_eq!(first, again);
    let other = data("greenhouse/interview_transcript.json");
    let (different, _) = submission(greenhouse_signed(&other));
    assert_ne!(first, different);
    assert!(different.starts_with("interview_transcript_ready:265280:31087450:"));
}

#[test]
fn greenhouse_explicit_stage_field_wins_and_must_name_a_stage() {
    let mut value: serde_json::Value =
        serde_json::from_slice(&data("greenhouse/stage_change_transcript.json")).unwrap();
    value["payload"]["application"]["custom_fields"]["interview_stage"] = serde_json::json!({
        "name": "Interview Stage", "type": "single_select", "value": "Production Readiness & Safety"
    });
    let body = serde_json::to_vec(&value).unwrap();
    let (_, sub) = submission(greenhouse_signed(&body));
    assert_eq!(sub.stage, Stage::ProductionReadiness);

    value["payload"]["application"]["custom_fields"]["interview_stage"]["value"] =
        serde_json::json!("Culture fit");
    let body = serde_json::to_vec(&value).unwrap();
    let e = error(greenhouse_signed(&body));
    assert_eq!(e.code(), "unknown_stage");
    assert!(
        e.to_string()
            .contains("payload.application.custom_fields.interview_stage.value"),
        "{e}"
    );
}

#[test]
fn greenhouse_without_any_transcript() {
    let body = br#"{"action":"candidate_stage_change","payload":{"application":{"id":1,"current_stage":{"name":"System Design"},"candidate":{"first_name":"A","last_name":"B"}}}}"#;
    let e = error(greenhouse_signed(body));
    assert_eq!(e.code(), "missing_transcript");
    assert!(
        e.to_string().contains("payload.interview.transcript"),
        "{e}"
    );
}

// ---------------------------------------------------------------- Ashby

#[test]
fn ashby_valid_delivery() {
    let body = data("ashby/candidate_stage_change.json");
    let (delivery_id, sub) = submission(ashby_signed(&body));
    assert_eq!(
        sub.stage,
        Stage::DeepDive,
        "from currentInterviewStage.title"
    );
    assert_eq!(
        sub.candidate,
        Some(Candidate {
            name: Some("María García".into()),
            email: Some("maria.garcia@example.com".into()),
        })
    );
    let turns = turns(&sub);
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[3].0, Speaker::Candidate);
    assert!(turns[3].1.contains("LLM judge calibrated"));
    assert_eq!(
        sub.external_id.as_deref(),
        Some("0d9d1f0e-6c4a-4a55-9f0a-3c2b7c1e8a11")
    );
    assert_eq!(sub.metadata["source"], "ashby");
    assert_eq!(sub.metadata["event"], "candidateStageChange");
    assert_eq!(
        sub.metadata["job_id"],
        "9a8b7c6d-4444-4e5f-8a9b-0c1d2e3f4a5b"
    );
    assert!(delivery_id.starts_with("candidateStageChange:0d9d1f0e-6c4a-4a55-9f0a-3c2b7c1e8a11:-:"));
    assert!(sub.metadata.get("candidate_name").is_none());
}

#[test]
fn ashby_invalid_signature() {
    let body = data("ashby/candidate_stage_change.json");
    let e = error(ashby(
        &body,
        &format!("sha256={}", hex_hmac("wrong", &body)),
    ));
    assert_auth(&e, "invalid_signature");
    // Greenhouse's header format is not Ashby's.
    let e = error(ashby(
        &body,
        &format!("sha256 {}", hex_hmac(ASHBY_SECRET, &body)),
    ));
    assert_auth(&e, "malformed_signature");
    let e = error(recv_at(
        Source::Ashby,
        &Headers::new(),
        &body,
        ASHBY_SECRET,
        t(0),
    ));
    assert_auth(&e, "missing_signature");
    assert!(
        e.to_string().contains("Ashby-Signature: sha256=<hex>"),
        "{e}"
    );
}

#[test]
fn ashby_tampered_body() {
    let body = data("ashby/candidate_stage_change.json");
    let sig = format!("sha256={}", hex_hmac(ASHBY_SECRET, &body));
    let tampered = flip_byte(&body, b"LoRA");
    let e = error(ashby(&tampered, &sig));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn ashby_ping() {
    let body = data("ashby/ping.json");
    assert!(matches!(
        ashby_signed(&body),
        Ok(Delivery::Ping {
            delivery_id: Some(_)
        })
    ));
}

#[test]
fn ashby_link_only_payload() {
    let body = data("ashby/link_only.json");
    let e = error(ashby_signed(&body));
    assert_eq!(e.code(), "transcript_link_only");
    assert!(
        e.to_string().starts_with(
            "payload links to a transcript at data.interview.recordingUrl; grader fetches no URLs"
        ),
        "{e}"
    );
}

#[test]
fn ashby_missing_stage() {
    let body = data("ashby/missing_stage.json");
    let e = error(ashby_signed(&body));
    assert_eq!(e.code(), "missing_stage");
    let msg = e.to_string();
    assert!(msg.contains("`data.interview.stage`"), "{msg}");
    assert!(
        msg.contains("data.application.currentInterviewStage.title = \"Onsite\""),
        "{msg}"
    );
}

// ---------------------------------------------------------------- Lever

#[test]
fn lever_valid_delivery() {
    let body = data("lever/interview_updated.json");
    let (delivery_id, sub) = submission(lever(&body, LEVER_SECRET, lever_now()));
    assert_eq!(delivery_id, "8f1c2d3e4b5a69788796a5b4c3d2e1f0", "the token");
    assert_eq!(
        sub.stage,
        Stage::ProductionReadiness,
        "from interview.subject"
    );
    assert_eq!(
        sub.candidate,
        Some(Candidate {
            name: Some("Wei Chen".into()),
            email: Some("wei.chen@example.com".into()),
        })
    );
    assert_eq!(sub.transcript.format, Format::Json);
    let turns = turns(&sub);
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[1].0, Speaker::Candidate);
    assert!(turns[1].1.starts_with("Treat user content as data"));
    assert_eq!(sub.transcript.turns[1].start_ms, Some(6_000));
    assert_eq!(
        sub.external_id.as_deref(),
        Some("250d8f03-738a-4bba-a671-8a3d73477145")
    );
    assert_eq!(sub.metadata["event"], "interviewUpdated");
    assert_eq!(sub.metadata["triggered_at"], "1767225600000");
    assert_eq!(
        sub.metadata["panel_id"],
        "a1b2c3d4-6666-4e5f-8a9b-0c1d2e3f4a5b"
    );
}

#[test]
fn lever_invalid_signature() {
    let body = data("lever/interview_updated.json");
    let e = error(lever(&body, "some-other-signature-token", lever_now()));
    assert_auth(&e, "invalid_signature");
    assert!(e.to_string().contains("`signature` field"), "{e}");

    let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    value.as_object_mut().unwrap().remove("signature");
    let e = error(lever(
        &serde_json::to_vec(&value).unwrap(),
        LEVER_SECRET,
        lever_now(),
    ));
    assert_auth(&e, "missing_signature");
}

#[test]
fn lever_stale_and_future_deliveries() {
    let body = data("lever/interview_updated.json");
    let triggered = LEVER_TRIGGERED_MS / 1000;
    // Exactly at the tolerance is still accepted.
    submission(lever(&body, LEVER_SECRET, t(triggered + 300)));
    let e = error(lever(&body, LEVER_SECRET, t(triggered + 301)));
    assert_auth(&e, "stale_delivery");
    assert_eq!(e.kind(), ErrorKind::Stale);
    assert!(e.to_string().contains("triggeredAt is 301 s old"), "{e}");
    let e = error(lever(&body, LEVER_SECRET, t(triggered - 3600)));
    assert_auth(&e, "timestamp_in_future");
    // A stale delivery with a bad signature is reported as a bad signature.
    let e = error(lever(&body, "wrong", t(triggered + 3600)));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn lever_tampered_signed_fields() {
    let body = data("lever/interview_updated.json");
    // One byte of the token, or of triggeredAt, changed: the signature no longer matches.
    let e = error(lever(
        &flip_byte(&body, b"8f1c2d3e"),
        LEVER_SECRET,
        lever_now(),
    ));
    assert_auth(&e, "invalid_signature");
    let e = error(lever(
        &flip_byte(&body, b"7225600000,"),
        LEVER_SECRET,
        lever_now(),
    ));
    assert!(e.is_auth(), "{e}");
}

#[test]
fn lever_data_is_unsigned_so_the_token_is_the_idempotency_key() {
    // Lever's signature covers token + triggeredAt only. A body with altered `data` but a
    // captured token verifies — and maps to the same delivery id as the genuine delivery,
    // so the store's idempotent enqueue keeps the first one.
    let body = data("lever/interview_updated.json");
    let tampered = flip_byte(&body, b"Redact before logging");
    let (genuine, _) = submission(lever(&body, LEVER_SECRET, lever_now()));
    let (replayed, _) = submission(lever(&tampered, LEVER_SECRET, lever_now()));
    assert_eq!(genuine, replayed);
}

#[test]
fn lever_ping() {
    let body = data("lever/ping.json");
    match lever(&body, LEVER_SECRET, lever_now()) {
        Ok(Delivery::Ping { delivery_id }) => {
            assert_eq!(
                delivery_id.as_deref(),
                Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
            )
        }
        other => panic!("expected a ping, got {other:?}"),
    }
    let e = error(lever(&body, "wrong", lever_now()));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn lever_link_only_payload() {
    let body = data("lever/link_only.json");
    let e = error(lever(&body, LEVER_SECRET, lever_now()));
    assert_eq!(e.code(), "transcript_link_only");
    assert!(
        e.to_string()
            .starts_with("payload links to a transcript at data.interview.transcriptUrl;"),
        "{e}"
    );
}

#[test]
fn lever_missing_stage() {
    let body = data("lever/missing_stage.json");
    let e = error(lever(&body, LEVER_SECRET, lever_now()));
    assert_eq!(e.code(), "missing_stage");
    let msg = e.to_string();
    assert!(msg.contains("`data.interview.stage`"), "{msg}");
    assert!(
        msg.contains("data.interview.subject = \"Onsite loop\""),
        "{msg}"
    );
}

#[test]
fn lever_body_that_is_not_json() {
    let e = error(lever(b"token=abc", LEVER_SECRET, lever_now()));
    assert_eq!(e.code(), "invalid_json");
    assert_eq!(e.http_status(), 400);
}

// ---------------------------------------------------------------- Standard Webhooks

/// The example in the Standard Webhooks / Svix documentation, re-checked by hand with
/// python3 (`hmac.new(base64.b64decode(secret[6:]), f"{id}.{ts}.{body}".encode(),
/// hashlib.sha256)`, base64-encoded).
#[test]
fn standard_known_answer_spec_example() {
    let sig = sign_standard(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

/// Hand-computed with python3 for this test:
/// key = b"grader-standard-webhooks-test-key-0001", secret = "whsec_" + base64(key),
/// sig = base64(hmac.new(key, b"msg_2Zgrader0kat.1767225600." + body, hashlib.sha256).digest()).
#[test]
fn standard_known_answer_hand_computed() {
    let secret = "whsec_Z3JhZGVyLXN0YW5kYXJkLXdlYmhvb2tzLXRlc3Qta2V5LTAwMDE=";
    let body = br#"{"stage":"system_design","transcript":"Candidate: I would add a re-ranker."}"#;
    let expected = "v1,xwzJOOZq2IrmA91SCfM9acBdL+6srTyK8iFkZVDxYtA=";
    assert_eq!(
        sign_standard(secret, "msg_2Zgrader0kat", 1_767_225_600, body),
        expected
    );
    let headers = std_headers("msg_2Zgrader0kat", 1_767_225_600, expected);
    let (id, sub) = submission(recv_at(
        Source::Standard,
        &headers,
        body,
        secret,
        t(1_767_225_600 + 10),
    ));
    assert_eq!(id, "msg_2Zgrader0kat");
    assert_eq!(sub.stage, Stage::SystemDesign);
}

#[test]
fn standard_whsec_secret_is_base64_decoded() {
    let secret = "whsec_Z3JhZGVyLXN0YW5kYXJkLXdlYmhvb2tzLXRlc3Qta2V5LTAwMDE=";
    assert_eq!(
        standard_key(secret),
        b"grader-standard-webhooks-test-key-0001"
    );
    // Signing with the whole string as the key (no decoding) does not verify.
    let body = data("standard/submission.json");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"msg_1.1767225600.");
    mac.update(&body);
    use base64::Engine as _;
    let undecoded = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let headers = std_headers("msg_1", 1_767_225_600, &undecoded);
    let e = error(recv_at(
        Source::Standard,
        &headers,
        &body,
        secret,
        t(1_767_225_600),
    ));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn standard_valid_delivery() {
    let body = data("standard/submission.json");
    let now = 1_767_225_600;
    let (id, sub) = submission(standard_signed(&body, now - 5, t(now)));
    assert_eq!(id, "msg_test_1");
    assert_eq!(sub.stage, Stage::HandsOn);
    assert_eq!(sub.prompt.as_deref(), Some("hands_on"));
    assert_eq!(
        sub.candidate,
        Some(Candidate {
            name: Some("Ana Souza".into()),
            email: Some("ana.souza@example.com".into()),
        })
    );
    assert_eq!(sub.external_id.as_deref(), Some("req-42/app-9001"));
    assert_eq!(sub.metadata["requisition"], "REQ-42");
    let turns = turns(&sub);
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[1].0, Speaker::Candidate);

    let full = sub.clone().into_submission("acme");
    assert_eq!(full.tenant, "acme");
    assert_eq!(full.stage, Stage::HandsOn);
    assert_eq!(full.transcript, sub.transcript);
}

#[test]
fn standard_multiple_signatures_second_matches() {
    let body = data("standard/submission.json");
    let ts = 1_767_225_600;
    let good = sign_standard(STD_SECRET, "msg_multi", ts, &body);
    let old_secret = sign_standard(
        "whsec_b2xkLXNlY3JldC1yb3RhdGVkLWF3YXk=",
        "msg_multi",
        ts,
        &body,
    );
    let header = format!("v1a,bm90IGNoZWNrZWQ= {old_secret} {good}");
    let headers = std_headers("msg_multi", ts, &header);
    let (id, _) = submission(recv_at(
        Source::Standard,
        &headers,
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_eq!(id, "msg_multi");

    let headers = std_headers("msg_multi", ts, &old_secret);
    let e = error(recv_at(
        Source::Standard,
        &headers,
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn standard_invalid_signature_and_missing_headers() {
    let body = data("standard/submission.json");
    let ts = 1_767_225_600;
    let sig = sign_standard(
        "whsec_d3Jvbmctc2VjcmV0LWZvci10aGlzLXRlc3Q=",
        "msg_x",
        ts,
        &body,
    );
    let e = error(recv_at(
        Source::Standard,
        &std_headers("msg_x", ts, &sig),
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "invalid_signature");

    // The id and timestamp are signed: changing either breaks the signature.
    let sig = sign_standard(STD_SECRET, "msg_x", ts, &body);
    let e = error(recv_at(
        Source::Standard,
        &std_headers("msg_y", ts, &sig),
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "invalid_signature");
    let e = error(recv_at(
        Source::Standard,
        &std_headers("msg_x", ts + 1, &sig),
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "invalid_signature");

    let e = error(recv_at(
        Source::Standard,
        &std_headers("msg_x", ts, "v2,abc"),
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "malformed_signature");

    let only_sig: Headers = [("webhook-signature", sig.as_str())].into_iter().collect();
    let e = error(recv_at(
        Source::Standard,
        &only_sig,
        &body,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "missing_header");
    assert!(e.to_string().contains("webhook-id"), "{e}");

    let bad_ts: Headers = [
        ("webhook-id", "msg_x"),
        ("webhook-timestamp", "2026-01-01T00:00:00Z"),
        ("webhook-signature", sig.as_str()),
    ]
    .into_iter()
    .collect();
    let e = error(recv_at(Source::Standard, &bad_ts, &body, STD_SECRET, t(ts)));
    assert_auth(&e, "invalid_timestamp");
}

#[test]
fn standard_stale_and_future_deliveries() {
    let body = data("standard/submission.json");
    let now = 1_767_225_600;
    submission(standard_signed(&body, now - 300, t(now)));
    submission(standard_signed(&body, now + 300, t(now)));
    let e = error(standard_signed(&body, now - 301, t(now)));
    assert_auth(&e, "stale_delivery");
    assert!(e.to_string().contains("301 s old"), "{e}");
    let e = error(standard_signed(&body, now + 301, t(now)));
    assert_auth(&e, "timestamp_in_future");

    // A caller-chosen tolerance.
    let ts = now - 3_000;
    let sig = sign_standard(STD_SECRET, "msg_t", ts, &body);
    let headers = std_headers("msg_t", ts, &sig);
    let r = receive(
        Source::Standard,
        &|n| headers.get(n),
        &body,
        STD_SECRET,
        t(now),
        Duration::from_secs(3_600),
        &Limits::default(),
    );
    submission(r);
}

#[test]
fn standard_tampered_body() {
    let body = data("standard/submission.json");
    let ts = 1_767_225_600;
    let sig = sign_standard(STD_SECRET, "msg_tamper", ts, &body);
    let tampered = flip_byte(&body, b"hands_on");
    let e = error(recv_at(
        Source::Standard,
        &std_headers("msg_tamper", ts, &sig),
        &tampered,
        STD_SECRET,
        t(ts),
    ));
    assert_auth(&e, "invalid_signature");
}

#[test]
fn standard_ping() {
    let body = data("standard/ping.json");
    match standard_signed(&body, 1_767_225_600, t(1_767_225_600)) {
        Ok(Delivery::Ping { delivery_id }) => {
            assert_eq!(delivery_id.as_deref(), Some("msg_test_1"))
        }
        other => panic!("expected a ping, got {other:?}"),
    }
}

#[test]
fn standard_link_only_payload() {
    let body = data("standard/link_only.json");
    let e = error(standard_signed(&body, 1_767_225_600, t(1_767_225_600)));
    assert_eq!(e.code(), "transcript_link_only");
    assert_eq!(
        e.to_string(),
        "payload links to a transcript at transcript_url; grader fetches no URLs — include the transcript text inline"
    );
    // A transcript that is just a URL.
    let body = br#"{"stage":"system_design","transcript":"https://files.example.com/t/9001.vtt"}"#;
    let e = error(standard_signed(body, 1_767_225_600, t(1_767_225_600)));
    assert_eq!(e.code(), "transcript_link_only");
    assert!(e.to_string().contains("at transcript;"), "{e}");
}

#[test]
fn standard_missing_and_unknown_stage() {
    let now = 1_767_225_600;
    let body = data("standard/missing_stage.json");
    let e = error(standard_signed(&body, now, t(now)));
    assert_eq!(e.code(), "missing_stage");
    assert!(
        e.to_string()
            .contains("set `stage` to one of: portfolio_review"),
        "{e}"
    );

    let body = br#"{"stage":"onsite","transcript":"Candidate: hello"}"#;
    let e = error(standard_signed(body, now, t(now)));
    assert_eq!(e.code(), "unknown_stage");
    assert_eq!(e.http_status(), 422);
    assert!(e.to_string().contains("`stage` is \"onsite\""), "{e}");

    let body = br#"{"stage":3,"transcript":"Candidate: hello"}"#;
    let e = error(standard_signed(body, now, t(now)));
    assert_eq!(e.code(), "invalid_field");
}

#[test]
fn standard_envelope_with_written_answer() {
    let body = data("standard/envelope.json");
    let (_, sub) = submission(standard_signed(&body, 1_767_225_600, t(1_767_225_600)));
    assert_eq!(sub.stage, Stage::WrittenAnswer);
    assert_eq!(
        sub.question.as_deref(),
        Some("When would you fine-tune rather than use RAG?")
    );
    assert_eq!(sub.transcript.format, Format::WrittenAnswer);
    assert_eq!(sub.transcript.turns.len(), 1);
    assert_eq!(sub.transcript.turns[0].speaker, Speaker::Candidate);
}

#[test]
fn standard_bad_bodies() {
    let now = 1_767_225_600;
    let cases: &[(&[u8], &str, u16)] = &[
        (b"{not json", "invalid_json", 400),
        (b"[1,2]", "invalid_envelope", 400),
        (br#"{"stage":"hands_on"}"#, "missing_transcript", 422),
        (br#"{"stage":"hands_on","transcript":""}"#, "empty_input", 422),
        (br#"{"stage":"hands_on","transcript":42}"#, "invalid_field", 422),
        (
            br#"{"stage":"hands_on","transcript":"Candidate: hi","answer":"x","question":"q"}"#,
            "invalid_field",
            422,
        ),
        (br#"{"stage":"written_answer","answer":"x"}"#, "invalid_field", 422),
        (
            br#"{"stage":"hands_on","transcript":"Candidate: hi","format":"docx"}"#,
            "unknown_format",
            422,
        ),
        (
            br#"{"stage":"hands_on","transcript":"Candidate: hi","candidate":"Ana"}"#,
            "invalid_field",
            422,
        ),
        (
            br#"{"stage":"hands_on","transcript":"1\n00:00:01,000 --> nonsense\nhi\n","format":"srt"}"#,
            "malformed_transcript",
            422,
        ),
    ];
    for (body, code, status) in cases {
        let e = error(standard_signed(body, now, t(now)));
        assert_eq!(e.code(), *code, "{}: {e}", String::from_utf8_lossy(body));
        assert_eq!(e.http_status(), *status, "{e}");
        assert!(!e.is_auth());
    }
}

#[test]
fn standard_transcript_over_the_limit_is_413() {
    let now = 1_767_225_600;
    let body = br#"{"stage":"hands_on","transcript":"Candidate: a long answer indeed"}"#;
    let sig = sign_standard(STD_SECRET, "msg_big", now, body);
    let headers = std_headers("msg_big", now, &sig);
    let limits = Limits {
        max_chars: 10,
        max_turns: 5_000,
    };
    let e = error(receive(
        Source::Standard,
        &|n| headers.get(n),
        body,
        STD_SECRET,
        t(now),
        DEFAULT_TOLERANCE,
        &limits,
    ));
    assert_eq!(e.code(), "input_too_large");
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(e.http_status(), 413);
}

// ---------------------------------------------------------------- common

#[test]
fn unconfigured_secret_is_refused_for_every_source() {
    let body = data("standard/submission.json");
    for source in Source::ALL {
        let headers = Headers::new();
        let e = error(recv_at(source, &headers, &body, "  ", t(0)));
        assert_auth(&e, "webhook_secret_not_configured");
    }
    let sig = sign_standard("whsec_", "m", 0, &body);
    let e = error(recv_at(
        Source::Standard,
        &std_headers("m", 0, &sig),
        &body,
        "whsec_",
        t(0),
    ));
    assert_auth(&e, "webhook_secret_not_configured");
}

#[test]
fn source_parses_from_the_path_segment() {
    for source in Source::ALL {
        assert_eq!(source.as_str().parse::<Source>().unwrap(), source);
    }
    let e = "workable".parse::<Source>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown webhook source `workable`; expected one of: greenhouse, lever, ashby, standard"
    );
    assert_eq!(e.http_status(), 404);
}
