//! The review UI (`/ui`) over HTTP: a real server (tests/support/app.rs) on SQLite and on
//! PostgreSQL, driven with reqwest as a browser would be, cookies carried by hand and
//! redirects not followed, so every status and Location is checked. The Chromium tests
//! (tests/ui_e2e.rs) cover the same pages in a real browser.

mod support;

use std::collections::HashMap;

use grader::domain::{GradeReport, Submission};
use grader::store::{NewSubmission, Role, Tenant, TenantSettings};
use serde_json::Value;
use support::app::{submission_body, TestApp};
use support::db::Backend;

both_backends!(
    login_sessions_redirects_and_headers,
    blind_grade_then_reveal_then_override,
    csrf_is_required_on_every_form,
    blind_mode_off_shows_scores_at_once,
    another_tenants_submission_is_404,
    queue_priority_filters_and_pages,
    transcripts_are_escaped_and_assets_served,
);

/// A cookie-carrying client that does not follow redirects.
struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    fn new(t: &TestApp) -> Browser {
        Browser {
            base: t.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for sc in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let sc = sc.to_str().expect("ascii cookie");
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (k, v) = pair.split_once('=').expect("name=value");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| v.to_str().expect("ascii").to_string()),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.finish(resp).await
    }

    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_encode(pairs))
            .send()
            .await
            .expect("POST");
        self.finish(resp).await
    }

    /// Logs in through the form; panics unless it lands on the queue.
    async fn login(t: &TestApp, key: &str, name: &str) -> Browser {
        let mut b = Browser::new(t);
        let form = b.get("/ui/login").await;
        assert_eq!(form.status, 200);
        let token = csrf(&form.body);
        let done = b
            .post(
                "/ui/login",
                &[("csrf_token", &token), ("name", name), ("key", key)],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(done.location.as_deref(), Some("/ui/queue"));
        assert!(b.cookies.contains_key("grader_session"));
        b
    }

    /// The CSRF token of the page at `path` (from its logout form).
    async fn csrf_of(&mut self, path: &str) -> String {
        let p = self.get(path).await;
        assert_eq!(p.status, 200, "{}", p.body);
        csrf(&p.body)
    }
}

/// The value of the first `csrf_token` hidden input in `html`.
fn csrf(html: &str) -> String {
    let at = html
        .find(r#"name="csrf_token" value=""#)
        .unwrap_or_else(|| panic!("no csrf_token in {html}"));
    let rest = &html[at + r#"name="csrf_token" value=""#.len()..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

/// The `data-id`s of the queue's rows, in order.
fn queue_ids(html: &str) -> Vec<String> {
    html.split(r#"<tr class="queue-row" data-id=""#)
        .skip(1)
        .map(|s| s[..s.find('"').expect("quote")].to_string())
        .collect()
}

/// A tenant with a grader key and an ingest key.
async fn team(t: &TestApp, name: &str) -> (Tenant, String, String) {
    let (tenant, grader) = t.tenant_with_key(name, Role::Grader).await;
    let ingest = t.key(&tenant, Role::Ingest).await;
    (tenant, grader, ingest)
}

/// A submission graded synchronously by the offline judge (it finds evidence in the strong
/// system-design sample); returns the report.
async fn graded(t: &TestApp, ingest: &str) -> GradeReport {
    let resp = t.post_json("/v1/grade", ingest, &submission_body()).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("report JSON")
}

async fn human_grades(t: &TestApp, tenant: &Tenant, id: &str) -> Vec<grader::store::HumanGrade> {
    t.store
        .human_grades(&tenant.id, id)
        .await
        .expect("human grades")
}

async fn login_sessions_redirects_and_headers(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, grader, ingest) = team(&t, "acme").await;
    let mut anon = Browser::new(&t);
    for path in ["/ui/queue", "/ui/submissions/x", "/ui/calibration", "/ui"] {
        let p = anon.get(path).await;
        assert_eq!(p.status, 303, "{path}");
        let to = p.location.as_deref().unwrap_or_default();
        assert!(to == "/ui/login" || to == "/ui/queue", "{path} -> {to}");
    }
    let form = anon.get("/ui/login").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"<form id="login""#));
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(form.headers["x-frame-options"], "DENY");
    assert!(form.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let token = csrf(&form.body);

    // A wrong key: the form again, 401, with a message; no session.
    let wrong = anon
        .post(
            "/ui/login",
            &[("csrf_token", &token), ("name", "Ada"), ("key", "nope")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
    assert!(!anon.cookies.contains_key("grader_session"));
    // An ingest key is below the UI's role.
    let token = csrf(&wrong.body);
    let low = anon
        .post(
            "/ui/login",
            &[("csrf_token", &token), ("name", "Ada"), ("key", &ingest)],
        )
        .await;
    assert_eq!(low.status, 403);
    assert!(low.body.contains("ingest role"), "{}", low.body);
    // No name: 422.
    let token = csrf(&low.body);
    let noname = anon
        .post(
            "/ui/login",
            &[("csrf_token", &token), ("name", " "), ("key", &grader)],
        )
        .await;
    assert_eq!(noname.status, 422);
    // A login without the double-submit token is refused.
    let mut fresh = Browser::new(&t);
    let forged = fresh
        .post("/ui/login", &[("name", "Ada"), ("key", &grader)])
        .await;
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("CSRF token missing or invalid"));
    assert!(!fresh.cookies.contains_key("grader_session"));

    // The real login: a cookie with the right attributes, then the queue with the nav.
    let mut b = Browser::new(&t);
    let form = b.get("/ui/login").await;
    let token = csrf(&form.body);
    let resp = b
        .client
        .post(format!("{}/ui/login", t.base))
        .header("cookie", b.cookie_header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("csrf_token", &token),
            ("name", "Ada Lovelace"),
            ("key", &grader),
        ]))
        .send()
        .await
        .unwrap();
    let set: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("grader_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(
        !session.contains(&grader),
        "the key itself is never in the cookie"
    );
    let page = b.finish(resp).await;
    assert_eq!(page.status, 303);
    let queue = b.get("/ui/queue").await;
    assert_eq!(queue.status, 200);
    for needle in [
        r#"id="nav-queue""#,
        r#"id="nav-calibration""#,
        r#"<form id="logout""#,
        "Ada Lovelace",
    ] {
        assert!(queue.body.contains(needle), "{needle}");
    }
    let audit = t.store.audit_log(&tenant.id, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "session.started" && e.detail["name"] == "Ada Lovelace"));

    // A tampered cookie is no session.
    let mut forged = Browser::new(&t);
    let real = b.cookies["grader_session"].clone();
    let (body, _) = real.split_once('.').unwrap();
    forged
        .cookies
        .insert("grader_session".into(), format!("{body}.AAAA"));
    assert_eq!(forged.get("/ui/queue").await.status, 303);

    // Logout needs the CSRF token, then clears the cookie.
    let refused = b.post("/ui/logout", &[]).await;
    assert_eq!(refused.status, 403);
    assert!(b.cookies.contains_key("grader_session"));
    let token = csrf(&queue.body);
    let out = b.post("/ui/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location.as_deref(), Some("/ui/login"));
    assert!(!b.cookies.contains_key("grader_session"));
    assert_eq!(b.get("/ui/queue").await.status, 303);
}

async fn blind_grade_then_reveal_then_override(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, grader, ingest) = team(&t, "acme").await;
    let report = graded(&t, &ingest).await;
    assert!(
        report.scores.iter().any(|s| !s.evidence.is_empty()),
        "the offline judge should find evidence in the strong sample"
    );
    let stored_before = t
        .store
        .submission(&tenant.id, &report.id)
        .await
        .unwrap()
        .unwrap()
        .report
        .unwrap();
    let path = format!("/ui/submissions/{}", report.id);
    let mut b = Browser::login(&t, &grader, "Ada").await;

    // Blind: the rubric form, no trace of the AI's assessment in the HTML.
    let blind = b.get(&path).await;
    assert_eq!(blind.status, 200);
    let html = &blind.body;
    assert!(html.contains(r#"<form id="blind-grade""#), "{html}");
    assert!(html.contains(r#"id="transcript""#));
    assert!(html.contains(r#"id="submit-grade""#));
    for s in &report.scores {
        assert!(
            html.contains(&format!(r#"id="score-{0}" name="score:{0}""#, s.dimension)),
            "select for {}",
            s.dimension
        );
        if !s.rationale.is_empty() {
            assert!(
                !html.contains(&s.rationale),
                "rationale leaked: {}",
                s.rationale
            );
        }
    }
    for hidden in [
        "ai-score",
        r#"class="evidence""#,
        "evidence-link",
        r#"id="flags""#,
        r#"id="recommendation""#,
        r#"id="override""#,
        &report.notice,
    ] {
        assert!(!html.contains(hidden), "{hidden} in the blind page");
    }
    for f in &report.flags {
        assert!(!html.contains(&format!(r#"data-flag="{}""#, f.id)));
    }
    assert!(
        !t.store
            .audit_log(&tenant.id, 50)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "report.viewed"),
        "a blind page is not a view of the report"
    );

    // Submit a grade: every dimension at its scale's minimum, one flag, a comment.
    let token = csrf(html);
    let dims: Vec<(String, String)> = report
        .scores
        .iter()
        .map(|s| (format!("score:{}", s.dimension), s.scale.min.to_string()))
        .collect();
    let reg = grader::prompts::Registry::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
    )
    .unwrap();
    let pv = reg.get(&report.prompt.id, &report.prompt.version).unwrap();
    let flag = pv.file.flags[0].id.clone();
    let mut pairs: Vec<(&str, &str)> = vec![("csrf_token", &token)];
    pairs.extend(dims.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    pairs.push(("flag", &flag));
    pairs.push(("comment", "solid retrieval answer"));
    let posted = b.post(&format!("{path}/grades"), &pairs).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert!(posted.location.unwrap().starts_with(&path));
    let stored = human_grades(&t, &tenant, &report.id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].rater, "Ada");
    assert_eq!(stored[0].scores.len(), report.scores.len());
    assert!(stored[0].scores.iter().all(|(d, v)| report
        .scores
        .iter()
        .any(|s| &s.dimension == d && f64::from(s.scale.min) == *v)));
    assert_eq!(stored[0].flags, vec![flag.clone()]);
    assert_eq!(stored[0].comment.as_deref(), Some("solid retrieval answer"));
    assert_eq!(stored[0].override_reason, None);

    // Revealed: the AI's scores with their provenance, linked evidence, flags, advisory.
    let shown = b.get(&path).await;
    let html = &shown.body;
    assert!(html.contains(r#"<table id="ai-scores""#), "{html}");
    for s in &report.scores {
        assert!(html.contains(&format!(
            r#"<tr class="ai-score" data-dimension="{}""#,
            s.dimension
        )));
    }
    assert!(html.contains(&report.judge.model));
    assert!(html.contains(&format!("{}@{}", report.prompt.id, report.prompt.version)));
    let n_evidence: usize = report
        .scores
        .iter()
        .map(|s| s.evidence.len())
        .sum::<usize>()
        + report.flags.iter().map(|f| f.evidence.len()).sum::<usize>();
    assert!(n_evidence > 0);
    for n in 1..=n_evidence {
        assert_eq!(
            html.matches(&format!(r#"id="ev-{n}""#)).count(),
            1,
            "mark ev-{n} once"
        );
        assert!(html.contains(&format!(r##"class="evidence-link" href="#ev-{n}""##)));
    }
    assert!(html.contains(r#"<mark class="evidence" id="ev-1" data-dimension=""#));
    assert!(html.contains(r#"id="recommendation""#) && html.contains("advisory"));
    assert!(html.contains(r#"id="my-grade""#));
    assert!(html.contains(r#"<form id="override""#));
    assert!(html.contains(r#"id="guard""#));
    assert!(!html.contains(r#"id="blind-grade""#));
    if !report.flags.is_empty() {
        assert!(html.contains(r#"<ul id="flags">"#));
    }
    let viewed: Vec<_> = t
        .store
        .audit_log(&tenant.id, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "report.viewed")
        .collect();
    assert_eq!(viewed.len(), 1);
    assert_eq!(viewed[0].detail["via"], "ui");

    // A second blind grade by the same person is refused (overrides carry a reason).
    let token = csrf(html);
    let again = b
        .post(
            &format!("{path}/grades"),
            &[("csrf_token", &token), (dims[0].0.as_str(), "2")],
        )
        .await;
    assert_eq!(again.status, 422);
    assert_eq!(human_grades(&t, &tenant, &report.id).await.len(), 1);

    // Override without a reason: refused, nothing stored. Then with one.
    let dim = &report.scores[0];
    let new_score = dim.scale.max.to_string();
    let no_reason = b
        .post(
            &format!("{path}/overrides"),
            &[
                ("csrf_token", &token),
                ("dimension", &dim.dimension),
                ("score", &new_score),
                ("reason", "  "),
            ],
        )
        .await;
    assert_eq!(no_reason.status, 422);
    let off_scale = b
        .post(
            &format!("{path}/overrides"),
            &[
                ("csrf_token", &token),
                ("dimension", &dim.dimension),
                ("score", "99"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(off_scale.status, 422);
    assert!(
        off_scale.body.contains("must be a whole number"),
        "{}",
        off_scale.body
    );
    assert_eq!(human_grades(&t, &tenant, &report.id).await.len(), 1);
    let reason = "The candidate <b>quantified</b> recall@k; the judge missed it";
    let ok = b
        .post(
            &format!("{path}/overrides"),
            &[
                ("csrf_token", &token),
                ("dimension", &dim.dimension),
                ("score", &new_score),
                ("reason", reason),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let all = human_grades(&t, &tenant, &report.id).await;
    assert_eq!(all.len(), 2);
    let ov = all.iter().find(|g| g.override_reason.is_some()).unwrap();
    assert_eq!(ov.rater, "Ada");
    assert_eq!(ov.override_reason.as_deref(), Some(reason));
    assert_eq!(
        ov.scores,
        std::collections::BTreeMap::from([(dim.dimension.clone(), f64::from(dim.scale.max))])
    );
    // The AI's report is exactly as it was.
    let stored_after = t
        .store
        .submission(&tenant.id, &report.id)
        .await
        .unwrap()
        .unwrap()
        .report
        .unwrap();
    assert_eq!(stored_after, stored_before);
    let page = b.get(&path).await;
    assert!(page.body.contains(r#"<ul id="overrides">"#));
    assert!(page
        .body
        .contains("The candidate &lt;b&gt;quantified&lt;/b&gt; recall@k"));
    let actions: Vec<String> = t
        .store
        .audit_log(&tenant.id, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.iter().any(|a| a == "human_grade.added"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "report.overridden"),
        "{actions:?}"
    );

    // Blind is per person: a colleague on the same key still sees the blank form only.
    let mut bob = Browser::login(&t, &grader, "Bob").await;
    let theirs = bob.get(&path).await;
    assert!(theirs.body.contains(r#"id="blind-grade""#));
    assert!(!theirs.body.contains("ai-score"));
    assert!(
        !theirs.body.contains(reason),
        "others' overrides would anchor too"
    );
    // And may not override before grading.
    let token = csrf(&theirs.body);
    let early = bob
        .post(
            &format!("{path}/overrides"),
            &[
                ("csrf_token", &token),
                ("dimension", &dim.dimension),
                ("score", "1"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(early.status, 422);
    assert_eq!(human_grades(&t, &tenant, &report.id).await.len(), 2);
}

async fn csrf_is_required_on_every_form(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, grader, ingest) = team(&t, "acme").await;
    let report = graded(&t, &ingest).await;
    let path = format!("/ui/submissions/{}", report.id);
    let mut b = Browser::login(&t, &grader, "Ada").await;
    let dim = format!("score:{}", report.scores[0].dimension);
    // Missing, wrong, and another session's token.
    let mut other = Browser::login(&t, &grader, "Eve").await;
    let others_token = other.csrf_of("/ui/queue").await;
    for token in [None, Some("wrong"), Some(others_token.as_str())] {
        let mut pairs = vec![(dim.as_str(), "2")];
        if let Some(tok) = token {
            pairs.push(("csrf_token", tok));
        }
        let p = b.post(&format!("{path}/grades"), &pairs).await;
        assert_eq!(p.status, 403, "{token:?}");
        assert!(p.body.contains("CSRF token missing or invalid"));
        assert!(p.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    assert!(human_grades(&t, &tenant, &report.id).await.is_empty());
    // Overrides too (after a real grade, so only the token is wrong).
    let token = b.csrf_of(&path).await;
    let ok = b
        .post(
            &format!("{path}/grades"),
            &[("csrf_token", &token), (dim.as_str(), "2")],
        )
        .await;
    assert_eq!(ok.status, 303);
    let p = b
        .post(
            &format!("{path}/overrides"),
            &[
                ("dimension", &report.scores[0].dimension),
                ("score", "3"),
                ("reason", "because"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(human_grades(&t, &tenant, &report.id).await.len(), 1);
    // Without a session a POST goes to the login page and stores nothing.
    let mut anon = Browser::new(&t);
    let p = anon
        .post(&format!("{path}/grades"), &[(dim.as_str(), "2")])
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/ui/login"));
    assert_eq!(human_grades(&t, &tenant, &report.id).await.len(), 1);
}

async fn blind_mode_off_shows_scores_at_once(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, grader, ingest) = team(&t, "acme").await;
    t.store
        .update_tenant_settings(
            &tenant.id,
            &TenantSettings {
                blind_review: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = graded(&t, &ingest).await;
    let mut b = Browser::login(&t, &grader, "Ada").await;
    let page = b.get(&format!("/ui/submissions/{}", report.id)).await;
    assert_eq!(page.status, 200);
    let html = &page.body;
    assert!(html.contains(r#"<table id="ai-scores""#));
    assert!(html.contains(r#"<mark class="evidence" id="ev-1""#));
    assert!(html.contains(r#"id="recommendation""#));
    assert!(!html.contains(r#"id="blind-grade""#));
    // The person can still grade, in the non-blind form.
    assert!(html.contains(r#"<form id="grade-form""#));
    assert!(html.contains(r#"id="submit-grade""#));
}

async fn another_tenants_submission_is_404(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (_a, grader_a, _) = team(&t, "acme").await;
    let (b_tenant, _, ingest_b) = team(&t, "globex").await;
    let theirs = graded(&t, &ingest_b).await;
    let mut a = Browser::login(&t, &grader_a, "Ada").await;
    let path = format!("/ui/submissions/{}", theirs.id);
    let p = a.get(&path).await;
    assert_eq!(p.status, 404);
    assert!(p.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(p.body.contains("not found"));
    assert!(!p.body.contains(&theirs.transcript.turns[0].text));
    let unknown = a.get("/ui/submissions/does-not-exist").await;
    assert_eq!(unknown.status, 404);
    let token = a.csrf_of("/ui/queue").await;
    let dim = format!("score:{}", theirs.scores[0].dimension);
    let post = a
        .post(
            &format!("{path}/grades"),
            &[("csrf_token", &token), (dim.as_str(), "2")],
        )
        .await;
    assert_eq!(post.status, 404);
    assert!(human_grades(&t, &b_tenant, &theirs.id).await.is_empty());
    // Nor is it in A's queue.
    let q = a.get("/ui/queue").await;
    assert!(queue_ids(&q.body).is_empty());
    assert!(q.body.contains("empty-state"));
}

/// Stores `report` as a graded submission of `tenant` under a new id.
async fn store_variant(
    t: &TestApp,
    tenant: &Tenant,
    base: &GradeReport,
    f: impl FnOnce(&mut GradeReport),
) -> String {
    let mut r = base.clone();
    r.id = uuid::Uuid::new_v4().to_string();
    f(&mut r);
    let new = NewSubmission {
        tenant_id: tenant.id.clone(),
        submission: Submission {
            tenant: tenant.id.clone(),
            stage: r.stage,
            question: None,
            transcript: r.transcript.clone(),
            candidate: None,
            external_id: None,
            metadata: Value::Null,
        },
        source: "api".into(),
        delivery_id: None,
        prompt: None,
        input_sha256: "0".repeat(64),
    };
    t.store.store_graded(new, &r).await.expect("store graded");
    r.id
}

fn plain(r: &mut GradeReport) {
    r.needs_review = false;
    r.review_reasons.clear();
    r.guard.injection_suspected = false;
    r.judge.escalated = false;
    r.flags
        .retain(|f| f.kind == grader::domain::FlagKind::Green);
    for s in &mut r.scores {
        s.confidence = 1.0;
    }
}

async fn queue_priority_filters_and_pages(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (tenant, grader, ingest) = team(&t, "acme").await;
    let mut b = Browser::login(&t, &grader, "Ada").await;
    let empty = b.get("/ui/queue").await;
    assert!(empty.body.contains(r#"class="empty-state""#));
    assert!(empty.body.contains("Nothing to review yet"));
    assert!(!empty.body.contains(r#"id="queue""#));

    let base = graded(&t, &ingest).await; // itself: offline, so needs review
    let red = base
        .flags
        .iter()
        .find(|f| f.kind == grader::domain::FlagKind::Red)
        .cloned()
        .unwrap_or(grader::domain::RaisedFlag {
            id: "made_up".into(),
            kind: grader::domain::FlagKind::Red,
            label: "x".into(),
            severity: grader::domain::Severity::High,
            evidence: vec![],
        });
    // Oldest first; the queue must put them in priority order whatever the age.
    let rest_old = store_variant(&t, &tenant, &base, plain).await;
    let escalated = store_variant(&t, &tenant, &base, |r| {
        plain(r);
        r.judge.escalated = true;
    })
    .await;
    let lowconf = store_variant(&t, &tenant, &base, |r| {
        plain(r);
        r.scores[0].confidence = 0.2;
    })
    .await;
    let review = store_variant(&t, &tenant, &base, |r| {
        plain(r);
        r.needs_review = true;
    })
    .await;
    let flagged = store_variant(&t, &tenant, &base, |r| {
        plain(r);
        r.flags.push(red.clone());
    })
    .await;
    let injection = store_variant(&t, &tenant, &base, |r| {
        plain(r);
        r.guard.injection_suspected = true;
    })
    .await;
    let hands_on = store_variant(&t, &tenant, &base, |r| {
        plain(r);
        r.stage = grader::domain::Stage::HandsOn;
    })
    .await;
    let rest_new = store_variant(&t, &tenant, &base, plain).await;
    let q = b.get("/ui/queue").await;
    assert_eq!(q.status, 200);
    // The rule, applied by hand: rank, then newest first. `base` is the offline judge's own
    // report (it always needs review), so its rank comes from its fields.
    let base_rank = if base.guard.injection_suspected {
        0
    } else if base
        .flags
        .iter()
        .any(|f| f.kind == grader::domain::FlagKind::Red)
    {
        1
    } else {
        2
    };
    let created = [
        (base_rank, base.id.clone()),
        (5, rest_old.clone()),
        (4, escalated.clone()),
        (3, lowconf.clone()),
        (2, review.clone()),
        (1, flagged.clone()),
        (0, injection.clone()),
        (5, hands_on.clone()),
        (5, rest_new.clone()),
    ];
    let mut expected: Vec<(usize, i32, String)> = created
        .iter()
        .enumerate()
        .map(|(age, (rank, id))| (age, *rank, id.clone()))
        .collect();
    expected.sort_by_key(|(age, rank, _)| (*rank, std::cmp::Reverse(*age)));
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(queue_ids(&q.body), expected);
    assert_eq!(queue_ids(&q.body)[0], injection);
    assert!(q
        .body
        .contains(&format!(r#"href="/ui/submissions/{injection}""#)));
    assert!(q.body.contains(r#"class="open-submission""#));
    assert!(q.body.contains("injection suspected"));
    assert!(!q.body.contains("page-next") && !q.body.contains("page-prev"));

    // Filters: stage, status, prompt.
    let q = b.get("/ui/queue?stage=hands_on").await;
    assert_eq!(queue_ids(&q.body), vec![hands_on.clone()]);
    assert!(q.body.contains(r#"<option value="hands_on" selected>"#));
    let q = b.get("/ui/queue?status=needs_review").await;
    let mut needing = vec![review.clone()];
    if base.needs_review {
        needing.push(base.id.clone());
    }
    assert_eq!(queue_ids(&q.body), needing);
    let prompt = format!("{}@{}", base.prompt.id, base.prompt.version);
    let q = b
        .get(&format!("/ui/queue?prompt={}", prompt.replace('@', "%40")))
        .await;
    assert_eq!(queue_ids(&q.body).len(), 9);
    let q = b.get("/ui/queue?prompt=no_such_prompt%40v9").await;
    assert!(queue_ids(&q.body).is_empty());
    assert!(q.body.contains("No submissions match these filters."));
    let q = b.get("/ui/queue?stage=deep_dive").await;
    assert!(q.body.contains(r#"class="empty-state""#));
    assert_eq!(b.get("/ui/queue?stage=nope").await.status, 400);
    assert_eq!(b.get("/ui/queue?page=0").await.status, 400);

    // Reviewed / unreviewed follow the human grades; "you graded" marks the person's own.
    let token = b.csrf_of(&format!("/ui/submissions/{lowconf}")).await;
    let dim = format!("score:{}", base.scores[0].dimension);
    let p = b
        .post(
            &format!("/ui/submissions/{lowconf}/grades"),
            &[("csrf_token", &token), (dim.as_str(), "2")],
        )
        .await;
    assert_eq!(p.status, 303);
    let q = b.get("/ui/queue?status=reviewed").await;
    assert_eq!(queue_ids(&q.body), vec![lowconf.clone()]);
    assert!(q.body.contains("you graded"));
    let q = b.get("/ui/queue?status=unreviewed").await;
    assert_eq!(queue_ids(&q.body).len(), 8);
    assert!(!queue_ids(&q.body).contains(&lowconf));

    // Pages of 25: 9 so far + 21 more = 30 → 25 then 5, filters kept in the links.
    for _ in 0..21 {
        store_variant(&t, &tenant, &base, plain).await;
    }
    let p1 = b.get("/ui/queue?stage=system_design").await;
    let ids1 = queue_ids(&p1.body);
    assert_eq!(ids1.len(), 25);
    assert_eq!(ids1[0], injection);
    assert!(p1
        .body
        .contains(r#"class="page-next" href="/ui/queue?stage=system_design&amp;page=2""#));
    assert!(!p1.body.contains("page-prev"));
    let p2 = b.get("/ui/queue?stage=system_design&page=2").await;
    let ids2 = queue_ids(&p2.body);
    assert_eq!(ids2.len(), 29 - 25);
    assert!(ids2.iter().all(|id| !ids1.contains(id)));
    assert!(p2
        .body
        .contains(r#"class="page-prev" href="/ui/queue?stage=system_design""#));
    assert!(!p2.body.contains("page-next"));
    assert_eq!(ids2.last(), Some(&rest_old), "the oldest plain one is last");
    let p9 = b.get("/ui/queue?page=9").await;
    assert!(p9.body.contains(r#"class="empty-state""#));
}

async fn transcripts_are_escaped_and_assets_served(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (_tenant, grader, ingest) = team(&t, "acme").await;
    let body = serde_json::json!({
        "stage": "system_design",
        "transcript": "Interviewer: How?\nCandidate: I'd use <script>alert(1)</script> & \"hybrid\" search with BM25 — naïve 🙂 chunking.\n",
    });
    let resp = t.post_json("/v1/grade", &ingest, &body).await;
    assert_eq!(resp.status(), 200);
    let report: GradeReport = resp.json().await.unwrap();
    let mut b = Browser::login(&t, &grader, "Ada").await;
    let page = b.get(&format!("/ui/submissions/{}", report.id)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>alert(1)"));
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;hybrid&quot;")
            || page
                .body
                .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; \"hybrid\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("naïve 🙂 chunking"));
    assert!(page
        .body
        .contains(r#"<span class="speaker">Candidate</span>"#));

    let css = b.get("/ui/static/app.css").await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.body.contains("mark.evidence"));
    let js = b.get("/ui/static/app.js").await;
    assert_eq!(js.status, 200);
    assert!(js.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let missing = b.get("/ui/no-such-page").await;
    assert_eq!(missing.status, 404);
    assert!(missing.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // The API keeps its JSON errors.
    let api = b.get("/v1/nope").await;
    assert_eq!(api.status, 404);
    assert!(api.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}
