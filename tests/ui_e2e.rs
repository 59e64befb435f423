//! The review UI end to end in a real headless Chromium (Debian's chromium + chromedriver,
//! driven with fantoccini; see tests/support/browser.rs), on SQLite and on PostgreSQL.
//!
//! One grader's session, as a person would use it: log in, open the queue, open a
//! submission the offline judge graded (its report has evidence), see that the AI's scores
//! are not in the page, submit a blind grade (one score typed with the keyboard), see the
//! AI's scores revealed with highlighted evidence and an evidence link that jumps to its
//! quote, override one dimension with a reason, and see the calibration dashboard reflect
//! the grades. Then the two refusals: another tenant's submission is a 404 page, and a form
//! POST without its CSRF token (sent with reqwest and the browser's session cookie) is a 403
//! that stores nothing.
//!
//! Screenshots of every step go to `target/ui-artifacts/{backend}-NN-step.png`.
//! Missing chromium/chromedriver FAILS the test (with the install command), by design.

mod support;

use grader::store::Role;
use serde_json::Value;
use support::app::{submission_body, TestApp};
use support::browser::Browser;
use support::db::Backend;

const PERSON: &str = "Ada Lovelace";

/// The AI's scored dimensions of a report: (dimension id, score, rationale).
fn ai_scores(report: &Value) -> Vec<(String, i64, String)> {
    report["scores"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s["dimension"].as_str()?.to_string(),
                        s["score"].as_f64()? as i64,
                        s["rationale"].as_str().unwrap_or_default().to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn human_grade_count(t: &TestApp, tenant: &str, id: &str) -> usize {
    t.store
        .human_grades(tenant, id)
        .await
        .expect("human grades")
        .len()
}

async fn flow(backend: Backend) {
    // Fail first, and clearly, when the browser is not installed.
    support::browser::require_binaries();
    let tag = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let shot = |n: &str| format!("{tag}-{n}");
    let t = TestApp::spawn(backend).await;

    // Tenant A: a grader key and a graded submission whose report has evidence.
    let (tenant_a, key_a) = t.tenant_with_key("acme", Role::Grader).await;
    let resp = t
        .post_json("/v1/submissions", &key_a, &submission_body())
        .await;
    assert_eq!(resp.status(), 202);
    let id_a = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Tenant B: a submission of its own.
    let (tenant_b, key_b) = t.tenant_with_key("globex", Role::Grader).await;
    let resp = t
        .post_json("/v1/submissions", &key_b, &submission_body())
        .await;
    assert_eq!(resp.status(), 202);
    let id_b = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let graded = t.wait_graded(&key_a, &id_a).await;
    t.wait_graded(&key_b, &id_b).await;
    let report = graded["report"].clone();
    let scores = ai_scores(&report);
    assert!(
        scores.len() >= 2,
        "the offline judge scores several dimensions: {report}"
    );
    let evidence_quotes: usize = report["scores"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["evidence"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    assert!(evidence_quotes > 0, "the report has evidence: {report}");

    let b = Browser::start().await;

    // --- log in
    b.goto(&t.url("/ui/queue")).await;
    assert!(
        b.current_url().await.ends_with("/ui/login"),
        "an anonymous visit is sent to the login page, got {}",
        b.current_url().await
    );
    b.find("form#login").await;
    b.screenshot(&shot("01-login")).await;
    b.fill("#name", PERSON).await;
    b.fill("#key", &key_a).await;
    b.click("#login-submit").await;
    b.find("table#queue").await;
    assert!(b.current_url().await.ends_with("/ui/queue"));
    let session = b.cookie("grader_session").await;
    assert!(!session.is_empty());

    // --- the queue: tenant A's submission, not tenant B's
    let row = format!("tr.queue-row[data-id=\"{id_a}\"]");
    b.find(&row).await;
    assert_eq!(
        b.count(&format!("tr.queue-row[data-id=\"{id_b}\"]")).await,
        0,
        "another tenant's submission is not in the queue"
    );
    for nav in ["a#nav-queue", "a#nav-calibration", "form#logout"] {
        assert_eq!(b.count(nav).await, 1, "{nav}");
    }
    b.screenshot(&shot("02-queue")).await;

    // --- before anyone graded, the dashboard is an empty state
    b.click("a#nav-calibration").await;
    b.find(".empty-state").await;
    assert_eq!(b.count("section.dimension").await, 0);
    b.screenshot(&shot("03-dashboard-empty")).await;

    // --- the submission, blind: no AI score, rationale, flags or evidence in the HTML
    b.click("a#nav-queue").await;
    b.click(&format!("{row} a.open-submission")).await;
    b.find("form#blind-grade").await;
    assert!(b
        .current_url()
        .await
        .ends_with(&format!("/ui/submissions/{id_a}")));
    let html = b.source().await;
    for absent in [
        "id=\"ai-scores\"",
        "class=\"ai-score",
        "class=\"evidence",
        "id=\"recommendation\"",
        "id=\"flags\"",
        "id=\"override\"",
    ] {
        assert!(
            !html.contains(absent),
            "blind mode shows {absent} before the person graded"
        );
    }
    for (dim, _, rationale) in &scores {
        if rationale.len() > 20 {
            assert!(
                !html.contains(rationale.as_str()),
                "the AI's rationale for {dim} is in the blind page"
            );
        }
    }
    assert!(b.count("#transcript").await == 1);
    b.screenshot(&shot("04-submission-blind")).await;

    // --- the blind grade: the first dimension typed with the keyboard, the others selected.
    // Each human score differs from the AI's by at most one level, deterministically.
    let human: Vec<(String, i64)> = scores
        .iter()
        .enumerate()
        .map(|(i, (d, ai, _))| {
            let s = if i % 2 == 0 { *ai } else { (*ai - 1).max(1) };
            (d.clone(), s)
        })
        .collect();
    for (i, (dim, score)) in human.iter().enumerate() {
        let css = format!("select#score-{dim}");
        if i == 0 {
            let e = b.find(&css).await;
            e.send_keys(&score.to_string()).await.expect("type a digit");
            let chosen = e.prop("value").await.expect("value");
            assert_eq!(
                chosen.as_deref(),
                Some(score.to_string().as_str()),
                "typing the digit picks that level"
            );
        } else {
            b.select(&css, &score.to_string()).await;
        }
    }
    b.fill("textarea#comment", "Clear retrieval design; thin on cost.")
        .await;
    b.screenshot(&shot("05-blind-grade-filled")).await;
    b.click("#submit-grade").await;

    // --- revealed: the AI's scores, evidence highlighted and linked
    b.find("table#ai-scores").await;
    assert_eq!(b.count("form#blind-grade").await, 0);
    assert_eq!(
        b.count("tr.ai-score").await,
        report["scores"].as_array().map_or(0, Vec::len)
    );
    for (dim, _, _) in &scores {
        assert_eq!(
            b.count(&format!("tr.ai-score[data-dimension=\"{dim}\"]"))
                .await,
            1,
            "{dim}"
        );
    }
    let marks = b.count("#transcript mark.evidence").await;
    assert!(marks > 0, "evidence is highlighted in the transcript");
    b.find("#my-grade").await;
    b.find("#recommendation").await;
    assert!(
        b.text("#recommendation")
            .await
            .to_lowercase()
            .contains("advisory"),
        "the recommendation is marked advisory"
    );
    b.screenshot(&shot("06-revealed")).await;

    let link = b.find("a.evidence-link").await;
    let href = link.attr("href").await.expect("href").expect("an href");
    assert!(href.starts_with("#ev-"), "{href}");
    link.click().await.expect("click the evidence link");
    assert!(
        b.current_url().await.ends_with(&href),
        "the link jumps to {href}"
    );
    let target = &href[1..];
    b.find(&format!("mark.evidence[id=\"{target}\"]")).await;
    let in_view = b
        .eval(&format!(
            "const r = document.getElementById('{target}').getBoundingClientRect(); \
             return r.top >= 0 && r.bottom <= window.innerHeight;"
        ))
        .await;
    assert_eq!(
        in_view,
        Value::Bool(true),
        "the quote {target} is scrolled into view"
    );
    b.screenshot(&shot("07-evidence-link")).await;

    // --- override one dimension with a reason (the first scored one, to a different level)
    let (odim, oai, _) = scores[0].clone();
    let oscore = if oai > 1 { oai - 1 } else { oai + 1 };
    b.select("select#override-dimension", &odim).await;
    b.select("select#override-score", &oscore.to_string()).await;
    let reason = "The answer never estimated the token cost per query.";
    b.fill("textarea#override-reason", reason).await;
    b.click("#submit-override").await;
    b.find("#overrides li.override").await;
    let overrides = b.text("#overrides").await;
    assert!(overrides.contains(reason), "{overrides}");
    assert!(overrides.contains(&odim), "{overrides}");
    b.screenshot(&shot("08-override")).await;
    // Nothing overwritten: the AI's report is unchanged and both grades are stored.
    let after = t.get(&format!("/v1/submissions/{id_a}"), &key_a).await;
    let after: Value = after.json().await.expect("json");
    assert_eq!(after["report"]["scores"], report["scores"]);
    let grades = t
        .store
        .human_grades(&tenant_a.id, &id_a)
        .await
        .expect("grades");
    assert_eq!(grades.len(), 2);
    assert_eq!(grades[1].override_reason.as_deref(), Some(reason));
    assert_eq!(grades[1].scores.get(&odim), Some(&(oscore as f64)));

    // --- the dashboard reflects the grades: per dimension one item; the overridden
    // dimension counts the override (the person's latest grade) against the AI's score.
    b.click("a#nav-calibration").await;
    b.find("table#grader-agreement").await;
    assert_eq!(b.count(".empty-state").await, 0);
    for (dim, score) in &human {
        let section = format!("section.dimension[data-dimension=\"{dim}\"]");
        b.find(&section).await;
        assert_eq!(b.text(&format!("{section} .value.n")).await, "1", "{dim}");
        assert_eq!(
            b.count(&format!("{section} svg.scatter circle.point"))
                .await,
            1,
            "{dim}"
        );
        for chart in ["svg.confusion", "svg.versions", "svg.distribution"] {
            assert_eq!(
                b.count(&format!("{section} {chart}")).await,
                1,
                "{dim} {chart}"
            );
        }
        let ai = scores
            .iter()
            .find(|(d, _, _)| d == dim)
            .map(|s| s.1)
            .unwrap_or_default();
        let h = if *dim == odim { oscore } else { *score };
        let cell = format!(
            "{section} svg.confusion g.cell[data-ai=\"{ai}\"][data-human=\"{h}\"][data-count=\"1\"]"
        );
        assert_eq!(b.count(&cell).await, 1, "{dim}: AI {ai} vs human {h}");
    }
    let rows = b
        .count(&format!(
            "#grader-agreement tr.grader-row[data-rater=\"{PERSON}\"]"
        ))
        .await;
    assert_eq!(
        rows,
        human.len(),
        "one agreement row per dimension the person graded"
    );
    b.screenshot(&shot("09-dashboard")).await;
    b.eval("window.scrollTo(0, document.body.scrollHeight); return true;")
        .await;
    b.screenshot(&shot("10-dashboard-graders")).await;

    // --- another tenant's submission: the 404 page, nothing of it shown
    b.goto(&t.url(&format!("/ui/submissions/{id_b}"))).await;
    let h1 = b.text("h1").await;
    assert!(h1.contains("Not found"), "{h1}");
    assert_eq!(b.count("#transcript").await, 0);
    b.screenshot(&shot("11-other-tenant-404")).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie = format!("grader_session={session}");
    let resp = http
        .get(t.url(&format!("/ui/submissions/{id_b}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);

    // --- a form POST without its CSRF token (or with a wrong one) is refused, nothing stored
    let before = human_grade_count(&t, &tenant_a.id, &id_a).await;
    for body in [
        format!("dimension={odim}&score=1&reason=no+token"),
        format!("dimension={odim}&score=1&reason=wrong+token&csrf_token=forged"),
    ] {
        let resp = http
            .post(t.url(&format!("/ui/submissions/{id_a}/overrides")))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 403, "{body}");
        let text = resp.text().await.expect("body");
        assert!(text.contains("CSRF token missing or invalid"), "{text}");
    }
    assert_eq!(human_grade_count(&t, &tenant_a.id, &id_a).await, before);
    assert_eq!(human_grade_count(&t, &tenant_b.id, &id_b).await, 0);

    // --- the dashboard's stage filter, and its figures are the API's (one code path)
    let page = |q: &'static str| {
        http.get(t.url(&format!("/ui/calibration{q}")))
            .header("cookie", &cookie)
            .send()
    };
    let resp = page("?stage=bogus").await.expect("send");
    assert_eq!(resp.status(), 422);
    let resp = page("?stage=hands_on").await.expect("send");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("body");
    assert!(html.contains("No human grades yet") && !html.contains("section class=\"dimension\""));
    let api: Value = t
        .get("/v1/calibration?stage=system_design", &key_a)
        .await
        .json()
        .await
        .expect("calibration JSON");
    let (dim, _) = &human[1];
    let qwk = api["dimensions"][dim]["qwk"].as_f64();
    b.goto(&t.url("/ui/calibration?stage=system_design")).await;
    let shown = b
        .text(&format!(
            "section.dimension[data-dimension=\"{dim}\"] td.qwk .value"
        ))
        .await;
    let expected = qwk.map_or("–".to_string(), |q| format!("{q:.2}"));
    assert_eq!(shown, expected, "{dim}: the page shows the API's QWK");
    assert_eq!(api["dimensions"][dim]["n"], 1);

    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_ui_end_to_end_in_chromium_sqlite() {
    flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_ui_end_to_end_in_chromium_postgres() {
    flow(Backend::Postgres).await;
}
