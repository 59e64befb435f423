//! The HTTP API end to end: a real server on 127.0.0.1:0 over a fresh database (SQLite file
//! or a PostgreSQL database of its own), real grading workers, and reqwest as the client.
//! `http_tests!` runs a test against both backends as `<name>::sqlite` and `<name>::postgres`.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use grader::ingest::ats;
use grader::store::{Role, SubmissionStatus, TenantSettings};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::app::{submission_body, transcript, Options, TestApp};
use support::db::Backend;
use support::{Scripted, StandIn};

both_backends!(
    sync_grade_is_stored_and_readable_by_its_report_id,
    async_submission_is_queued_then_graded,
    idempotency_key_answers_the_same_submission_graded_once,
    sync_grade_idempotency_key_replays_the_stored_report_or_refuses_a_new_body,
    webhooks_valid_invalid_stale_and_replayed_per_source,
    webhook_pings_unknown_sources_and_unconfigured_tenants,
    tenant_isolation_matrix,
    bad_input_corpus_is_rejected_and_nothing_is_stored,
    dead_workers_job_is_requeued_and_graded_once,
    failing_judge_is_retried_then_dead_lettered_with_the_reason,
    graceful_shutdown_leaves_no_job_leased,
    metrics_queue_depth_reflects_enqueued_jobs,
    refit_calibration_maps_then_new_reports_show_calibrated_scores,
    csv_import_of_human_grades_is_validated_and_all_or_nothing,
);

const GH_SECRET: &str = "gh-webhook-secret-5e1d0c";
const ASHBY_SECRET: &str = "ashby-secret-token-77c1";
const LEVER_SECRET: &str = "lever-signature-token-3b9c1e7f";
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn ats_data(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ats")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("response body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// Asserts the error shape and code, returning the message.
fn assert_error(status: u16, v: &Value, want_status: u16, want_code: &str) -> String {
    assert_eq!(status, want_status, "status for {want_code}: {v}");
    assert_eq!(v["error"]["code"], want_code, "{v}");
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!msg.is_empty(), "error without message: {v}");
    msg
}

async fn count_submissions(t: &TestApp, tenant_id: &str) -> usize {
    t.store
        .list_submissions(tenant_id, None, 10_000, 0)
        .await
        .expect("list submissions")
        .len()
}

/// `grading.completed` audit entries for one submission (the store writes one per stored
/// report, in the completing transaction).
async fn completions(t: &TestApp, tenant_id: &str, submission_id: &str) -> usize {
    t.store
        .audit_log(tenant_id, 10_000)
        .await
        .expect("audit log")
        .iter()
        .filter(|e| e.action == "grading.completed" && e.subject.as_deref() == Some(submission_id))
        .count()
}

// ---------------------------------------------------------------- grading

async fn sync_grade_is_stored_and_readable_by_its_report_id(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let (_, other_key) = t.tenant_with_key("other", Role::Admin).await;
    let (status, report) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["stage"], "system_design");
    assert_eq!(report["judge"]["model"], "offline");
    assert!(report["scores"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(report["prompt"]["sha256"]
        .as_str()
        .is_some_and(|s| s.len() == 64));
    let id = report["id"].as_str().expect("report id").to_string();
    // Audited once, in the storing transaction.
    let audit = t.store.audit_log(&tenant.id, 10).await.expect("audit");
    assert!(audit.iter().any(|e| e.action == "grading.completed"
        && e.subject.as_deref() == Some(id.as_str())
        && e.detail["sync"] == true));
    assert_eq!(completions(&t, &tenant.id, &id).await, 1);

    // The report's id is the submission's: GET shows it graded with the same report.
    let (status, v) = json_of(t.get(&format!("/v1/submissions/{id}"), &key).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["status"], "graded");
    assert_eq!(v["report"], report);
    // Another tenant's key: 404, like a made-up id.
    let (status, v) = json_of(t.get(&format!("/v1/submissions/{id}"), &other_key).await).await;
    assert_error(status, &v, 404, "not_found");

    // A written answer through the same route.
    let body = json!({"stage": "written_answer", "question": "How would you evaluate a RAG system?",
        "answer": "I would measure retrieval recall@k on labelled queries and judge faithfulness of answers against the retrieved context, calibrated against human labels."});
    let (status, report) = json_of(t.post_json("/v1/grade", &key, &body).await).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["stage"], "written_answer");
    // Both stored as graded submissions, and nothing was queued (no job to grade again).
    let listed = t
        .store
        .list_submissions(&tenant.id, Some(SubmissionStatus::Graded), 10, 0)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(t.store.queue_depth().await.expect("queue depth"), 0);
}

async fn async_submission_is_queued_then_graded(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let resp = t
        .post_json("/v1/submissions", &key, &submission_body())
        .await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, v) = json_of(resp).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["status"], "queued");
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/submissions/{id}").as_str())
    );
    // Answered only after the commit: the store has it at once.
    let rec = t
        .store
        .submission(&tenant.id, &id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(rec.source, "api");
    let graded = t.wait_graded(&key, &id).await;
    assert_eq!(graded["report"]["stage"], "system_design");
    assert_eq!(graded["external_id"], "app-1");
    assert!(graded["error"].is_null());
    assert_eq!(completions(&t, &tenant.id, &id).await, 1);
    // The view of the report is audited.
    let audit = t.store.audit_log(&tenant.id, 100).await.expect("audit");
    assert!(audit
        .iter()
        .any(|e| e.action == "report.viewed" && e.subject.as_deref() == Some(id.as_str())));
}

async fn idempotency_key_answers_the_same_submission_graded_once(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let send = || {
        t.client
            .post(t.url("/v1/submissions"))
            .bearer_auth(&key)
            .header("idempotency-key", "order-7f3a")
            .json(&submission_body())
            .send()
    };
    let (s1, first) = json_of(send().await.expect("send")).await;
    let (s2, second) = json_of(send().await.expect("send")).await;
    assert_eq!((s1, s2), (202, 202), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    let id = first["id"].as_str().expect("id").to_string();
    t.wait_graded(&key, &id).await;
    let (s3, third) = json_of(send().await.expect("send")).await;
    assert_eq!((s3, third["id"].as_str()), (202, Some(id.as_str())));
    assert_eq!(third["status"], "graded");
    assert_eq!(count_submissions(&t, &tenant.id).await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        completions(&t, &tenant.id, &id).await,
        1,
        "graded exactly once"
    );
    // A bad key is refused before anything is stored.
    let resp = t
        .client
        .post(t.url("/v1/submissions"))
        .bearer_auth(&key)
        .header("idempotency-key", "has space")
        .json(&submission_body())
        .send()
        .await
        .expect("send");
    let (status, v) = json_of(resp).await;
    assert_error(status, &v, 400, "invalid_idempotency_key");
    assert_eq!(count_submissions(&t, &tenant.id).await, 1);
}

async fn sync_grade_idempotency_key_replays_the_stored_report_or_refuses_a_new_body(
    backend: Backend,
) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let gradings = || t.app.metrics.sync_gradings.load(Ordering::Relaxed);
    let send = |path: &'static str, idem: Option<&'static str>, body: String| {
        let mut req = t
            .client
            .post(t.url(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        req.send()
    };
    let body = submission_body().to_string();

    let resp = send("/v1/grade", Some("grade-1"), body.clone())
        .await
        .expect("send");
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let (status, first) = json_of(resp).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().expect("report id").to_string();
    assert_eq!(gradings(), 1);

    // The same key and body: the stored report, not graded again.
    let resp = send("/v1/grade", Some("grade-1"), body.clone())
        .await
        .expect("send");
    assert_eq!(
        resp.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let (status, again) = json_of(resp).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    assert_eq!(gradings(), 1);
    assert_eq!(count_submissions(&t, &tenant.id).await, 1);
    assert_eq!(completions(&t, &tenant.id, &id).await, 1);

    // The same key with another body: refused, nothing graded or stored.
    let mut other = submission_body();
    other["external_id"] = json!("app-2");
    let (status, v) = json_of(
        send("/v1/grade", Some("grade-1"), other.to_string())
            .await
            .expect("send"),
    )
    .await;
    let msg = assert_error(status, &v, 422, "idempotency_key_reused");
    assert!(msg.contains("different request body"), "{msg}");
    assert_eq!(gradings(), 1);
    assert_eq!(count_submissions(&t, &tenant.id).await, 1);

    // Concurrent duplicates: one grading, one stored submission, one report for both.
    let (a, b) = tokio::join!(
        send("/v1/grade", Some("grade-2"), body.clone()),
        send("/v1/grade", Some("grade-2"), body.clone())
    );
    let (sa, ra) = json_of(a.expect("send")).await;
    let (sb, rb) = json_of(b.expect("send")).await;
    assert_eq!((sa, sb), (200, 200), "{ra} {rb}");
    assert_eq!(ra["id"], rb["id"]);
    assert_ne!(ra["id"], first["id"]);
    assert_eq!(gradings(), 2);
    assert_eq!(count_submissions(&t, &tenant.id).await, 2);

    // A key already used by POST /v1/submissions names that request, not a new grading.
    let (status, v) = json_of(
        send("/v1/submissions", Some("shared-3"), body.clone())
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let (status, v) = json_of(
        send("/v1/grade", Some("shared-3"), body.clone())
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &v, 422, "idempotency_key_reused");
    assert_eq!(gradings(), 2);

    // Keys are per tenant: another tenant's "grade-1" is a new request.
    let (other_tenant, other_key) = t.tenant_with_key("other", Role::Ingest).await;
    let resp = t
        .client
        .post(t.url("/v1/grade"))
        .bearer_auth(&other_key)
        .header("content-type", "application/json")
        .header("idempotency-key", "grade-1")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    let (status, theirs) = json_of(resp).await;
    assert_eq!(status, 200, "{theirs}");
    assert_ne!(theirs["id"], first["id"]);
    assert_eq!(gradings(), 3);
    assert_eq!(count_submissions(&t, &other_tenant.id).await, 1);
}

// ---------------------------------------------------------------- webhooks

/// A signed delivery for `source` (fresh timestamps where the source signs one).
struct Signed {
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn lever_body(secret: &str, token: &str, triggered_ms: i64, fixture: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&ats_data(fixture)).expect("lever fixture");
    v["triggeredAt"] = json!(triggered_ms);
    v["token"] = json!(token);
    v["signature"] = json!(hex_hmac(
        secret,
        format!("{token}{triggered_ms}").as_bytes()
    ));
    serde_json::to_vec(&v).expect("serialize")
}

fn signed(source: &str, age_secs: i64) -> Signed {
    let now = Utc::now().timestamp();
    match source {
        "greenhouse" => {
            let body = ats_data("greenhouse/interview_transcript.json");
            assert!(
                body.windows(6).any(|w| w == b"\\u003c"),
                "the fixture keeps Greenhouse's \\u003c escapes"
            );
            let sig = format!("sha256 {}", hex_hmac(GH_SECRET, &body));
            Signed {
                body,
                headers: vec![("signature", sig)],
            }
        }
        "ashby" => {
            let body = ats_data("ashby/candidate_stage_change.json");
            let sig = format!("sha256={}", hex_hmac(ASHBY_SECRET, &body));
            Signed {
                body,
                headers: vec![("ashby-signature", sig)],
            }
        }
        "lever" => Signed {
            body: lever_body(
                LEVER_SECRET,
                "tok-8f1c2d3e",
                (now - age_secs) * 1000,
                "lever/interview_updated.json",
            ),
            headers: vec![],
        },
        "standard" => {
            let body = ats_data("standard/submission.json");
            let ts = now - age_secs;
            let sig = ats::sign_standard(STD_SECRET, "msg_2c9a", ts, &body);
            Signed {
                body,
                headers: vec![
                    ("webhook-id", "msg_2c9a".to_string()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", sig),
                ],
            }
        }
        other => panic!("no fixture for {other}"),
    }
}

/// The same delivery with its signature broken (one hex/base64 digit changed).
fn tampered(source: &str, mut s: Signed) -> Signed {
    if source == "lever" {
        let mut v: Value = serde_json::from_slice(&s.body).expect("json");
        v["signature"] = json!("0".repeat(64));
        s.body = serde_json::to_vec(&v).expect("serialize");
    } else {
        for (name, value) in &mut s.headers {
            if name.contains("signature") {
                let last = value.pop().expect("signature char");
                value.push(if last == 'A' { 'B' } else { 'A' });
            }
        }
    }
    s
}

async fn deliver(t: &TestApp, tenant: &str, source: &str, s: &Signed) -> (u16, Value) {
    let mut req = t
        .client
        .post(t.url(&format!("/v1/webhooks/{tenant}/{source}")))
        .header("content-type", "application/json")
        .body(s.body.clone());
    for (name, value) in &s.headers {
        req = req.header(*name, value);
    }
    json_of(req.send().await.expect("send webhook")).await
}

async fn configure_webhooks(t: &TestApp, tenant_id: &str) {
    for (source, secret) in [
        ("greenhouse", GH_SECRET),
        ("ashby", ASHBY_SECRET),
        ("lever", LEVER_SECRET),
        ("standard", STD_SECRET),
    ] {
        t.store
            .set_webhook_secret(tenant_id, source, secret)
            .await
            .expect("set webhook secret");
    }
}

async fn webhooks_valid_invalid_stale_and_replayed_per_source(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    configure_webhooks(&t, &tenant.id).await;
    for source in ["greenhouse", "ashby", "lever", "standard"] {
        // Invalid signature: 401, nothing stored.
        let before = count_submissions(&t, &tenant.id).await;
        let (status, v) = deliver(&t, "acme", source, &tampered(source, signed(source, 0))).await;
        assert_eq!(status, 401, "{source}: {v}");
        assert_eq!(v["error"]["code"], "invalid_signature", "{source}: {v}");
        assert_eq!(count_submissions(&t, &tenant.id).await, before, "{source}");

        // Valid: 202 with an id, graded.
        let delivery = signed(source, 0);
        let (status, v) = deliver(&t, "acme", source, &delivery).await;
        assert_eq!(status, 202, "{source}: {v}");
        let id = v["id"].as_str().expect("id").to_string();
        assert_eq!(v["duplicate"], false, "{source}");
        let graded = t.wait_graded(&key, &id).await;
        assert_eq!(graded["source"], source);

        // Replayed (a redelivery of the same delivery): the same submission, graded once.
        let (status, again) = deliver(&t, "acme", source, &delivery).await;
        assert_eq!(status, 202, "{source}: {again}");
        assert_eq!(again["id"].as_str(), Some(id.as_str()), "{source}");
        assert_eq!(again["duplicate"], true, "{source}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            completions(&t, &tenant.id, &id).await,
            1,
            "{source} graded once"
        );
        assert_eq!(
            count_submissions(&t, &tenant.id).await,
            before + 1,
            "{source}"
        );

        // Stale: a signed timestamp older than the tolerance (sources that sign one).
        if matches!(source, "lever" | "standard") {
            let (status, v) = deliver(&t, "acme", source, &signed(source, 3_600)).await;
            assert_error(status, &v, 401, "stale_delivery");
            assert_eq!(
                count_submissions(&t, &tenant.id).await,
                before + 1,
                "{source}"
            );
        }
    }
    // The metrics saw every source.
    let text = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for source in ["greenhouse", "ashby", "lever", "standard"] {
        assert!(
            text.contains(&format!(
                "grader_submissions_enqueued_total{{source=\"{source}\"}} 1"
            )),
            "{text}"
        );
    }
}

async fn webhook_pings_unknown_sources_and_unconfigured_tenants(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, _key) = t.tenant_with_key("acme", Role::Ingest).await;
    configure_webhooks(&t, &tenant.id).await;
    // Pings: 200, nothing stored.
    let gh = ats_data("greenhouse/ping.json");
    let ping = Signed {
        headers: vec![("signature", format!("sha256 {}", hex_hmac(GH_SECRET, &gh)))],
        body: gh,
    };
    let (status, v) = deliver(&t, "acme", "greenhouse", &ping).await;
    assert_eq!((status, &v["ping"]), (200, &json!(true)), "{v}");
    let ab = ats_data("ashby/ping.json");
    let ping = Signed {
        headers: vec![(
            "ashby-signature",
            format!("sha256={}", hex_hmac(ASHBY_SECRET, &ab)),
        )],
        body: ab,
    };
    assert_eq!(deliver(&t, "acme", "ashby", &ping).await.0, 200);
    let lever = Signed {
        body: lever_body(
            LEVER_SECRET,
            "tok-ping",
            Utc::now().timestamp_millis(),
            "lever/ping.json",
        ),
        headers: vec![],
    };
    assert_eq!(deliver(&t, "acme", "lever", &lever).await.0, 200);
    let body = br#"{"type":"ping"}"#.to_vec();
    let ts = Utc::now().timestamp();
    let std_ping = Signed {
        headers: vec![
            ("webhook-id", "msg_ping".into()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                ats::sign_standard(STD_SECRET, "msg_ping", ts, &body),
            ),
        ],
        body,
    };
    assert_eq!(deliver(&t, "acme", "standard", &std_ping).await.0, 200);
    assert_eq!(count_submissions(&t, &tenant.id).await, 0);

    // Unknown source: 404 unknown_source. Unknown tenant and a source without a secret: the
    // same 404, so tenant names cannot be probed.
    let (status, v) = deliver(&t, "acme", "workday", &signed("greenhouse", 0)).await;
    assert_error(status, &v, 404, "unknown_source");
    let (status, v) = deliver(&t, "nobody", "greenhouse", &signed("greenhouse", 0)).await;
    assert_error(status, &v, 404, "webhook_not_configured");
    t.tenant("bare").await;
    let (status, v2) = deliver(&t, "bare", "greenhouse", &signed("greenhouse", 0)).await;
    assert_error(status, &v2, 404, "webhook_not_configured");
    assert_eq!(v, v2, "unknown tenant and unconfigured source answer alike");

    // Authentic but not gradable: link-only payload → 422, nothing stored.
    let link = ats_data("greenhouse/link_only.json");
    let s = Signed {
        headers: vec![(
            "signature",
            format!("sha256 {}", hex_hmac(GH_SECRET, &link)),
        )],
        body: link,
    };
    let (status, v) = deliver(&t, "acme", "greenhouse", &s).await;
    assert_error(status, &v, 422, "transcript_link_only");
    assert_eq!(count_submissions(&t, &tenant.id).await, 0);
}

// ---------------------------------------------------------------- tenants and roles

async fn tenant_isolation_matrix(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (a, a_key) = t.tenant_with_key("tenant-a", Role::Grader).await;
    let (b, b_key) = t.tenant_with_key("tenant-b", Role::Admin).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &a_key, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    t.wait_graded(&a_key, &id).await;

    // Every tenant-scoped route: B's key on A's submission is 404, the same as a made-up id.
    let grade = json!({"scores": {"retrieval_strategy": 3}});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/submissions/{id}"), None),
        ("GET", format!("/v1/submissions/{id}/callbacks"), None),
        (
            "POST",
            format!("/v1/submissions/{id}/human-grades"),
            Some(grade.clone()),
        ),
    ];
    for (method, path, body) in &routes {
        for (who, key, want) in [("A", &a_key, None), ("B", &b_key, Some(404u16))] {
            let resp = match body {
                Some(b) => t.post_json(path, key, b).await,
                None => t.get(path, key).await,
            };
            let (status, v) = json_of(resp).await;
            match want {
                Some(code) => {
                    assert_error(status, &v, code, "not_found");
                }
                None => assert!(status < 300, "{who} {method} {path}: {status} {v}"),
            }
        }
        let fake = path.replace(&id, "00000000-0000-0000-0000-000000000000");
        let resp = match body {
            Some(b) => t.post_json(&fake, &b_key, b).await,
            None => t.get(&fake, &b_key).await,
        };
        let (status, v) = json_of(resp).await;
        assert_error(status, &v, 404, "not_found");
    }
    // B's calibration does not see A's human grade; A's does.
    let (_, cal_b) = json_of(t.get("/v1/calibration", &b_key).await).await;
    assert_eq!(cal_b["rows"], 0, "{cal_b}");
    let (_, cal_a) = json_of(t.get("/v1/calibration", &a_key).await).await;
    assert!(cal_a["rows"].as_u64().unwrap_or(0) >= 1, "{cal_a}");
    // Idempotency keys are per tenant.
    let post = |key: &str| {
        t.client
            .post(t.url("/v1/submissions"))
            .bearer_auth(key.to_string())
            .header("idempotency-key", "shared-key")
            .json(&submission_body())
            .send()
    };
    let (_, va) = json_of(post(&a_key).await.expect("send")).await;
    let (_, vb) = json_of(post(&b_key).await.expect("send")).await;
    assert_ne!(va["id"], vb["id"]);
    // Webhooks: A's path verifies with A's secret only.
    t.store
        .set_webhook_secret(&a.id, "greenhouse", "secret-of-a")
        .await
        .expect("secret");
    t.store
        .set_webhook_secret(&b.id, "greenhouse", GH_SECRET)
        .await
        .expect("secret");
    let (status, v) = deliver(&t, "tenant-a", "greenhouse", &signed("greenhouse", 0)).await;
    assert_error(status, &v, 401, "invalid_signature");
    let (status, _) = deliver(&t, "tenant-b", "greenhouse", &signed("greenhouse", 0)).await;
    assert_eq!(status, 202);
    assert_eq!(count_submissions(&t, &a.id).await, 2);
    assert_eq!(count_submissions(&t, &b.id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_and_authentication() {
    let t = TestApp::spawn(Backend::Sqlite).await;
    let tenant = t.tenant("acme").await;
    let ingest = t.key(&tenant, Role::Ingest).await;
    let grader = t.key(&tenant, Role::Grader).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &ingest, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    t.wait_graded(&ingest, &id).await;
    let grade = json!({"scores": {"retrieval_strategy": 3}});
    let path = format!("/v1/submissions/{id}/human-grades");

    let (status, v) = json_of(t.post_json(&path, &ingest, &grade).await).await;
    let msg = assert_error(status, &v, 403, "forbidden");
    assert!(msg.contains("grader"), "{msg}");
    let (status, v) = json_of(t.get("/v1/calibration", &ingest).await).await;
    assert_error(status, &v, 403, "forbidden");
    let (status, v) = json_of(t.post_json(&path, &grader, &grade).await).await;
    assert_eq!(status, 201, "{v}");
    // The grader role includes ingest's rights.
    assert_eq!(
        t.get(&format!("/v1/submissions/{id}"), &grader)
            .await
            .status(),
        200
    );

    // Missing, malformed and unknown keys: 401 JSON with a WWW-Authenticate challenge.
    let resp = t
        .client
        .get(t.url("/v1/prompts"))
        .send()
        .await
        .expect("send");
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, v) = json_of(resp).await;
    assert_error(status, &v, 401, "unauthorized");
    let resp = t
        .client
        .get(t.url("/v1/prompts"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    let (status, v) = json_of(resp).await;
    assert_error(status, &v, 401, "unauthorized");
    let (status, v) = json_of(t.get("/v1/prompts", "gk_not_a_real_key").await).await;
    assert_error(status, &v, 401, "unauthorized");
    let (status, prompts) = json_of(t.get("/v1/prompts", &ingest).await).await;
    assert_eq!(status, 200);
    let list = prompts.as_array().expect("list");
    assert!(list.iter().any(|p| p["id"] == "system_design"
        && p["sha256"].as_str().is_some_and(|s| s.len() == 64)
        && p["published"].is_boolean()));
}

// ---------------------------------------------------------------- bad input

async fn bad_input_corpus_is_rejected_and_nothing_is_stored(backend: Backend) {
    let t = TestApp::spawn_with(Options::new(backend).tweak(|c| {
        c.service.body_limit_bytes = 64 * 1024;
        c.limits.max_chars = 20_000;
    }))
    .await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let text = transcript();
    let with = |field: &str, value: Value| {
        let mut b = json!({"stage": "system_design", "transcript": text});
        b[field] = value;
        b.to_string().into_bytes()
    };
    let mut invalid_utf8 = br#"{"stage":"system_design","transcript":"Candidate: caf"#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\" }");
    let oversized =
        json!({"stage": "system_design", "transcript": "Candidate: word ".repeat(10_000)})
            .to_string()
            .into_bytes();
    let too_long =
        json!({"stage": "system_design", "transcript": "Candidate: word ".repeat(2_000)})
            .to_string()
            .into_bytes();
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "malformed JSON",
            b"{\"stage\": \"system_design\", ".to_vec(),
            400,
            "malformed_json",
            "line",
        ),
        ("empty body", Vec::new(), 400, "malformed_json", "empty"),
        (
            "not an object",
            b"[1, 2]".to_vec(),
            422,
            "invalid_body",
            "invalid type",
        ),
        (
            "wrong type",
            with("stage", json!(5)),
            422,
            "invalid_body",
            "invalid type",
        ),
        (
            "transcript wrong type",
            with("transcript", json!(5)),
            422,
            "invalid_field",
            "transcript",
        ),
        (
            "missing stage",
            json!({"transcript": text}).to_string().into_bytes(),
            422,
            "invalid_body",
            "stage",
        ),
        (
            "missing transcript",
            json!({"stage": "system_design"}).to_string().into_bytes(),
            422,
            "missing_transcript",
            "transcript",
        ),
        (
            "unknown field",
            with("transcrpt", json!("x")),
            422,
            "invalid_body",
            "transcrpt",
        ),
        (
            "unknown stage",
            with("stage", json!("design")),
            422,
            "unknown_stage",
            "system_design",
        ),
        (
            "unknown prompt",
            with("prompt", json!("system_design@v99")),
            422,
            "unknown_prompt",
            "v99",
        ),
        (
            "prompt of another stage",
            with("prompt", json!("hands_on")),
            422,
            "unknown_prompt",
            "stage",
        ),
        (
            "unknown format",
            with("format", json!("docx")),
            422,
            "unknown_format",
            "docx",
        ),
        (
            "empty transcript",
            with("transcript", json!("   \n ")),
            422,
            "empty_input",
            "empty",
        ),
        (
            "binary transcript",
            with("transcript", json!("\u{0}\u{1}\u{2}PK\u{3}\u{4}")),
            422,
            "binary_input",
            "binary",
        ),
        ("invalid UTF-8", invalid_utf8, 400, "invalid_utf8", "UTF-8"),
        (
            "transcript over max_chars",
            too_long,
            422,
            "input_too_large",
            "limit",
        ),
        (
            "oversized body",
            oversized,
            413,
            "payload_too_large",
            "limit",
        ),
        (
            "metadata not an object",
            with("metadata", json!([1])),
            422,
            "invalid_field",
            "metadata",
        ),
    ];
    for route in ["/v1/submissions", "/v1/grade"] {
        for (name, body, status, code, needle) in &cases {
            let resp = t.post_raw(route, &key, body.clone()).await;
            let (got, v) = json_of(resp).await;
            let msg = assert_error(got, &v, *status, code);
            assert!(
                msg.to_lowercase().contains(&needle.to_lowercase()),
                "{route} {name}: message {msg:?} should mention {needle:?}"
            );
        }
    }
    // Content type other than JSON.
    let resp = t
        .client
        .post(t.url("/v1/submissions"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(submission_body().to_string())
        .send()
        .await
        .expect("send");
    let (status, v) = json_of(resp).await;
    assert_error(status, &v, 415, "unsupported_media_type");
    assert_eq!(count_submissions(&t, &tenant.id).await, 0, "nothing stored");
    let audit = t.store.audit_log(&tenant.id, 100).await.expect("audit");
    assert!(audit.is_empty(), "nothing audited: {audit:?}");

    // Human grades: dimension and score checks name the problem.
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    t.wait_graded(&key, &id).await;
    let grader = t.key(&tenant, Role::Grader).await;
    let path = format!("/v1/submissions/{id}/human-grades");
    let grade_cases = [
        (
            json!({"scores": {"vibes": 3}}),
            "unknown_dimension",
            "vibes",
        ),
        (
            json!({"scores": {"retrieval_strategy": 9}}),
            "score_out_of_range",
            "retrieval_strategy",
        ),
        (
            json!({"scores": {"retrieval_strategy": 2.5}}),
            "score_out_of_range",
            "whole",
        ),
        (json!({"scores": {}}), "missing_scores", "scores"),
        (
            json!({"scores": {"retrieval_strategy": 3}, "flags": ["made_up"]}),
            "unknown_flag",
            "made_up",
        ),
    ];
    for (body, code, needle) in grade_cases {
        let (status, v) = json_of(t.post_json(&path, &grader, &body).await).await;
        let msg = assert_error(status, &v, 422, code);
        assert!(msg.contains(needle), "{msg}");
    }
    let (status, v) = json_of(t.post_json(&path, &grader, &json!({"scores": "x"})).await).await;
    assert_error(status, &v, 422, "invalid_body");
    assert!(t
        .store
        .human_grades(&tenant.id, &id)
        .await
        .expect("grades")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_outside_handlers_are_json_too() {
    let t = TestApp::spawn(Backend::Sqlite).await;
    let (status, v) = json_of(t.client.get(t.url("/nope")).send().await.expect("send")).await;
    assert_error(status, &v, 404, "not_found");
    let resp = t
        .client
        .delete(t.url("/v1/submissions"))
        .send()
        .await
        .expect("send");
    let (status, v) = json_of(resp).await;
    assert_error(status, &v, 405, "method_not_allowed");
    let (status, v) = json_of(
        t.client
            .get(t.url("/v1/calibration?since=yesterday"))
            .bearer_auth(t.key(&t.tenant("acme").await, Role::Grader).await)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &v, 400, "invalid_query");
}

// ---------------------------------------------------------------- workers

async fn dead_workers_job_is_requeued_and_graded_once(backend: Backend) {
    let mut t = TestApp::spawn_with(Options::new(backend).workers(0)).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    // A worker takes the job and dies (never completes) with a short lease.
    let job = t
        .store
        .lease_job("doomed-worker", Duration::from_millis(500))
        .await
        .expect("lease")
        .expect("the queued job");
    assert_eq!(job.submission.id, id);
    t.wait_status(&key, &id, &["grading"], Duration::from_secs(5))
        .await;
    t.start_workers(2);
    let graded = t.wait_graded(&key, &id).await;
    assert_eq!(graded["status"], "graded");
    // The dead worker coming back cannot overwrite the report.
    let report: grader::domain::GradeReport =
        serde_json::from_value(graded["report"].clone()).expect("report");
    assert!(!t
        .store
        .complete_job(&job.job_id, "doomed-worker", &report)
        .await
        .expect("complete"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(completions(&t, &tenant.id, &id).await, 1, "graded once");
}

async fn failing_judge_is_retried_then_dead_lettered_with_the_reason(backend: Backend) {
    let standin = StandIn::start().await;
    standin.set_default(Scripted::error(500, "upstream exploded"));
    let t = TestApp::spawn_with(
        Options::new(backend)
            .model(&standin.base_url)
            .workers(1)
            .tweak(|c| c.service.max_attempts = 3),
    )
    .await;
    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    let dead = t
        .wait_status(&key, &id, &["dead"], Duration::from_secs(30))
        .await;
    let error = dead["error"].as_str().expect("error");
    assert!(error.contains("attempt 3 of 3"), "{error}");
    assert!(error.contains("500"), "{error}");
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert!(dead["report"].is_null());
    assert_eq!(
        standin.calls(),
        3,
        "one call per attempt, no more after dead"
    );
    // Backoff: the attempts were spread out, not back to back.
    let times: Vec<_> = standin.recorded().iter().map(|r| r.at).collect();
    assert!(times[1].duration_since(times[0]) >= Duration::from_millis(20));
    let metrics = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("grader_gradings_failed_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("grader_gradings_dead_total 1"),
        "{metrics}"
    );
}

async fn graceful_shutdown_leaves_no_job_leased(backend: Backend) {
    let standin = StandIn::start().await;
    // The model takes far longer than the shutdown grace (1 s).
    standin.set_default(Scripted::delay(
        Duration::from_secs(20),
        Scripted::error(500, "too late"),
    ));
    let mut t =
        TestApp::spawn_with(Options::new(backend).model(&standin.base_url).workers(2)).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, v) = json_of(
            t.post_json("/v1/submissions", &key, &submission_body())
                .await,
        )
        .await;
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        t.wait_status(&key, id, &["grading"], Duration::from_secs(10))
            .await;
    }
    let started = std::time::Instant::now();
    t.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "grace bounded the shutdown"
    );
    for id in &ids {
        let rec = t
            .store
            .submission(&tenant.id, id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(rec.status, SubmissionStatus::Queued, "{id} released");
    }
    // Both jobs are leasable at once (released, not waiting out a 300 s lease).
    for _ in &ids {
        let job = t
            .store
            .lease_job("next-replica", Duration::from_secs(60))
            .await
            .expect("lease");
        let job = job.expect("a released job is leasable at once");
        assert_eq!(job.attempt, 1, "a release does not count an attempt");
    }
    assert!(t
        .store
        .lease_job("next-replica", Duration::from_secs(60))
        .await
        .expect("lease")
        .is_none());
}

// ---------------------------------------------------------------- callbacks

/// One delivery a receiver saw: its headers and raw body.
type Delivered = (BTreeMap<String, String>, Vec<u8>);

/// A local receiver: records (headers, body) and answers 500 for the first `failures` calls.
struct Receiver {
    url: String,
    calls: Arc<Mutex<Vec<Delivered>>>,
}

async fn receiver(failures: usize) -> Receiver {
    use axum::routing::post;
    let calls: Arc<Mutex<Vec<Delivered>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let rec = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let rec = rec.clone();
                let seen = seen.clone();
                async move {
                    let h = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    rec.lock().expect("lock").push((h, body.to_vec()));
                    if seen.fetch_add(1, Ordering::SeqCst) < failures {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        calls,
    }
}

async fn with_callback(t: &TestApp, tenant_id: &str, url: &str) {
    t.store
        .update_tenant_settings(
            tenant_id,
            &TenantSettings {
                callback_url: Some(url.to_string()),
                callback_secret: Some(STD_SECRET.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("settings");
}

async fn wait_attempts(
    t: &TestApp,
    tenant_id: &str,
    id: &str,
    n: usize,
) -> Vec<grader::store::CallbackAttempt> {
    for _ in 0..400 {
        let log = t.store.callbacks(tenant_id, id).await.expect("callbacks");
        if log.len() >= n {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} callback attempts for {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_delivers_the_report_signed_with_standard_webhooks() {
    let r = receiver(0).await;
    let t = TestApp::spawn(Backend::Sqlite).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    with_callback(&t, &tenant.id, &r.url).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    let graded = t.wait_graded(&key, &id).await;
    let log = wait_attempts(&t, &tenant.id, &id, 1).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, Some(204));
    let (headers, body) = r.calls.lock().expect("lock")[0].clone();
    let lookup = |name: &str| headers.get(name).cloned();
    let msg_id = ats::standard::verify(
        &lookup,
        &body,
        STD_SECRET,
        Utc::now(),
        ats::DEFAULT_TOLERANCE,
    )
    .expect("a valid Standard Webhooks signature");
    assert_eq!(msg_id, format!("msg_{id}"));
    let payload: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(payload["type"], "grading.completed");
    assert_eq!(payload["data"]["submission_id"], id.as_str());
    assert_eq!(payload["data"]["external_id"], "app-1");
    assert_eq!(payload["data"]["report"], graded["report"]);
    // The delivery log over HTTP.
    let (status, log) = json_of(
        t.get(&format!("/v1/submissions/{id}/callbacks"), &key)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(log[0]["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_retries_with_backoff_and_logs_every_attempt() {
    let r = receiver(2).await;
    let t = TestApp::spawn(Backend::Sqlite).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    with_callback(&t, &tenant.id, &r.url).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let id = v["id"].as_str().expect("id").to_string();
    t.wait_graded(&key, &id).await;
    let log = wait_attempts(&t, &tenant.id, &id, 3).await;
    let statuses: Vec<_> = log.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, Some(500)), (2, Some(500)), (3, Some(204))]
    );
    assert!(log[0].error.as_deref().is_some_and(|e| e.contains("500")));
    assert!(log[2].error.is_none());
    let calls = r.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 3);
    // Same message id on every attempt, so the receiver can deduplicate.
    let ids: Vec<_> = calls
        .iter()
        .map(|(h, _)| h.get("webhook-id").cloned())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    // A failed callback never fails the grading.
    let (_, rec) = json_of(t.get(&format!("/v1/submissions/{id}"), &key).await).await;
    assert_eq!(rec["status"], "graded");
}

// ---------------------------------------------------------------- operations

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_metrics_and_openapi() {
    let t = TestApp::spawn(Backend::Sqlite).await;
    let get = |p: &str| t.client.get(t.url(p)).send();
    let (status, v) = json_of(get("/healthz").await.expect("send")).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")));
    let (status, v) = json_of(get("/readyz").await.expect("send")).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ready")), "{v}");

    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    t.wait_graded(&key, v["id"].as_str().expect("id")).await;
    let resp = get("/metrics").await.expect("send");
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = resp.text().await.expect("text");
    for needle in [
        "grader_http_requests_total{method=\"POST\",route=\"/v1/submissions\",status=\"202\"} 1",
        "route=\"/v1/submissions/{id}\",status=\"200\"",
        "grader_submissions_enqueued_total{source=\"api\"} 1",
        "grader_gradings_completed_total 1",
        "# TYPE grader_grading_duration_seconds histogram",
        "grader_grading_duration_seconds_count 1",
        "grader_gradings_in_flight 0",
        "# TYPE grader_queue_depth gauge",
        "grader_queue_depth 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    let (status, doc) = json_of(get("/openapi.json").await.expect("send")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/grade",
        "/v1/submissions",
        "/v1/submissions/{id}",
        "/v1/submissions/{id}/callbacks",
        "/v1/submissions/{id}/human-grades",
        "/v1/human-grades/import",
        "/v1/calibration",
        "/v1/calibration/refit",
        "/v1/prompts",
        "/v1/webhooks/{tenant}/{source}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"]["SubmissionRequest"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(paths["/v1/submissions"]["post"]["responses"]["202"].is_object());
}

async fn metrics_queue_depth_reflects_enqueued_jobs(backend: Backend) {
    // No workers: what is enqueued stays queued.
    let t = TestApp::spawn_with(Options::new(backend).workers(0)).await;
    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let scrape = || async {
        let resp = t.client.get(t.url("/metrics")).send().await.expect("send");
        resp.text().await.expect("text")
    };
    assert!(scrape().await.contains("\ngrader_queue_depth 0\n"));
    for _ in 0..3 {
        let resp = t
            .post_json("/v1/submissions", &key, &submission_body())
            .await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    let text = scrape().await;
    assert!(text.contains("\ngrader_queue_depth 3\n"), "{text}");
    // A synchronous grading queues nothing.
    let resp = t.post_json("/v1/grade", &key, &submission_body()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(scrape().await.contains("\ngrader_queue_depth 3\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_when_no_prompts_are_loaded() {
    let empty = tempfile::tempdir().expect("tempdir");
    let dir = empty.path().to_path_buf();
    let t = TestApp::spawn_with(Options::new(Backend::Sqlite).tweak(move |c| c.prompts_dir = dir))
        .await;
    let (status, v) = json_of(t.client.get(t.url("/readyz")).send().await.expect("send")).await;
    let msg = assert_error(status, &v, 503, "not_ready");
    assert!(msg.contains("prompts"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn human_grades_feed_calibration() {
    let t = TestApp::spawn(Backend::Sqlite).await;
    let tenant = t.tenant("acme").await;
    let key = t.key(&tenant, Role::Grader).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, v) = json_of(
            t.post_json("/v1/submissions", &key, &submission_body())
                .await,
        )
        .await;
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let graded = t.wait_graded(&key, id).await;
        let dim = graded["report"]["scores"][0]["dimension"]
            .as_str()
            .expect("dimension")
            .to_string();
        let scale = &graded["report"]["scores"][0]["scale"];
        let score = scale["min"].as_u64().expect("min") + (i as u64 % 2);
        for rater in ["kim", "lee"] {
            let body = json!({"rater": rater, "scores": {dim.clone(): score}, "comment": "ok"});
            let (status, v) = json_of(
                t.post_json(&format!("/v1/submissions/{id}/human-grades"), &key, &body)
                    .await,
            )
            .await;
            assert_eq!(status, 201, "{v}");
            assert_eq!(v["rater"], rater);
        }
    }
    let override_body = json!({"scores": {"retrieval_strategy": 1}, "override_reason": "quotes were out of context"});
    let (status, _) = json_of(
        t.post_json(
            &format!("/v1/submissions/{}/human-grades", ids[0]),
            &key,
            &override_body,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let audit = t.store.audit_log(&tenant.id, 100).await.expect("audit");
    assert!(audit.iter().any(|e| e.action == "report.overridden"));
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "human_grade.added")
            .count(),
        6
    );

    let (status, cal) = json_of(
        t.get(
            "/v1/calibration?stage=system_design&model=offline&bootstrap=50",
            &key,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{cal}");
    assert!(cal["rows"].as_u64().expect("rows") >= 6, "{cal}");
    let dims = cal["dimensions"].as_object().expect("dimensions");
    assert!(!dims.is_empty());
    let (_, first) = dims.iter().next().expect("a dimension");
    assert!(
        first.get("qwk").is_some() || first.get("error").is_some(),
        "{first}"
    );
    assert!(dims.values().any(|d| d["n"].as_u64() == Some(3)), "{cal}");
    let (status, v) = json_of(t.get("/v1/calibration?stage=design", &key).await).await;
    assert_error(status, &v, 422, "unknown_stage");
    let (_, none) = json_of(t.get("/v1/calibration?stage=hands_on", &key).await).await;
    assert_eq!(none["rows"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_everything_puts_every_report_up_for_review() {
    let t = TestApp::spawn(Backend::Sqlite).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    t.store
        .update_tenant_settings(
            &tenant.id,
            &TenantSettings {
                review_everything: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("settings");
    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let graded = t.wait_graded(&key, v["id"].as_str().expect("id")).await;
    assert_eq!(graded["report"]["needs_review"], true);
    let reasons = graded["report"]["review_reasons"].to_string();
    assert!(reasons.contains("review_everything"), "{reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_synchronous_grading_times_out_with_json_408() {
    let standin = StandIn::start().await;
    standin.set_default(Scripted::delay(
        Duration::from_secs(5),
        Scripted::error(500, "late"),
    ));
    let t = TestApp::spawn_with(
        Options::new(Backend::Sqlite)
            .model(&standin.base_url)
            .workers(0)
            .tweak(|c| c.service.request_timeout_secs = 1),
    )
    .await;
    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let (status, v) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
    assert_error(status, &v, 408, "request_timeout");
}

// ---------------------------------------------------------------- dry run and cache bypass

#[tokio::test]
async fn a_dry_run_calls_no_model_stores_nothing_and_no_cache_bypasses_the_cache() {
    let standin = StandIn::start().await;
    standin.set_default(Scripted::dynamic(|req| {
        Scripted::reply(support::fixtures::judgment_for_request(req, 3).to_string())
    }));
    let t = TestApp::spawn_with(Options::new(Backend::Sqlite).model(&standin.base_url)).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;

    let mut body = submission_body();
    body["dry_run"] = json!(true);
    let (status, v) = json_of(t.post_json("/v1/grade", &key, &body).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    assert!(v["prompt_tokens"].as_u64().is_some_and(|n| n > 1000), "{v}");
    assert!(v["max_cost_usd"].is_number(), "{v}");
    assert_eq!(standin.calls(), 0, "a dry run calls no model");
    let stored = t
        .store
        .list_submissions(&tenant.id, None, 10, 0)
        .await
        .expect("list");
    assert!(stored.is_empty(), "a dry run stores nothing");

    // A real grading, then the same with no_cache: the second calls the model again.
    let (status, first) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
    assert_eq!(status, 200, "{first}");
    let calls = standin.calls();
    assert!(calls >= 1);
    let (_, cached) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
    assert_eq!(cached["judge"]["cache"], "hit", "{cached}");
    assert_eq!(
        standin.calls(),
        calls,
        "the repeat is served from the cache"
    );
    let mut body = submission_body();
    body["no_cache"] = json!(true);
    let (status, bypassed) = json_of(t.post_json("/v1/grade", &key, &body).await).await;
    assert_eq!(status, 200, "{bypassed}");
    assert_eq!(bypassed["judge"]["cache"], "bypass");
    assert!(standin.calls() > calls);

    // Queued work cannot be a dry run: refused, nothing stored.
    let mut body = submission_body();
    body["dry_run"] = json!(true);
    let (status, v) = json_of(t.post_json("/v1/submissions", &key, &body).await).await;
    assert_error(status, &v, 422, "invalid_field");
    assert!(v["error"]["message"].as_str().unwrap().contains("dry_run"));
}

/// Asserts every scored dimension of `report` carries `calibrated` equal to the stored map's
/// output for its raw score, and returns how many did.
async fn assert_calibrated_by_the_maps(t: &TestApp, tenant_id: &str, report: &Value) -> usize {
    let prompt = format!(
        "{}@{}",
        report["prompt"]["id"].as_str().expect("prompt id"),
        report["prompt"]["version"]
            .as_str()
            .expect("prompt version")
    );
    let maps = t
        .store
        .calibration_maps(tenant_id, grader::domain::Stage::SystemDesign, &prompt)
        .await
        .expect("maps");
    let mut n = 0;
    for d in report["scores"].as_array().expect("scores") {
        let dim = d["dimension"].as_str().expect("dimension");
        match (
            d["score"].as_f64(),
            maps.iter().find(|m| m.dimension == dim),
        ) {
            (Some(raw), Some(m)) => {
                let got = d["calibrated"].as_f64().expect("calibrated");
                assert!((got - m.map.apply(raw)).abs() < 1e-9, "{dim}: {d}");
                n += 1;
            }
            _ => assert!(d.get("calibrated").is_none(), "{d}"),
        }
    }
    n
}

async fn refit_calibration_maps_then_new_reports_show_calibrated_scores(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Grader).await;
    let (_, ingest) = t.tenant_with_key("ingest-only", Role::Ingest).await;

    // Before any map: the report has raw scores only, and a refit fits nothing.
    let (status, before) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
    assert_eq!(status, 200, "{before}");
    assert!(before["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .all(|d| d.get("calibrated").is_none()));
    let (status, v) = json_of(
        t.post_json(
            "/v1/calibration/refit?stage=system_design",
            &key,
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["fitted"].as_array().map(Vec::len), Some(0), "{v}");
    let (status, v) = json_of(
        t.post_json("/v1/calibration/refit", &ingest, &json!({}))
            .await,
    )
    .await;
    assert_error(status, &v, 403, "forbidden");

    // Eleven graded submissions (the one above included), each graded by two people.
    let mut ids = vec![before["id"].as_str().expect("id").to_string()];
    for _ in 0..10 {
        let (_, v) = json_of(
            t.post_json("/v1/submissions", &key, &submission_body())
                .await,
        )
        .await;
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let dims: Vec<(String, u64)> = before["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .filter(|d| d["score"].is_number())
        .map(|d| {
            (
                d["dimension"].as_str().expect("dimension").to_string(),
                d["scale"]["min"].as_u64().expect("min"),
            )
        })
        .collect();
    assert!(!dims.is_empty());
    for (i, id) in ids.iter().enumerate() {
        t.wait_graded(&key, id).await;
        for (r, rater) in ["kim", "lee"].iter().enumerate() {
            let scores: serde_json::Map<String, Value> = dims
                .iter()
                .map(|(d, min)| (d.clone(), json!(min + ((i + r) as u64 % 3))))
                .collect();
            let body = json!({"rater": rater, "scores": scores});
            let (status, v) = json_of(
                t.post_json(&format!("/v1/submissions/{id}/human-grades"), &key, &body)
                    .await,
            )
            .await;
            assert_eq!(status, 201, "{v}");
        }
    }

    let (status, v) = json_of(
        t.post_json(
            "/v1/calibration/refit?stage=system_design",
            &key,
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["min_pairs"], 10);
    let fitted = v["fitted"].as_array().expect("fitted");
    assert_eq!(fitted.len(), dims.len(), "{v}");
    for f in fitted {
        assert_eq!(f["n_pairs"], 11, "{f}");
        assert_eq!(f["stage"], "system_design");
        assert!(f["in_sample_mae"]["raw"].is_number(), "{f}");
        assert!(f["in_sample_mae"]["calibrated"].is_number(), "{f}");
        assert!(f["held_out_mae"]["raw"].is_number(), "{f}");
        assert!(f["held_out_mae"]["calibrated"].is_number(), "{f}");
        assert!(
            f["held_out"]["folds"].as_u64().is_some_and(|k| k >= 2),
            "{f}"
        );
    }
    assert!(v["note"].as_str().is_some_and(|n| n.contains("weak")));

    // New gradings, synchronous and by a worker, show calibrated beside the raw score.
    let (status, sync) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
    assert_eq!(status, 200, "{sync}");
    assert_eq!(
        assert_calibrated_by_the_maps(&t, &tenant.id, &sync).await,
        dims.len()
    );
    let (_, queued) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let graded = t
        .wait_graded(&key, queued["id"].as_str().expect("id"))
        .await;
    assert_eq!(
        assert_calibrated_by_the_maps(&t, &tenant.id, &graded["report"]).await,
        dims.len()
    );
    // Another tenant's grading is not calibrated with these maps.
    let (_, other) = t.tenant_with_key("other", Role::Ingest).await;
    let (_, report) = json_of(t.post_json("/v1/grade", &other, &submission_body()).await).await;
    assert!(report["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .all(|d| d.get("calibrated").is_none()));
}

async fn post_csv(t: &TestApp, key: &str, content_type: &str, body: &str) -> (u16, Value) {
    json_of(
        t.client
            .post(t.url("/v1/human-grades/import"))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("send request"),
    )
    .await
}

async fn csv_import_of_human_grades_is_validated_and_all_or_nothing(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Grader).await;
    let (other, other_key) = t.tenant_with_key("other", Role::Grader).await;
    let (_, ingest) = t.tenant_with_key("ingest-only", Role::Ingest).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, r) = json_of(t.post_json("/v1/grade", &key, &submission_body()).await).await;
        assert_eq!(status, 200, "{r}");
        ids.push(r["id"].as_str().expect("id").to_string());
    }
    let (_, r) = json_of(
        t.post_json("/v1/grade", &other_key, &submission_body())
            .await,
    )
    .await;
    let foreign = r["id"].as_str().expect("id").to_string();
    let report = t
        .store
        .submission(&tenant.id, &ids[0])
        .await
        .expect("read")
        .expect("submission")
        .report
        .expect("report");
    let d0 = &report.scores[0];
    let d1 = &report.scores[1];
    let (lo, hi) = (d0.scale.min, d0.scale.max);
    let (a, b) = (&ids[0], &ids[1]);
    let (x, y) = (&d0.dimension, &d1.dimension);
    let good = format!(
        "submission_id,rater,dimension,score,override_reason\r\n\
         {a},kim,{x},{lo},\r\n\
         {a},kim,{y},{hi},\r\n\
         {a},lee,{x},{hi},\"too harsh, see \"\"evals\"\"\"\r\n\
         \r\n\
         {b},kim,{x},{lo},\r\n"
    );

    // Wrong role, wrong media type: refused.
    let (status, v) = post_csv(&t, &ingest, "text/csv", &good).await;
    assert_error(status, &v, 403, "forbidden");
    let (status, v) = post_csv(&t, &key, "application/json", &good).await;
    assert_error(status, &v, 415, "unsupported_media_type");

    // A bad line anywhere: 422 naming it, and nothing stored.
    let bad_score = format!("{good}{b},lee,{x},{},\n", hi + 1);
    let (status, v) = post_csv(&t, &key, "text/csv", &bad_score).await;
    let msg = assert_error(status, &v, 422, "score_out_of_range");
    assert!(msg.contains("line 7"), "{msg}");
    let bad_dim = format!("{good}{b},lee,no_such_dimension,{lo},\n");
    let (status, v) = post_csv(&t, &key, "text/csv", &bad_dim).await;
    let msg = assert_error(status, &v, 422, "unknown_dimension");
    assert!(msg.contains("line 7"), "{msg}");
    let bad_sub = format!("{good}{foreign},lee,{x},{lo},\n");
    let (status, v) = post_csv(&t, &key, "text/csv", &bad_sub).await;
    let msg = assert_error(status, &v, 422, "unknown_submission");
    assert!(msg.contains("line 7"), "{msg}");
    let (status, v) = post_csv(&t, &key, "text/csv; charset=utf-8", "submission_id,rater\n").await;
    let msg = assert_error(status, &v, 422, "invalid_csv");
    assert!(msg.contains("dimension"), "{msg}");
    for id in [a, b] {
        assert!(t
            .store
            .human_grades(&tenant.id, id)
            .await
            .expect("read")
            .is_empty());
    }
    assert!(t
        .store
        .human_grades(&other.id, &foreign)
        .await
        .expect("read")
        .is_empty());

    // The good file: one grade per (submission, rater) with all its dimensions.
    let (status, v) = post_csv(&t, &key, "text/csv; charset=utf-8", &good).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"imported": 3}));
    let on_a = t.store.human_grades(&tenant.id, a).await.expect("read");
    assert_eq!(on_a.len(), 2);
    let kim = on_a.iter().find(|g| g.rater == "kim").expect("kim");
    assert_eq!(
        kim.scores,
        BTreeMap::from([(x.clone(), f64::from(lo)), (y.clone(), f64::from(hi))])
    );
    assert_eq!(kim.override_reason, None);
    let lee = on_a.iter().find(|g| g.rater == "lee").expect("lee");
    assert_eq!(
        lee.override_reason.as_deref(),
        Some("too harsh, see \"evals\"")
    );
    assert_eq!(
        t.store
            .human_grades(&tenant.id, b)
            .await
            .expect("read")
            .len(),
        1
    );
    let audit = t.store.audit_log(&tenant.id, 100).await.expect("audit");
    assert_eq!(
        audit.iter().filter(|e| e.detail["import"] == "csv").count(),
        3
    );
}
