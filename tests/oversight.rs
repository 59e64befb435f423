//! Human oversight end to end: the stop switch through the API, decisions recorded only by
//! people, the explanation, the AI-generated/advisory notice on every path, the bias-audit
//! API, and per-key and per-webhook rate limits. Real server, real workers, both backends
//! (`<name>::sqlite`, `<name>::postgres`).

mod support;

use grader::service::REVIEW_EVERYTHING_REASON;
use grader::store::{Role, TenantSettings};
use serde_json::{json, Value};
use support::app::{submission_body, transcript, Options, TestApp};
use support::db::Backend;
use support::{Scripted, StandIn};

both_backends!(
    stop_switch_set_through_the_api_applies_to_later_gradings,
    decisions_are_recorded_by_people_only,
    explanation_is_plain_deterministic_audited_and_tenant_scoped,
    bias_audit_api_reads_stored_reports_and_keeps_no_demographics,
    rate_limits_answer_429_with_retry_after_and_are_counted,
);

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("response body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

async fn put_json(t: &TestApp, path: &str, key: &str, body: &Value) -> (u16, Value) {
    json_of(
        t.client
            .put(t.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("send"),
    )
    .await
}

fn has_stop_reason(report: &Value) -> bool {
    report["review_reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x == REVIEW_EVERYTHING_REASON))
}

async fn sync_grade(t: &TestApp, key: &str) -> Value {
    let (status, v) = json_of(t.post_json("/v1/grade", key, &submission_body()).await).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn async_grade(t: &TestApp, key: &str) -> Value {
    let (status, v) = json_of(
        t.post_json("/v1/submissions", key, &submission_body())
            .await,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    t.wait_graded(key, &id).await["report"].clone()
}

// ---------------------------------------------------------------- the stop switch

async fn stop_switch_set_through_the_api_applies_to_later_gradings(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, admin) = t.tenant_with_key("acme", Role::Admin).await;
    let ingest = t.key(&tenant, Role::Ingest).await;
    // A secret set out of band must never be echoed.
    t.store
        .update_tenant_settings(
            &tenant.id,
            &TenantSettings {
                callback_secret: Some("whsec_topsecretvalue".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Off: no stop-switch reason on either path. Make the auth cache hold the tenant now,
    // so the later sync grading proves the switch is read fresh, not from the cache.
    assert!(!has_stop_reason(&sync_grade(&t, &ingest).await));
    assert!(!has_stop_reason(&async_grade(&t, &ingest).await));

    // Only an admin may flip it.
    let (status, v) = put_json(
        &t,
        "/v1/tenant/settings",
        &ingest,
        &json!({"review_everything": true}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (status, v) = put_json(
        &t,
        "/v1/tenant/settings",
        &admin,
        &json!({"review_everything": "yes"}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = put_json(
        &t,
        "/v1/tenant/settings",
        &admin,
        &json!({"callback_secret": "x"}),
    )
    .await;
    assert_eq!(status, 422, "secrets are not set through this route: {v}");
    let (status, v) = put_json(
        &t,
        "/v1/tenant/settings",
        &admin,
        &json!({"callback_url": "ftp://x"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_callback_url")),
        "{v}"
    );

    let (status, v) = put_json(
        &t,
        "/v1/tenant/settings",
        &admin,
        &json!({"review_everything": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["review_everything"], true);
    assert_eq!(v["blind_review"], true, "blind review stays at its default");
    assert_eq!(v["callback_secret_set"], true);
    assert!(!v.to_string().contains("topsecret"), "{v}");
    // The partial update kept the secret.
    let stored = t.store.tenant(&tenant.id).await.unwrap().unwrap();
    assert_eq!(stored.settings.review_everything, Some(true));
    assert_eq!(
        stored.settings.callback_secret.as_deref(),
        Some("whsec_topsecretvalue")
    );

    // On: every grading that starts now goes to review, sync and async alike.
    let r = sync_grade(&t, &ingest).await;
    assert!(r["needs_review"] == true && has_stop_reason(&r), "{r}");
    let r = async_grade(&t, &ingest).await;
    assert!(r["needs_review"] == true && has_stop_reason(&r), "{r}");

    let (status, v) = json_of(t.get("/v1/tenant/settings", &admin).await).await;
    assert_eq!(
        (status, v["review_everything"].as_bool()),
        (200, Some(true)),
        "{v}"
    );

    // Off again.
    let (status, _) = put_json(
        &t,
        "/v1/tenant/settings",
        &admin,
        &json!({"review_everything": false}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!has_stop_reason(&sync_grade(&t, &ingest).await));

    // Audited, with what changed.
    let audit = t.store.audit_log(&tenant.id, 1000).await.unwrap();
    let changes: Vec<&Value> = audit
        .iter()
        .filter(|e| e.action == "tenant.settings_updated")
        .map(|e| &e.detail)
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    // Newest first.
    assert_eq!(changes[0]["changed"]["review_everything"]["to"], false);
    assert_eq!(changes[1]["changed"]["review_everything"]["to"], true);
    assert!(!format!("{changes:?}").contains("topsecret"));
}

// ---------------------------------------------------------------- decisions

async fn decisions_are_recorded_by_people_only(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, grader_key) = t.tenant_with_key("acme", Role::Grader).await;
    let ingest = t.key(&tenant, Role::Ingest).await;
    let (_, other) = t.tenant_with_key("other", Role::Admin).await;
    let report = async_grade(&t, &ingest).await;
    let id = report["id"].as_str().expect("report id").to_string();
    // The async submission's id is not the report's; find it through the audit log.
    let audit = t.store.audit_log(&tenant.id, 1000).await.unwrap();
    let sub_id = audit
        .iter()
        .find(|e| e.action == "grading.completed" && e.detail["report_id"] == id.as_str())
        .and_then(|e| e.subject.clone())
        .expect("grading.completed entry");

    // Grading alone records no decision.
    assert!(
        !audit.iter().any(|e| e.action.starts_with("decision")),
        "grading recorded a decision: {audit:?}"
    );
    let path = format!("/v1/submissions/{sub_id}/decisions");
    let (status, v) = json_of(t.get(&path, &grader_key).await).await;
    assert_eq!((status, v.clone()), (200, json!([])));

    let post = |body: Value, key: String| {
        let path = format!("/v1/submissions/{sub_id}/decision");
        let t = &t;
        async move { json_of(t.post_json(&path, &key, &body).await).await }
    };
    let good = json!({"decision": "advance", "decided_by": "Dana Smith", "reason": "Strong retrieval design"});
    let (status, v) = post(good.clone(), ingest.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    for who in ["ai", "AI", "system", "auto", "grader", "", "key:abc"] {
        let mut b = good.clone();
        b["decided_by"] = json!(who);
        let (status, v) = post(b, grader_key.clone()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("invalid_decided_by")),
            "{who:?}: {v}"
        );
    }
    let mut b = good.clone();
    b["decision"] = json!("strong_hire");
    let (status, v) = post(b, grader_key.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_decision")),
        "{v}"
    );
    let mut b = good.clone();
    b["reason"] = json!("  ");
    assert_eq!(post(b, grader_key.clone()).await.0, 422);
    let mut b = good.clone();
    b.as_object_mut().unwrap().remove("decided_by");
    assert_eq!(
        post(b, grader_key.clone()).await.0,
        422,
        "decided_by is required"
    );
    // Another tenant's submission is a 404.
    assert_eq!(post(good.clone(), other.clone()).await.0, 404);
    assert_eq!(json_of(t.get(&path, &other).await).await.0, 404);
    // Nothing refused was recorded.
    let entries = t
        .store
        .audit_entries(&tenant.id, &sub_id, "decision.recorded")
        .await
        .unwrap();
    assert!(entries.is_empty(), "{entries:?}");

    let (status, v) = post(good.clone(), grader_key.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["decision"], "advance");
    assert_eq!(v["decided_by"], "Dana Smith");
    assert_eq!(v["ai_recommendation"], report["recommendation"]);
    let (status, v) = post(
        json!({"decision": "hire", "decided_by": "Lee Chen", "reason": "Panel agreed"}),
        grader_key.clone(),
    )
    .await;
    assert_eq!(status, 201, "{v}");

    let (status, list) = json_of(t.get(&path, &grader_key).await).await;
    assert_eq!(status, 200);
    let list = list.as_array().expect("list").clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["decided_by"], "Dana Smith");
    assert_eq!(list[1]["decision"], "hire");
    let entries = t
        .store
        .audit_entries(&tenant.id, &sub_id, "decision.recorded")
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries[0].actor.starts_with("key:") && entries[0].actor.ends_with("/person:Dana Smith"),
        "{}",
        entries[0].actor
    );
    assert_eq!(
        entries[0].detail["ai_recommendation"],
        report["recommendation"]
    );
    assert_eq!(entries[0].detail["report_id"], id.as_str());
}

// ---------------------------------------------------------------- explanation

async fn explanation_is_plain_deterministic_audited_and_tenant_scoped(backend: Backend) {
    // No workers: a queued submission stays queued.
    let t = TestApp::spawn_with(Options::new(backend).workers(0)).await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let grader_key = t.key(&tenant, Role::Grader).await;
    let (_, other) = t.tenant_with_key("other", Role::Admin).await;

    let (_, v) = json_of(
        t.post_json("/v1/submissions", &key, &submission_body())
            .await,
    )
    .await;
    let queued = v["id"].as_str().unwrap().to_string();
    let (status, v) = json_of(
        t.get(&format!("/v1/submissions/{queued}/explanation"), &key)
            .await,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("not_graded")),
        "{v}"
    );

    let report = sync_grade(&t, &key).await;
    let id = report["id"].as_str().unwrap().to_string();
    let path = format!("/v1/submissions/{id}/explanation");
    assert_eq!(json_of(t.get(&path, &other).await).await.0, 404);
    assert_eq!(
        json_of(t.get("/v1/submissions/nope/explanation", &key).await)
            .await
            .0,
        404
    );
    assert_eq!(
        json_of(t.get(&format!("{path}?format=xml"), &key).await)
            .await
            .0,
        400
    );

    let (status, e) = json_of(t.get(&path, &key).await).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["submission_id"], id.as_str());
    assert_eq!(
        (e["ai_generated"].as_bool(), e["advisory"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(e["recommendation"]["advisory"], true);
    assert_eq!(e["recommendation"]["value"], report["recommendation"]);
    assert_eq!(e["prompt"], report["prompt"]);
    assert_eq!(e["model"], "offline");
    assert_eq!(e["samples"], report["judge"]["samples"]);
    assert_eq!(e["calibration"]["status"], "uncalibrated");
    assert_eq!(e["human_review"]["needs_review"], report["needs_review"]);
    assert_eq!(e["human_review"]["human_grades"], 0);
    assert!(e["decision"].is_null());
    assert!(e["how_to_contest"].as_str().unwrap().contains(&id));

    // Every score is explained with the registry's anchor for its level and its evidence.
    let registry = support::fixtures::registry();
    let prompt = registry
        .get(
            report["prompt"]["id"].as_str().unwrap(),
            report["prompt"]["version"].as_str().unwrap(),
        )
        .expect("the report's prompt version");
    let scores = e["scores"].as_array().unwrap();
    assert_eq!(scores.len(), report["scores"].as_array().unwrap().len());
    let mut anchored = 0;
    for (s, r) in scores.iter().zip(report["scores"].as_array().unwrap()) {
        assert_eq!(s["dimension"], r["dimension"]);
        assert_eq!(s["score"], r["score"]);
        let dim = prompt
            .file
            .dimensions
            .iter()
            .find(|d| d.id == s["dimension"].as_str().unwrap())
            .unwrap();
        assert_eq!(s["name"], dim.name.as_str());
        if let Some(score) = s["score"].as_f64().filter(|v| v.fract() == 0.0) {
            assert_eq!(s["anchor"].as_str(), dim.anchor(score as u8), "{s}");
            anchored += 1;
        }
        let quotes: Vec<&Value> = r["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| &q["quote"])
            .collect();
        assert_eq!(
            s["evidence"].as_array().unwrap().iter().collect::<Vec<_>>(),
            quotes
        );
    }
    assert!(anchored > 0, "some score should be whole: {e}");

    // Plain language for a candidate: says what it is, no jargon; deterministic.
    let summary = e["summary"].as_str().unwrap();
    for needle in [
        "AI-generated",
        "advisory",
        "A person at the company",
        "Decision: none has been recorded",
    ] {
        assert!(summary.contains(needle), "{needle:?} missing: {summary}");
    }
    // Our own statistical vocabulary (the rubric's anchors are quoted as written).
    for jargon in [
        "QWK",
        "isotonic",
        "sha256",
        "Krippendorff",
        "calibration map",
        "null",
    ] {
        assert!(!summary.contains(jargon), "{jargon:?} in: {summary}");
    }
    let (_, again) = json_of(t.get(&path, &key).await).await;
    assert_eq!(again, e, "the explanation is deterministic");

    // Text form.
    let resp = t.get(&format!("{path}?format=text"), &key).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(summary) && text.contains("contest"),
        "{text}"
    );

    // A person's grade and decision show up.
    let dim = report["scores"][0]["dimension"].as_str().unwrap();
    let (status, v) = json_of(
        t.post_json(
            &format!("/v1/submissions/{id}/human-grades"),
            &grader_key,
            &json!({"scores": {dim: 2}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = json_of(
        t.post_json(
            &format!("/v1/submissions/{id}/decision"),
            &grader_key,
            &json!({"decision": "reject", "decided_by": "Dana Smith", "reason": "Not enough depth"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (_, e) = json_of(t.get(&path, &key).await).await;
    assert_eq!(e["human_review"]["human_grades"], 1);
    assert_eq!(e["decision"]["decided_by"], "Dana Smith");
    let summary = e["summary"].as_str().unwrap();
    assert!(
        summary.contains("One person has graded")
            && summary.contains("a person (Dana Smith) decided not to continue"),
        "{summary}"
    );

    let views = t
        .store
        .audit_entries(&tenant.id, &id, "explanation.viewed")
        .await
        .unwrap();
    assert_eq!(
        views.len(),
        4,
        "json x2, text, after the decision: {views:?}"
    );
    assert_eq!(views[2].detail["format"], "text");
}

// ---------------------------------------------------------------- notice on every path

#[tokio::test]
async fn every_report_says_it_is_ai_generated_and_advisory_on_every_path() {
    // Offline judge, sync and async.
    let t = TestApp::spawn(Backend::Sqlite).await;
    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let mut notices = vec![
        ("offline sync", sync_grade(&t, &key).await),
        ("offline async", async_grade(&t, &key).await),
    ];
    // A model (the stand-in), then a model whose answers never parse (unscored).
    let standin = StandIn::start().await;
    standin.set_default(Scripted::dynamic(|req| {
        Scripted::reply(support::fixtures::judgment_for_request(req, 3).to_string())
    }));
    let m = TestApp::spawn_with(Options::new(Backend::Sqlite).model(&standin.base_url)).await;
    let (_, mkey) = m.tenant_with_key("acme", Role::Ingest).await;
    notices.push(("model sync", sync_grade(&m, &mkey).await));
    notices.push(("model async", async_grade(&m, &mkey).await));
    standin.set_default(Scripted::reply("this is not JSON at all"));
    let mut body = submission_body();
    body["no_cache"] = json!(true);
    let (status, unscored) = json_of(m.post_json("/v1/grade", &mkey, &body).await).await;
    assert_eq!(status, 200, "{unscored}");
    assert_eq!(unscored["status"], "unscored", "{unscored}");
    notices.push(("model unscored", unscored));
    for (path, r) in &notices {
        let n = r["notice"].as_str().unwrap_or_default();
        assert!(n.contains("advisory"), "{path}: {n}");
        assert!(n.contains("makes every hiring decision"), "{path}: {n}");
        assert!(n.contains("AI-generated"), "{path}: {n}");
        if r["judge"]["model"] == "offline" {
            assert!(n.contains("offline pattern judge"), "{path}: {n}");
        }
        // The recommendation is never a decision: no report carries one.
        assert!(r.get("decision").is_none(), "{path}");
    }
}

// ---------------------------------------------------------------- bias audit API

async fn bias_audit_api_reads_stored_reports_and_keeps_no_demographics(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, admin) = t.tenant_with_key("acme", Role::Admin).await;
    let grader_key = t.key(&tenant, Role::Grader).await;
    let (_, other) = t.tenant_with_key("other", Role::Admin).await;
    // Four gradings of different answers: the strong example and shorter written-out
    // variants, so the scores and lengths differ.
    let full = transcript();
    let lines: Vec<&str> = full.lines().collect();
    let mut ids = Vec::new();
    let mut overall = Vec::new();
    for keep in [
        lines.len(),
        lines.len() * 2 / 3,
        lines.len() / 2,
        lines.len() / 3,
    ] {
        let mut body = submission_body();
        body["transcript"] = json!(lines[..keep.max(2)].join("\n"));
        let (status, r) = json_of(t.post_json("/v1/grade", &admin, &body).await).await;
        assert_eq!(status, 200, "{r}");
        ids.push(r["id"].as_str().unwrap().to_string());
        overall.push(r["overall"].as_f64());
    }
    // A human grade on the first.
    let (status, g) = json_of(
        t.post_json(
            &format!("/v1/submissions/{}/human-grades", ids[0]),
            &grader_key,
            &json!({"scores": {"retrieval_strategy": 3}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{g}");

    let body = json!({
        "demographics": [
            {"submission_id": ids[0], "categories": {"sex": "female", "race_ethnicity": "zz_secret_category"}},
            {"submission_id": ids[1], "categories": {"sex": "male"}},
            {"submission_id": ids[2], "categories": {"sex": "female", "race_ethnicity": "asian"}},
            {"submission_id": ids[3], "categories": {"sex": ""}},
            {"submission_id": "not-a-submission", "categories": {"sex": "male"}},
        ],
    });
    let (status, v) = json_of(t.post_json("/v1/bias-audit", &grader_key, &body).await).await;
    assert_eq!(status, 403, "admin only: {v}");
    let (status, v) = json_of(t.post_json("/v1/bias-audit", &other, &body).await).await;
    assert_eq!(
        status, 422,
        "another tenant sees none of these submissions: {v}"
    );
    let (status, v) = json_of(
        t.post_json("/v1/bias-audit", &admin, &json!({"demographics": []}))
            .await,
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let dup = json!({"demographics": [
        {"submission_id": ids[0], "categories": {}}, {"submission_id": ids[0], "categories": {}}
    ]});
    assert_eq!(
        json_of(t.post_json("/v1/bias-audit", &admin, &dup).await)
            .await
            .0,
        422
    );

    let (status, v) = json_of(t.post_json("/v1/bias-audit", &admin, &body).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["score"], "overall");
    assert_eq!(v["requested"], 5);
    assert_eq!(v["skipped"]["not_graded"], 1);
    let a = &v["audit"];
    let scored: Vec<f64> = overall.iter().flatten().copied().collect();
    assert_eq!(a["n"], scored.len());
    assert_eq!(a["median"].as_f64(), grader::fairness::median(&scored));
    assert_eq!(a["fields"], json!(["race_ethnicity", "sex"]));
    let sex = a["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["field"] == "sex")
        .unwrap();
    let count = |name: &str| {
        sex["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["category"] == name)
            .map(|c| c["count"].clone())
    };
    assert_eq!(count("female"), Some(json!(2)));
    assert_eq!(count("male"), Some(json!(1)));
    assert_eq!(count("unknown"), Some(json!(1)));
    assert_eq!(a["length"]["n"], scored.len());
    assert_eq!(
        a["length"]["n_human"], 1,
        "only the first has a human grade for overall"
    );

    // Many ids: the store reads them in chunks (SQLite 500, PostgreSQL 2,000 per query);
    // the real ones come last, in the third SQLite chunk.
    let mut many: Vec<Value> = (0..1200)
        .map(|i| json!({"submission_id": format!("fake-{i}"), "categories": {"sex": "x"}}))
        .collect();
    for id in &ids {
        many.push(json!({"submission_id": id, "categories": {"sex": "y"}}));
    }
    let (status, v) = json_of(
        t.post_json("/v1/bias-audit", &admin, &json!({"demographics": many}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["skipped"]["not_graded"], 1200);
    assert_eq!(v["audit"]["n"], scored.len());

    // A dimension audit.
    let mut dim_body = body.clone();
    dim_body["dimension"] = json!("retrieval_strategy");
    dim_body["stage"] = json!("system_design");
    let (status, v) = json_of(t.post_json("/v1/bias-audit", &admin, &dim_body).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["score"], "retrieval_strategy");
    let mut bad_stage = body.clone();
    bad_stage["stage"] = json!("nope");
    assert_eq!(
        json_of(t.post_json("/v1/bias-audit", &admin, &bad_stage).await)
            .await
            .0,
        422
    );

    // The audit is logged with counts only; the categories are nowhere in the store.
    let audit = t.store.audit_log(&tenant.id, 1000).await.unwrap();
    let runs: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "bias_audit.run")
        .collect();
    assert_eq!(runs.len(), 3);
    assert_eq!(
        runs[2].detail["requested"], 5,
        "the oldest run, newest first"
    );
    let everything = format!("{audit:?}");
    assert!(
        !everything.contains("zz_secret_category"),
        "categories leaked into the audit log"
    );
    for id in &ids {
        let rec = t.store.submission(&tenant.id, id).await.unwrap().unwrap();
        assert!(!format!("{rec:?}").contains("zz_secret_category"));
    }
}

// ---------------------------------------------------------------- rate limits

async fn rate_limits_answer_429_with_retry_after_and_are_counted(backend: Backend) {
    let t = TestApp::spawn_with(Options::new(backend).tweak(|c| {
        c.service.rate_limit_per_minute = 3;
        c.service.rate_limit_roles.insert("admin".into(), 0);
        c.service.webhook_rate_limit_per_minute = 2;
    }))
    .await;
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let second = t.key(&tenant, Role::Ingest).await;
    let admin = t.key(&tenant, Role::Admin).await;
    for i in 0..3 {
        let resp = t.get("/v1/prompts", &key).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let resp = t.get("/v1/prompts", &key).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry),
        "3/min refills one every 20 s: {retry}"
    );
    let (_, v) = json_of(resp).await;
    assert_eq!(v["error"]["code"], "rate_limited");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("3 requests per minute") && msg.contains("rate_limit_per_minute"),
        "{msg}"
    );
    // Keys are limited separately; the admin role's override switches the limit off.
    assert_eq!(t.get("/v1/prompts", &second).await.status(), 200);
    for _ in 0..5 {
        assert_eq!(t.get("/v1/prompts", &admin).await.status(), 200);
    }
    // A bad key is still a 401, not a 429, and costs no bucket.
    assert_eq!(t.get("/v1/prompts", "not-a-key").await.status(), 401);
    // Unauthenticated operations routes are not limited.
    for _ in 0..5 {
        assert_eq!(
            t.client
                .get(t.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    // Webhooks: per tenant name and source, before the signature is checked.
    let hook = |source: &str| {
        t.client
            .post(t.url(&format!("/v1/webhooks/acme/{source}")))
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    for _ in 0..2 {
        assert_ne!(hook("standard").await.unwrap().status(), 429);
    }
    let resp = hook("standard").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let (_, v) = json_of(resp).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("webhook"),
        "{v}"
    );
    assert_ne!(
        hook("lever").await.unwrap().status(),
        429,
        "another source has its own bucket"
    );

    let metrics = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("grader_rate_limited_total{limit=\"key\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("grader_rate_limited_total{limit=\"webhook\"} 1"),
        "{metrics}"
    );
    assert_eq!(t.app.metrics.rate_limited("key"), 1);
}

#[tokio::test]
async fn limits_are_off_by_default() {
    let t = TestApp::spawn_with(Options::new(Backend::Sqlite).workers(0)).await;
    assert_eq!(t.app.config.service.rate_limit_per_minute, 0);
    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    for _ in 0..50 {
        assert_eq!(t.get("/v1/prompts", &key).await.status(), 200);
    }
}

#[tokio::test]
async fn transcript_size_and_turn_limits_answer_clear_errors() {
    let t = TestApp::spawn_with(Options::new(Backend::Sqlite).workers(0).tweak(|c| {
        c.limits.max_chars = 2_000;
        c.limits.max_turns = 4;
    }))
    .await;
    let (_, key) = t.tenant_with_key("acme", Role::Ingest).await;
    let turns: Vec<Value> = (0..6)
        .map(|i| {
            json!({"speaker": if i % 2 == 0 { "Interviewer" } else { "Candidate" }, "text": "hello there"})
        })
        .collect();
    let body = json!({"stage": "system_design", "transcript": turns});
    let (status, v) = json_of(t.post_json("/v1/submissions", &key, &body).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("too_many_turns")),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap().contains('4'), "{v}");
    let body =
        json!({"stage": "written_answer", "question": "Why?", "answer": "word ".repeat(1_000)});
    let (status, v) = json_of(t.post_json("/v1/grade", &key, &body).await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("input_too_large")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("2000"),
        "{v}"
    );
}

#[tokio::test]
async fn openapi_documents_the_oversight_routes() {
    let t = TestApp::spawn_with(Options::new(Backend::Sqlite).workers(0)).await;
    let doc: Value = t
        .client
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/tenant/settings",
        "/v1/submissions/{id}/decision",
        "/v1/submissions/{id}/decisions",
        "/v1/submissions/{id}/explanation",
        "/v1/bias-audit",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    assert!(paths["/v1/tenant/settings"].get("put").is_some());
}
