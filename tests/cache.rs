//! The response cache end to end: single-flight (N identical concurrent gradings, one call),
//! L1 in front of the persistent L2 (a restart pays nothing), keys that miss on a new prompt
//! version, per-request bypass, purge by prompt version, and the CLI flags.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grader::cache::{StoreCache, TieredSettings};
use grader::domain::{CacheStatus, ReportStatus, Stage, Submission};
use grader::ingest::{self, Limits};
use grader::judge::pipeline::{GradeOptions, Judge, JudgeError, JudgeSettings};
use grader::llm::retry::RetryPolicy;
use grader::llm::{ChatRequest, ChatResponse, LlmError, ModelConfig, Provider, TokenUsage};
use grader::prompts::Registry;
use serde_json::Value;
use support::db::TestDb;
use support::fixtures::{
    grader_cmd, judgment_for_request, judgment_json, registry, root, run, system_design, STRONG,
    TRANSCRIPT,
};
use support::{Scripted as Reply, StandIn};

fn submission(text: &str) -> Submission {
    Submission {
        tenant: "t".into(),
        stage: Stage::SystemDesign,
        question: None,
        transcript: ingest::parse(text.as_bytes(), None, &Limits::default()).unwrap(),
        candidate: None,
        external_id: None,
        metadata: Value::Null,
    }
}

fn model(base_url: Option<&str>) -> ModelConfig {
    ModelConfig {
        name: "cheap".into(),
        model: "gpt-4o-mini".into(),
        base_url: base_url.map(String::from),
        api_key_env: None,
        prices: grader::llm::Prices {
            input_per_mtok: 1.0,
            cached_input_per_mtok: 0.5,
            output_per_mtok: 4.0,
        },
        context_window: 128_000,
        max_output_tokens: 2_000,
        tokenizer: None,
        timeout_secs: 10,
        max_retries: 0,
        rpm: None,
        tpm: None,
    }
}

fn settings() -> JudgeSettings {
    JudgeSettings {
        samples: 1,
        temperature: 0.0,
        seed: Some(1),
        max_repairs: 1,
        min_confidence: 0.6,
        retry: RetryPolicy {
            max_retries: 0,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_retry_after: Duration::from_millis(1),
        },
    }
}

type AnswerFn = dyn Fn(&ChatRequest) -> Result<String, LlmError> + Send + Sync;

/// An in-process provider: answers every request after `delay` with what `answer` says,
/// counting calls.
struct Fake {
    delay: Duration,
    answer: Box<AnswerFn>,
    calls: AtomicUsize,
    requests: Mutex<Vec<ChatRequest>>,
}

impl Fake {
    fn new(
        delay: Duration,
        answer: impl Fn(&ChatRequest) -> Result<String, LlmError> + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            delay,
            answer: Box::new(answer),
            calls: AtomicUsize::new(0),
            requests: Mutex::default(),
        })
    }

    /// Valid judgments scoring 3.
    fn valid(delay: Duration) -> Arc<Fake> {
        Fake::new(delay, |req| {
            let (_, schema) = req.json_schema.clone().unwrap_or_default();
            let user = req
                .messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            Ok(judgment_json(&schema, &user, 3, &[]).to_string())
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Fake {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().unwrap().push(request.clone());
        tokio::time::sleep(self.delay).await;
        (self.answer)(request).map(|content| ChatResponse {
            content,
            model: request.model.clone(),
            usage: TokenUsage {
                prompt_tokens: 1000,
                completion_tokens: 100,
                cached_tokens: 0,
            },
        })
    }
}

/// Runs `n` identical gradings at once on a multi-threaded runtime.
async fn grade_concurrently(
    judge: Arc<Judge>,
    n: usize,
    opts: GradeOptions,
) -> Vec<Result<grader::domain::GradeReport, JudgeError>> {
    let reg = Arc::new(registry());
    let sub = Arc::new(submission(TRANSCRIPT));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (judge, reg, sub) = (judge.clone(), reg.clone(), sub.clone());
            tokio::spawn(async move {
                let pv = system_design(&reg);
                judge
                    .grade_with(&sub, pv, &opts)
                    .await
                    .map(|o| o.into_report().expect("not a dry run"))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_identical_gradings_make_one_call_at_the_standin() {
    let server = StandIn::start().await;
    server.set_default(Reply::delay(
        Duration::from_millis(300),
        Reply::dynamic(|req| Reply::reply_json(&judgment_for_request(req, 3))),
    ));
    let provider =
        grader::llm::OpenAiProvider::from_config(&model(Some(&server.base_url))).unwrap();
    let judge = Arc::new(
        Judge::with_model(
            Arc::new(provider),
            model(Some(&server.base_url)),
            settings(),
        )
        .with_memory_cache(TieredSettings::default()),
    );
    let reports = grade_concurrently(judge.clone(), 100, GradeOptions::default()).await;
    assert_eq!(
        server.calls(),
        1,
        "one provider call for 100 identical gradings"
    );
    let reports: Vec<_> = reports.into_iter().map(|r| r.unwrap()).collect();
    let count = |s: CacheStatus| reports.iter().filter(|r| r.judge.cache == s).count();
    assert_eq!(count(CacheStatus::Miss), 1);
    assert!(
        count(CacheStatus::Coalesced) >= 90,
        "{}",
        count(CacheStatus::Coalesced)
    );
    assert_eq!(
        count(CacheStatus::Miss) + count(CacheStatus::Coalesced) + count(CacheStatus::Hit),
        100
    );
    // Only the grading that made the call paid for it; the others say they were cached.
    let paid: Vec<_> = reports.iter().filter(|r| r.usage.cost_usd > 0.0).collect();
    assert_eq!(paid.len(), 1);
    assert!(!paid[0].judge.cached);
    assert!(reports
        .iter()
        .filter(|r| r.judge.cache != CacheStatus::Miss)
        .all(|r| r.judge.cached && r.usage.prompt_tokens == 0));
    assert!(reports
        .iter()
        .all(|r| r.status == ReportStatus::Scored && r.scores == reports[0].scores));
    // Afterwards it is a plain hit.
    let again = grade_concurrently(judge, 1, GradeOptions::default()).await;
    assert_eq!(again[0].as_ref().unwrap().judge.cache, CacheStatus::Hit);
    assert_eq!(server.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_share_a_failure_or_invalid_output_which_is_never_cached() {
    // A provider error: one call, every waiter gets the error.
    let failing = Fake::new(Duration::from_millis(200), |_| {
        Err(LlmError::Server {
            status: 500,
            message: "boom".into(),
        })
    });
    let judge = Arc::new(
        Judge::with_model(failing.clone(), model(None), settings())
            .with_memory_cache(TieredSettings::default()),
    );
    let results = grade_concurrently(judge, 50, GradeOptions::default()).await;
    assert_eq!(failing.calls(), 1);
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert!(matches!(e, JudgeError::Provider(_)), "{e}");
        assert!(e.to_string().contains("boom"), "{e}");
    }

    // Invalid output: one call plus its one repair; everyone is unscored; the next grading
    // calls again because nothing invalid was cached.
    let garbage = Fake::new(Duration::from_millis(200), |_| Ok("not json".into()));
    let judge = Arc::new(
        Judge::with_model(garbage.clone(), model(None), settings())
            .with_memory_cache(TieredSettings::default()),
    );
    let results = grade_concurrently(judge.clone(), 50, GradeOptions::default()).await;
    assert_eq!(garbage.calls(), 2, "one call and its repair");
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap().status == ReportStatus::Unscored));
    grade_concurrently(judge, 1, GradeOptions::default()).await;
    assert_eq!(garbage.calls(), 4, "not cached");
}

/// The prompts directory with system_design copied to a second version `v2` whose rubric text
/// differs by one word.
fn two_versions() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("system_design");
    std::fs::create_dir_all(&sd).unwrap();
    let v1 = std::fs::read_to_string(root().join("prompts/system_design/v1.toml")).unwrap();
    std::fs::write(sd.join("v1.toml"), &v1).unwrap();
    let v2 = v1
        .replacen("version = \"v1\"", "version = \"v2\"", 1)
        .replacen("designs a real-world", "designs a production", 1);
    assert_ne!(v1, v2);
    std::fs::write(sd.join("v2.toml"), v2).unwrap();
    let reg = Registry::load(dir.path()).unwrap();
    (dir, reg)
}

#[tokio::test]
async fn a_new_prompt_version_misses_and_the_old_one_still_hits() {
    let (_dir, reg) = two_versions();
    let v1 = reg.get("system_design", "v1").unwrap();
    let v2 = reg.get("system_design", "v2").unwrap();
    assert_ne!(v1.sha256, v2.sha256);
    let provider = Fake::valid(Duration::ZERO);
    let judge = Judge::with_model(provider.clone(), model(None), settings())
        .with_memory_cache(TieredSettings::default());
    let sub = submission(TRANSCRIPT);
    let first = judge.grade(&sub, v1).await.unwrap();
    assert_eq!(first.judge.cache, CacheStatus::Miss);
    assert_eq!(
        judge.grade(&sub, v1).await.unwrap().judge.cache,
        CacheStatus::Hit
    );
    assert_eq!(provider.calls(), 1);
    let other = judge.grade(&sub, v2).await.unwrap();
    assert_eq!(
        other.judge.cache,
        CacheStatus::Miss,
        "a new version is a new key"
    );
    assert_eq!(other.prompt.version, "v2");
    assert_eq!(provider.calls(), 2);
    assert_eq!(
        judge.grade(&sub, v1).await.unwrap().judge.cache,
        CacheStatus::Hit
    );
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn a_restart_with_the_persistent_cache_makes_zero_calls() {
    let db = TestDb::sqlite().await;
    let reg = registry();
    let pv = system_design(&reg);
    let sub = submission(TRANSCRIPT);
    let mut settings3 = settings();
    settings3.samples = 3;

    let before = Fake::valid(Duration::ZERO);
    let judge = Judge::with_model(before.clone(), model(None), settings3.clone())
        .with_cache(Arc::new(StoreCache::new(db.store.clone())));
    let first = judge.grade(&sub, pv).await.unwrap();
    assert_eq!(before.calls(), 3);
    assert_eq!(first.judge.cache, CacheStatus::Miss);
    drop(judge);

    // A new process: new judge, new provider, new store connection, empty L1.
    let after = Fake::valid(Duration::ZERO);
    let judge = Judge::with_model(after.clone(), model(None), settings3)
        .with_cache(Arc::new(StoreCache::new(db.open_another().await)));
    let second = judge.grade(&sub, pv).await.unwrap();
    assert_eq!(after.calls(), 0, "every sample came from the L2");
    assert_eq!(second.judge.cache, CacheStatus::Hit);
    assert!(second.judge.cached);
    assert_eq!(second.usage.cost_usd, 0.0);
    assert_eq!(
        first.scores.iter().map(|s| &s.samples).collect::<Vec<_>>(),
        second.scores.iter().map(|s| &s.samples).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_bypass_calls_the_model_and_leaves_the_cache_alone() {
    let db = TestDb::sqlite().await;
    let reg = registry();
    let pv = system_design(&reg);
    let sub = submission(TRANSCRIPT);
    let provider = Fake::valid(Duration::ZERO);
    let judge = Judge::with_model(provider.clone(), model(None), settings())
        .with_cache(Arc::new(StoreCache::new(db.store.clone())));
    let bypass = GradeOptions {
        bypass_cache: true,
        dry_run: false,
    };
    let r = judge
        .grade_with(&sub, pv, &bypass)
        .await
        .unwrap()
        .into_report()
        .unwrap();
    assert_eq!(r.judge.cache, CacheStatus::Bypass);
    assert!(!r.judge.cached);
    assert_eq!(provider.calls(), 1);
    // Nothing was written: the next normal grading misses, then hits.
    assert_eq!(
        judge.grade(&sub, pv).await.unwrap().judge.cache,
        CacheStatus::Miss
    );
    assert_eq!(provider.calls(), 2);
    assert_eq!(
        judge.grade(&sub, pv).await.unwrap().judge.cache,
        CacheStatus::Hit
    );
    // A bypass ignores the entry that now exists.
    judge.grade_with(&sub, pv, &bypass).await.unwrap();
    assert_eq!(provider.calls(), 3);
}

#[tokio::test]
async fn purging_a_prompt_version_drops_its_answers_from_both_layers() {
    let db = TestDb::sqlite().await;
    let (_dir, reg) = two_versions();
    let v1 = reg.get("system_design", "v1").unwrap();
    let v2 = reg.get("system_design", "v2").unwrap();
    let sub = submission(TRANSCRIPT);
    let provider = Fake::valid(Duration::ZERO);
    let judge = Judge::with_model(provider.clone(), model(None), settings())
        .with_cache(Arc::new(StoreCache::new(db.store.clone())));
    judge.grade(&sub, v1).await.unwrap();
    judge.grade(&sub, v2).await.unwrap();
    assert_eq!(provider.calls(), 2);
    assert_eq!(judge.purge_prompt(&v1.sha256).await.unwrap(), 1);
    // v1 misses in this process (L1 invalidated) and in a fresh one (L2 row gone).
    assert_eq!(
        judge.grade(&sub, v1).await.unwrap().judge.cache,
        CacheStatus::Miss
    );
    assert_eq!(
        judge.grade(&sub, v2).await.unwrap().judge.cache,
        CacheStatus::Hit
    );
    assert_eq!(provider.calls(), 3);
    judge.purge_prompt(&v1.sha256).await.unwrap();
    let fresh = Fake::valid(Duration::ZERO);
    let judge2 = Judge::with_model(fresh.clone(), model(None), settings())
        .with_cache(Arc::new(StoreCache::new(db.store.clone())));
    assert_eq!(
        judge2.grade(&sub, v1).await.unwrap().judge.cache,
        CacheStatus::Miss
    );
    assert_eq!(
        judge2.grade(&sub, v2).await.unwrap().judge.cache,
        CacheStatus::Hit
    );
    assert_eq!(fresh.calls(), 1);
}

#[tokio::test]
async fn cache_metrics_count_hits_misses_and_coalesced() {
    let provider = Fake::valid(Duration::from_millis(100));
    let judge = Arc::new(
        Judge::with_model(provider, model(None), settings())
            .with_memory_cache(TieredSettings::default()),
    );
    // The global metrics are shared by every test in this binary: compare before and after.
    let m = judge.metrics().clone();
    let (hit0, miss0, co0) = (
        m.cache_count("hit"),
        m.cache_count("miss"),
        m.cache_count("coalesced"),
    );
    grade_concurrently(judge.clone(), 5, GradeOptions::default()).await;
    grade_concurrently(judge, 1, GradeOptions::default()).await;
    assert!(m.cache_count("miss") > miss0);
    assert!(m.cache_count("coalesced") > co0);
    assert!(m.cache_count("hit") > hit0);
    let text = grader::metrics::render();
    assert!(
        text.contains("grader_cache_lookups_total{result=\"coalesced\""),
        "{text}"
    );
    assert!(text.contains("grader_provider_calls_total{model=\"gpt-4o-mini\",outcome=\"ok\"}"));
}

// ---- the CLI

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_cli_caches_with_cache_db_and_no_cache_bypasses() {
    let server = StandIn::start().await;
    server.set_default(Reply::dynamic(|req| {
        Reply::reply_json(&judgment_for_request(req, 3))
    }));
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cache.db").display());
    let grade = |extra: &[&str]| {
        let mut cmd = grader_cmd();
        cmd.env("OPENAI_BASE_URL", &server.base_url)
            .args([
                "grade",
                "--stage",
                "system_design",
                "--json",
                "--cache-db",
                &db,
            ])
            .args(extra)
            .arg(STRONG);
        cmd
    };
    let cache_of = |o: &std::process::Output| -> String {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["judge"]["cache"].as_str().unwrap().to_string()
    };
    assert_eq!(cache_of(&run(grade(&[])).await), "miss");
    assert_eq!(server.calls(), 1);
    assert_eq!(
        cache_of(&run(grade(&[])).await),
        "hit",
        "the second process pays nothing"
    );
    assert_eq!(server.calls(), 1);
    assert_eq!(cache_of(&run(grade(&["--no-cache"])).await), "bypass");
    assert_eq!(server.calls(), 2);

    // Purge the version, then the next grading calls the model again.
    let out = run({
        let mut c = grader_cmd();
        c.args([
            "cache",
            "purge",
            "--prompt",
            "system_design@v1",
            "--db",
            &db,
        ]);
        c
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("purged 1 cached answer of system_design@v1"),
        "{text}"
    );
    assert_eq!(cache_of(&run(grade(&[])).await), "miss");
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn cache_purge_needs_a_version_that_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let out = run({
        let mut c = grader_cmd();
        c.args([
            "cache",
            "purge",
            "--prompt",
            "system_design@v9",
            "--db",
            &db,
        ]);
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("system_design@v9"));
}
