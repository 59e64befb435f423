//! The real binary: `grader admin` sets a tenant up, then two `grader serve` processes share
//! ONE fresh PostgreSQL database and grade 500 submissions posted to both, each exactly once
//! (its `grading.completed` audit entry, written in the completing transaction, counted per
//! submission). SIGTERM stops both gracefully with no job left leased.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use grader::store::SubmissionStatus;
use serde_json::{json, Value};
use support::app::submission_body;
use support::db::{Backend, TestDb};
use support::process::{self, Server, BIN};

/// A command with a clean environment: the given database, the repository's prompts, the
/// offline judge (no model variables), and a working directory without a grader.toml.
fn grader(db_url: &str, cwd: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env("GRADER_DATABASE_URL", db_url)
        .env(
            "GRADER_PROMPTS_DIR",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        )
        .env_remove("GRADER_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GRADER_MODEL")
        .env_remove("GRADER_ADDR");
    c
}

fn admin(db_url: &str, cwd: &std::path::Path, args: &[&str]) -> String {
    process::admin(grader(db_url, cwd), args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_grade_each_submission_exactly_once() {
    const N: usize = 500;
    let db = TestDb::new(Backend::Postgres).await;
    let cwd = tempfile::tempdir().expect("tempdir");

    // Set up through the admin CLI.
    let tenant_id = admin(&db.url, cwd.path(), &["tenant", "create", "acme"]);
    let key = admin(
        &db.url,
        cwd.path(),
        &["key", "create", "--tenant", "acme", "--role", "ingest"],
    );
    assert!(key.starts_with("gk_") && key.len() == 35, "{key}");
    admin(
        &db.url,
        cwd.path(),
        &[
            "webhook-secret",
            "set",
            "--tenant",
            "acme",
            "--source",
            "greenhouse",
            "gh-secret",
        ],
    );
    let audit = db.store.audit_log(&tenant_id, 100).await.expect("audit");
    for action in ["tenant.created", "api_key.created", "webhook_secret.set"] {
        assert!(
            audit
                .iter()
                .any(|e| e.action == action && e.actor == "admin-cli"),
            "{action} audited"
        );
    }
    assert!(
        !format!("{audit:?}").contains(&key) && !format!("{audit:?}").contains("gh-secret"),
        "no key or secret in the audit log"
    );

    let a = Server::start(grader(&db.url, cwd.path()), &["--workers", "2"]);
    let b = Server::start(grader(&db.url, cwd.path()), &["--workers", "2"]);
    let client = reqwest::Client::new();
    for s in [&a, &b] {
        let r = client
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status(), 200);
    }
    let bases = [a.base.clone(), b.base.clone()];
    let body = submission_body();
    let ids: Vec<String> = stream::iter(0..N)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/v1/submissions", bases[i % 2]);
            let key = key.clone();
            let body = body.clone();
            async move {
                let resp = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(resp.status(), 202);
                let v: Value = resp.json().await.expect("json");
                v["id"].as_str().expect("id").to_string()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        N
    );

    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let graded = db
            .store
            .list_submissions(&tenant_id, Some(SubmissionStatus::Graded), 10_000, 0)
            .await
            .expect("list")
            .len();
        if graded == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {graded} of {N} graded in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every submission reads as graded through either server.
    for (i, id) in ids.iter().enumerate() {
        let v: Value = client
            .get(format!("{}/v1/submissions/{id}", bases[(i + 1) % 2]))
            .bearer_auth(&key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(v["status"], "graded", "{id}");
    }
    let audit = db
        .store
        .audit_log(&tenant_id, 100_000)
        .await
        .expect("audit");
    let mut per: std::collections::HashMap<&str, usize> = Default::default();
    let mut actors = std::collections::HashSet::new();
    for e in audit.iter().filter(|e| e.action == "grading.completed") {
        *per.entry(e.subject.as_deref().unwrap_or("")).or_default() += 1;
        // worker:host:pid/wN → the process part
        actors.insert(e.actor.rsplit_once('/').map(|(p, _)| p.to_string()));
    }
    assert_eq!(per.len(), N, "every submission completed");
    assert!(
        per.values().all(|&n| n == 1),
        "each submission graded exactly once"
    );
    assert_eq!(actors.len(), 2, "both processes graded: {actors:?}");

    a.terminate();
    b.terminate();
    let leased = db
        .store
        .list_submissions(&tenant_id, Some(SubmissionStatus::Grading), 10_000, 0)
        .await
        .expect("list");
    assert!(leased.is_empty(), "no job left leased");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_on_sqlite_accepts_grades_and_stops_on_sigterm() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cwd = tempfile::tempdir().expect("tempdir");
    admin(&db.url, cwd.path(), &["tenant", "create", "solo"]);
    let key = admin(
        &db.url,
        cwd.path(),
        &["key", "create", "--tenant", "solo", "--role", "grader"],
    );
    admin(
        &db.url,
        cwd.path(),
        &[
            "tenant",
            "set",
            "--tenant",
            "solo",
            "--callback-url",
            "http://127.0.0.1:9/hook",
            "--callback-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--blind-review",
            "true",
        ],
    );
    let shown: Value =
        serde_json::from_str(&admin(&db.url, cwd.path(), &["tenant", "show", "solo"]))
            .expect("json");
    assert_eq!(shown["settings"]["callback_secret"], "(set)");
    assert_eq!(shown["settings"]["blind_review"], true);
    // Bad admin input fails with a message, not a panic.
    let out = grader(&db.url, cwd.path())
        .args([
            "admin", "key", "create", "--tenant", "solo", "--role", "root",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));

    let s = Server::start(grader(&db.url, cwd.path()), &["--workers", "1"]);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1/submissions", s.base))
        .bearer_auth(&key)
        .json(&json!(submission_body()))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(format!("{}/v1/submissions/{id}", s.base))
            .bearer_auth(&key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if v["status"] == "graded" {
            break;
        }
        assert!(Instant::now() < deadline, "not graded: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.terminate();
}
