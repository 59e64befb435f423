//! Routing and cost control with scripted in-memory providers (and the stand-in for the
//! fallback over HTTP): the cascade escalates exactly when its rules say, fallback chains,
//! the circuit breaker opening and recovering, budgets degrading to the offline judge, dry
//! runs making no call, and usage summed per prompt version and model.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grader::budget::{MemoryLedger, StoreLedger, UsageFilter, UsageLedger};
use grader::config::{BudgetConfig, Config};
use grader::domain::{CacheStatus, FlagKind, GradeReport, Severity, Stage, Submission};
use grader::ingest::{self, Limits};
use grader::judge::pipeline::{GradeOptions, GradeOutcome, Judge, JudgeSettings};
use grader::llm::router::Router;
use grader::llm::{ChatRequest, ChatResponse, LlmError, ModelConfig, Provider, TokenUsage};
use grader::metrics::{BreakerGauge, JudgeMetrics};
use serde_json::Value;
use support::db::{Backend, TestDb};
use support::fixtures::{grader_cmd, judgment_json, registry, system_design, TRANSCRIPT};
use support::{Scripted as Reply, StandIn};

fn submission(tenant: &str, text: &str) -> Submission {
    Submission {
        tenant: tenant.into(),
        stage: Stage::SystemDesign,
        question: None,
        transcript: ingest::parse(text.as_bytes(), None, &Limits::default()).unwrap(),
        candidate: None,
        external_id: None,
        metadata: Value::Null,
    }
}

/// What a scripted model answers for one sample.
#[derive(Clone)]
enum Answer {
    /// Every dimension at this score, with these flag ids raised.
    Score(i64, Vec<String>),
    Invalid,
    Fail(u16),
}

/// A scripted model: sample `i` (seed `1 + i`) gets `answers[i % len]`; `set` replaces the
/// script (a provider that recovers). Counts calls.
struct Fake {
    answers: Mutex<Vec<Answer>>,
    calls: AtomicUsize,
}

impl Fake {
    fn new(answers: Vec<Answer>) -> Arc<Fake> {
        Arc::new(Fake {
            answers: Mutex::new(answers),
            calls: AtomicUsize::new(0),
        })
    }
    fn scores(scores: &[i64]) -> Arc<Fake> {
        Fake::new(scores.iter().map(|s| Answer::Score(*s, vec![])).collect())
    }
    fn set(&self, answers: Vec<Answer>) {
        *self.answers.lock().unwrap() = answers;
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Fake {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let i = (request.seed.unwrap_or(1) - 1).max(0) as usize;
        let answer = {
            let a = self.answers.lock().unwrap();
            a[i % a.len()].clone()
        };
        let (_, schema) = request.json_schema.clone().unwrap_or_default();
        let user = request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let content = match answer {
            Answer::Score(s, flags) => judgment_json(&schema, &user, s, &flags).to_string(),
            Answer::Invalid => "not json".to_string(),
            Answer::Fail(status) => {
                return Err(LlmError::Server {
                    status,
                    message: "scripted failure".into(),
                })
            }
        };
        Ok(ChatResponse {
            content,
            model: format!("{}-answered", request.model),
            usage: TokenUsage {
                prompt_tokens: 1000,
                completion_tokens: 100,
                cached_tokens: 0,
            },
        })
    }
}

/// Three models: `mini` (cheap), `big` (16x the price), `alt` (mini's fallback); the
/// default route mini -> big with 3 cheap samples; `extra` is appended to the config.
fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[judge]
samples = 3
temperature = 0.7
seed = 1
max_repairs = 0
retry_base_ms = 1
retry_max_ms = 1

[[models]]
name = "mini"
model = "mini-id"
max_retries = 0
rpm = 10000
tpm = 100000000
prices = {{ input_per_mtok = 0.15, cached_input_per_mtok = 0.075, output_per_mtok = 0.6 }}

[[models]]
name = "big"
model = "big-id"
max_retries = 0
prices = {{ input_per_mtok = 2.5, cached_input_per_mtok = 1.25, output_per_mtok = 10.0 }}

[[models]]
name = "alt"
model = "alt-id"
max_retries = 0
prices = {{ input_per_mtok = 0.15, cached_input_per_mtok = 0.075, output_per_mtok = 0.6 }}

{extra}
"#
    );
    Config::from_sources(None, Some(&text), &|_| None).unwrap()
}

const CASCADE: &str = r#"
[routes.default]
cheap = "mini"
strong = "big"
cheap_samples = 3
"#;

struct Setup {
    judge: Judge,
    metrics: Arc<JudgeMetrics>,
}

fn routed(cfg: &Config, providers: &[(&str, Arc<Fake>)]) -> Setup {
    let map: HashMap<String, Arc<dyn Provider>> = providers
        .iter()
        .map(|(n, p)| (n.to_string(), p.clone() as Arc<dyn Provider>))
        .collect();
    let metrics = Arc::new(JudgeMetrics::new());
    let router = Router::from_config(
        cfg,
        &|m: &ModelConfig| {
            map.get(&m.name)
                .cloned()
                .ok_or_else(|| format!("no provider for {}", m.name))
        },
        metrics.clone(),
    )
    .unwrap()
    .unwrap();
    Setup {
        judge: Judge::with_router(router, JudgeSettings::from_config(cfg, cfg.judge_model())),
        metrics,
    }
}

async fn grade(judge: &Judge) -> GradeReport {
    let reg = registry();
    judge
        .grade(&submission("t", TRANSCRIPT), system_design(&reg))
        .await
        .unwrap()
}

#[tokio::test]
async fn agreeing_cheap_samples_are_not_escalated() {
    let (mini, big) = (Fake::scores(&[3, 3, 4]), Fake::scores(&[4]));
    let s = routed(
        &config(CASCADE),
        &[("mini", mini.clone()), ("big", big.clone())],
    );
    let r = grade(&s.judge).await;
    assert_eq!(mini.calls(), 3);
    assert_eq!(big.calls(), 0);
    assert_eq!(r.judge.tier, "cheap");
    assert!(!r.judge.escalated);
    assert_eq!(r.judge.samples, 3);
    assert_eq!(r.judge.model, "mini-id-answered");
    assert!(r.scores.iter().all(|d| d.score == Some(3.0)));
    assert!(!r.review_reasons.iter().any(|x| x.contains("escalat")));
    assert_eq!(s.metrics.escalations(), 0);
    // mini has RPM/TPM limits (generous): every request went through its limiter.
    assert_eq!(s.metrics.ratelimit_wait.count(), 3);
    // 3 cheap calls at 1,000 in / 100 out, mini prices.
    let expected = 3.0 * (1000.0 * 0.15 + 100.0 * 0.6) / 1e6;
    assert!(
        (r.usage.cost_usd - expected).abs() < 1e-12,
        "{}",
        r.usage.cost_usd
    );
}

#[tokio::test]
async fn disagreeing_cheap_samples_escalate_to_the_strong_tier() {
    // Spread exactly at the threshold (2) escalates.
    let (mini, big) = (Fake::scores(&[2, 3, 4]), Fake::scores(&[4]));
    let s = routed(
        &config(CASCADE),
        &[("mini", mini.clone()), ("big", big.clone())],
    );
    let r = grade(&s.judge).await;
    assert_eq!((mini.calls(), big.calls()), (3, 1));
    assert_eq!(r.judge.tier, "strong");
    assert!(r.judge.escalated);
    assert_eq!(r.judge.samples, 1, "the strong tier's samples grade");
    assert_eq!(r.judge.model, "big-id-answered");
    assert!(r.scores.iter().all(|d| d.score == Some(4.0)));
    let reason = r
        .review_reasons
        .iter()
        .find(|x| x.contains("escalated from the cheap tier"))
        .expect("the escalation is explained");
    assert!(reason.contains("spread 2"), "{reason}");
    // Usage covers both tiers.
    let expected = 3.0 * (1000.0 * 0.15 + 100.0 * 0.6) / 1e6 + (1000.0 * 2.5 + 100.0 * 10.0) / 1e6;
    assert!((r.usage.cost_usd - expected).abs() < 1e-12);
    assert_eq!(r.usage.prompt_tokens, 4000);
    assert_eq!(s.metrics.escalations(), 1);
}

#[tokio::test]
async fn the_spread_threshold_and_confidence_rule_are_configurable() {
    // Spread 2 with the threshold raised to 3: no escalation.
    let cfg = config(&format!("{CASCADE}escalate_spread = 3\n"));
    let (mini, big) = (Fake::scores(&[2, 3, 4]), Fake::scores(&[4]));
    let s = routed(&cfg, &[("mini", mini), ("big", big.clone())]);
    assert!(!grade(&s.judge).await.judge.escalated);
    assert_eq!(big.calls(), 0);
    // Spread 1 but a demanding confidence rule: 1 - (1/3)/(range/2) is below 0.95.
    let cfg = config(&format!("{CASCADE}escalate_below_confidence = 0.95\n"));
    let (mini, big) = (Fake::scores(&[3, 3, 4]), Fake::scores(&[4]));
    let s = routed(&cfg, &[("mini", mini), ("big", big.clone())]);
    let r = grade(&s.judge).await;
    assert!(r.judge.escalated);
    assert!(r.review_reasons.iter().any(|x| x.contains("confidence")));
}

#[tokio::test]
async fn a_high_severity_red_flag_or_invalid_output_escalates() {
    let reg = registry();
    let red = system_design(&reg)
        .file
        .flags
        .iter()
        .find(|f| f.kind == FlagKind::Red && f.severity == Severity::High)
        .unwrap()
        .id
        .clone();
    let mini = Fake::new(vec![
        Answer::Score(3, vec![]),
        Answer::Score(3, vec![red.clone()]),
        Answer::Score(3, vec![]),
    ]);
    let big = Fake::scores(&[2]);
    let s = routed(&config(CASCADE), &[("mini", mini), ("big", big.clone())]);
    let r = grade(&s.judge).await;
    assert!(r.judge.escalated);
    assert_eq!(big.calls(), 1);
    assert!(
        r.review_reasons.iter().any(|x| x.contains(&red)),
        "{:?}",
        r.review_reasons
    );

    let mini = Fake::new(vec![Answer::Invalid]);
    let big = Fake::scores(&[4]);
    let s = routed(&config(CASCADE), &[("mini", mini), ("big", big.clone())]);
    let r = grade(&s.judge).await;
    assert!(r.judge.escalated);
    assert_eq!(
        r.status,
        grader::domain::ReportStatus::Scored,
        "the strong tier scored it"
    );
    assert!(r
        .review_reasons
        .iter()
        .any(|x| x.contains("no valid judgment")));
}

#[tokio::test]
async fn hard_stages_and_long_inputs_go_straight_to_the_strong_tier() {
    let cfg = config(&format!("{CASCADE}\n[routes.system_design]\nhard = true\n"));
    let (mini, big) = (Fake::scores(&[3]), Fake::scores(&[4]));
    let s = routed(&cfg, &[("mini", mini.clone()), ("big", big.clone())]);
    let r = grade(&s.judge).await;
    assert_eq!((mini.calls(), big.calls()), (0, 1));
    assert!(r.judge.escalated);
    assert_eq!(r.judge.tier, "strong");
    assert!(
        !r.needs_review,
        "routing policy is not a doubt: {:?}",
        r.review_reasons
    );
    assert_eq!(s.metrics.escalations(), 1);
    let dry = s
        .judge
        .estimate(&submission("t", TRANSCRIPT), system_design(&registry()))
        .await
        .unwrap();
    assert_eq!(
        dry.starts_strong_because,
        vec!["the stage is configured as hard"]
    );
    assert_eq!(dry.tiers[0].used, "straight");

    // Another stage keeps the default route.
    let reg = registry();
    let pv = reg.for_stage(Stage::DeepDive).unwrap();
    let mut sub = submission("t", TRANSCRIPT);
    sub.stage = Stage::DeepDive;
    s.judge.grade(&sub, pv).await.unwrap();
    assert_eq!(mini.calls(), 3);

    let cfg = config(&format!("{CASCADE}escalate_above_tokens = 100\n"));
    let (mini, big) = (Fake::scores(&[3]), Fake::scores(&[4]));
    let s = routed(&cfg, &[("mini", mini.clone()), ("big", big.clone())]);
    let r = grade(&s.judge).await;
    assert_eq!((mini.calls(), big.calls()), (0, 1));
    assert!(r.judge.escalated);
    let dry = s
        .judge
        .estimate(&submission("t", TRANSCRIPT), system_design(&registry()))
        .await
        .unwrap();
    assert!(dry.starts_strong_because[0].contains("above the cascade's limit of 100"));
}

#[tokio::test]
async fn a_failing_strong_tier_leaves_the_cheap_result_with_a_reason() {
    let (mini, big) = (Fake::scores(&[1, 3, 4]), Fake::new(vec![Answer::Fail(500)]));
    let s = routed(&config(CASCADE), &[("mini", mini), ("big", big)]);
    let r = grade(&s.judge).await;
    assert!(!r.judge.escalated);
    assert_eq!(r.judge.tier, "cheap");
    assert!(r.needs_review);
    assert!(r
        .review_reasons
        .iter()
        .any(|x| x.contains("escalation to the strong tier") && x.contains("failed")));
}

#[tokio::test]
async fn the_fallback_answers_when_the_primary_fails_and_the_breaker_opens_and_recovers() {
    let cfg = config(
        r#"
[routes.default]
cheap = ["mini", "alt"]
cheap_samples = 1

[breaker]
failures = 2
cooldown_secs = 1
"#,
    );
    let (mini, alt) = (Fake::new(vec![Answer::Fail(500)]), Fake::scores(&[4]));
    let s = routed(&cfg, &[("mini", mini.clone()), ("alt", alt.clone())]);
    let reg = registry();
    let pv = system_design(&reg);
    // Distinct inputs so nothing is a cache hit.
    let text = |n: usize| TRANSCRIPT.replace("10,000", &format!("{n} thousand"));
    for n in 0..2 {
        let r = s.judge.grade(&submission("t", &text(n)), pv).await.unwrap();
        assert_eq!(r.judge.model, "alt-id-answered");
        assert_eq!(r.judge.tier, "cheap");
    }
    assert_eq!((mini.calls(), alt.calls()), (2, 2));
    assert_eq!(s.metrics.fallbacks(), 2);
    assert_eq!(s.metrics.breaker_state("mini"), Some(BreakerGauge::Open));
    // Open: the primary is not called at all.
    s.judge.grade(&submission("t", &text(2)), pv).await.unwrap();
    assert_eq!((mini.calls(), alt.calls()), (2, 3));
    // After the cool-down the primary has recovered: the half-open probe goes to it and
    // closes the breaker.
    mini.set(vec![Answer::Score(3, vec![])]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = s.judge.grade(&submission("t", &text(3)), pv).await.unwrap();
    assert_eq!(r.judge.model, "mini-id-answered");
    assert_eq!(mini.calls(), 3);
    assert_eq!(s.metrics.breaker_state("mini"), Some(BreakerGauge::Closed));
    s.judge.grade(&submission("t", &text(4)), pv).await.unwrap();
    assert_eq!((mini.calls(), alt.calls()), (4, 3));
    let text = s.metrics.render();
    assert!(
        text.contains("grader_fallbacks_total{from=\"mini-id\",to=\"alt-id\"} 3"),
        "{text}"
    );
    assert!(text.contains("grader_breaker_opened_total{model=\"mini\"} 1"));
}

#[tokio::test]
async fn a_breaker_whose_probe_fails_opens_again_and_without_fallback_fails_fast() {
    let cfg = config(
        r#"
[routes.default]
cheap = "mini"
cheap_samples = 1

[breaker]
failures = 1
cooldown_secs = 1
"#,
    );
    let mini = Fake::new(vec![Answer::Fail(503)]);
    let s = routed(&cfg, &[("mini", mini.clone())]);
    let reg = registry();
    let pv = system_design(&reg);
    let e = s
        .judge
        .grade(&submission("t", TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("scripted failure"), "{e}");
    let e = s
        .judge
        .grade(&submission("t", TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("circuit breaker open"), "{e}");
    assert_eq!(mini.calls(), 1, "refused without a call");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.judge
        .grade(&submission("t", TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert_eq!(mini.calls(), 2, "the probe");
    s.judge
        .grade(&submission("t", TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert_eq!(mini.calls(), 2, "open again after the failed probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_over_http_when_the_primary_answers_500s() {
    let primary = StandIn::start().await;
    primary.set_default(Reply::error(500, "upstream exploded"));
    let backup = StandIn::start().await;
    backup.set_default(Reply::dynamic(|req| {
        let schema = &req["response_format"]["json_schema"]["schema"];
        let user = req["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        Reply::reply(judgment_json(schema, user, 4, &[]).to_string())
    }));
    let cfg = Config::from_sources(
        None,
        Some(&format!(
            r#"
[judge]
retry_base_ms = 1
retry_max_ms = 2

[[models]]
name = "primary"
model = "gpt-4o-mini"
base_url = "{}"
max_retries = 1

[[models]]
name = "backup"
model = "llama3"
base_url = "{}"
max_retries = 0

[routes.default]
cheap = ["primary", "backup"]
"#,
            primary.base_url, backup.base_url
        )),
        &|_| None,
    )
    .unwrap();
    let judge = Judge::from_config(&cfg).unwrap();
    let r = grade(&judge).await;
    assert_eq!(primary.calls(), 2, "the first attempt and its one retry");
    assert_eq!(backup.calls(), 1);
    assert_eq!(r.judge.model, "llama3");
    assert_eq!(r.judge.tier, "cheap");
}

#[tokio::test]
async fn an_exhausted_budget_grades_offline_with_needs_review() {
    let (mini, big) = (Fake::scores(&[3]), Fake::scores(&[4]));
    let cfg = config(&format!("{CASCADE}cheap_samples = 1\n").replace("cheap_samples = 3\n", ""));
    let s = routed(&cfg, &[("mini", mini.clone()), ("big", big)]);
    let reg = registry();
    let pv = system_design(&reg);
    // The cap admits one grading's worst case, but not a second one on top of the first's
    // actual spend (1,000 in and 100 out at mini's prices).
    let actual = (1000.0 * 0.15 + 100.0 * 0.6) / 1e6;
    let worst = s
        .judge
        .estimate(&submission("acme", TRANSCRIPT), pv)
        .await
        .unwrap()
        .max_cost_usd;
    let ledger = Arc::new(MemoryLedger::new());
    let judge = s.judge.with_budget(
        BudgetConfig {
            tenant_daily_usd: Some(worst + actual / 2.0),
            ..BudgetConfig::default()
        },
        ledger.clone(),
    );
    let first = judge
        .grade(&submission("acme", TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(first.judge.tier, "cheap");
    assert!((first.usage.cost_usd - actual).abs() < 1e-12);
    assert_eq!(mini.calls(), 1);
    let other = TRANSCRIPT.replace("10,000", "20,000");
    let second = judge.grade(&submission("acme", &other), pv).await.unwrap();
    assert_eq!(mini.calls(), 1, "no call once the budget is exhausted");
    assert_eq!(second.judge.model, "offline");
    assert_eq!(second.judge.tier, "offline");
    assert!(second.needs_review);
    let reason = &second.review_reasons[0];
    assert!(
        reason.starts_with("budget: the tenant's daily budget of $")
            && reason.contains("offline judge"),
        "{reason}"
    );
    assert!(second.notice.contains("offline"));
    // Another tenant has its own daily cap.
    let third = judge
        .grade(&submission("globex", &other), pv)
        .await
        .unwrap();
    assert_eq!(third.judge.tier, "cheap");
    assert_eq!(mini.calls(), 2);
    // Spend was recorded for both tenants.
    let acme = ledger
        .summary(&UsageFilter {
            tenant: Some("acme".into()),
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert!((acme[0].cost_usd - first.usage.cost_usd).abs() < 1e-12);
    assert!(judge
        .metrics()
        .render()
        .contains("grader_budget_degraded_total{scope=\"tenant_daily\"} 1"));
}

/// Two judges (two replicas) over one store: the second sees what the first spent, so a
/// tenant's daily cap holds across them.
async fn two_judges_over_one_store_share_a_tenants_daily_cap(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cfg = config("[routes.default]\ncheap = \"mini\"\ncheap_samples = 1\n");
    let reg = registry();
    let pv = system_design(&reg);
    let (mini_a, mini_b) = (Fake::scores(&[3]), Fake::scores(&[3]));
    let actual = (1000.0 * 0.15 + 100.0 * 0.6) / 1e6;
    let worst = routed(&cfg, &[("mini", mini_a.clone())])
        .judge
        .estimate(&submission("acme", TRANSCRIPT), pv)
        .await
        .unwrap()
        .max_cost_usd;
    // Admits one grading's worst case, not a second on top of the first's actual spend.
    let caps = BudgetConfig {
        tenant_daily_usd: Some(worst + actual / 2.0),
        ..BudgetConfig::default()
    };
    let replica = |mini: &Arc<Fake>| {
        routed(&cfg, &[("mini", mini.clone())])
            .judge
            .with_budget(caps.clone(), Arc::new(StoreLedger::new(db.store.clone())))
    };
    let (a, b) = (replica(&mini_a), replica(&mini_b));

    let first = a.grade(&submission("acme", TRANSCRIPT), pv).await.unwrap();
    assert_eq!(first.judge.tier, "cheap");
    assert_eq!(mini_a.calls(), 1);
    // The other replica: the tenant's cap is spent, so it grades offline without a call.
    let other = TRANSCRIPT.replace("10,000", "20,000");
    let second = b.grade(&submission("acme", &other), pv).await.unwrap();
    assert_eq!(
        mini_b.calls(),
        0,
        "no call once the shared budget is exhausted"
    );
    assert_eq!(second.judge.model, "offline");
    assert!(second.needs_review);
    assert!(
        second.review_reasons[0].starts_with("budget: the tenant's daily budget of $"),
        "{:?}",
        second.review_reasons
    );
    // Another tenant still has its own cap on that replica.
    let third = b.grade(&submission("globex", &other), pv).await.unwrap();
    assert_eq!(third.judge.tier, "cheap");
    assert_eq!(mini_b.calls(), 1);
    // Both paid gradings are in the store, per tenant.
    let acme = db
        .store
        .usage_summary(&UsageFilter {
            tenant: Some("acme".into()),
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(acme.len(), 1, "{acme:?}");
    assert_eq!(
        (acme[0].prompt.as_str(), acme[0].model.as_str()),
        ("system_design@v1", "mini-id")
    );
    assert_eq!(acme[0].gradings, 1);
    assert!((acme[0].cost_usd - first.usage.cost_usd).abs() < 1e-12);
    let all = db
        .store
        .usage_summary(&UsageFilter::default())
        .await
        .unwrap();
    assert_eq!(all[0].gradings, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_judges_over_one_sqlite_store_share_a_tenants_daily_cap() {
    two_judges_over_one_store_share_a_tenants_daily_cap(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_judges_over_one_postgres_store_share_a_tenants_daily_cap() {
    two_judges_over_one_store_share_a_tenants_daily_cap(Backend::Postgres).await;
}

#[tokio::test]
async fn a_cached_answer_is_served_even_when_the_budget_is_exhausted() {
    let mini = Fake::scores(&[3]);
    let cfg = config("[routes.default]\ncheap = \"mini\"\ncheap_samples = 1\n");
    let s = routed(&cfg, &[("mini", mini.clone())]);
    let reg = registry();
    let pv = system_design(&reg);
    let worst = s
        .judge
        .estimate(&submission("acme", TRANSCRIPT), pv)
        .await
        .unwrap()
        .max_cost_usd;
    let judge = s.judge.with_memory_cache(Default::default()).with_budget(
        BudgetConfig {
            global_daily_usd: Some(worst + 0.0001),
            ..BudgetConfig::default()
        },
        Arc::new(MemoryLedger::new()),
    );
    judge
        .grade(&submission("acme", TRANSCRIPT), pv)
        .await
        .unwrap();
    let again = judge
        .grade(&submission("acme", TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(again.judge.cache, CacheStatus::Hit);
    assert_eq!(again.judge.tier, "cheap", "a free answer needs no budget");
    assert_eq!(mini.calls(), 1);
}

#[tokio::test]
async fn an_escalation_the_budget_cannot_afford_keeps_the_cheap_result() {
    let (mini, big) = (Fake::scores(&[1, 3, 4]), Fake::scores(&[4]));
    let s = routed(&config(CASCADE), &[("mini", mini), ("big", big.clone())]);
    let reg = registry();
    let pv = system_design(&reg);
    let dry = s
        .judge
        .estimate(&submission("t", TRANSCRIPT), pv)
        .await
        .unwrap();
    // Enough for the cheap tier, not for the strong one on top.
    let judge = s.judge.with_budget(
        BudgetConfig {
            global_monthly_usd: Some(dry.max_cost_usd * 1.2),
            ..BudgetConfig::default()
        },
        Arc::new(MemoryLedger::new()),
    );
    let r = grade(&judge).await;
    assert_eq!(big.calls(), 0);
    assert!(!r.judge.escalated);
    assert!(r
        .review_reasons
        .iter()
        .any(|x| x.contains("escalation to the strong tier")
            && x.contains("skipped: the global monthly budget")));
}

#[tokio::test]
async fn a_dry_run_makes_no_call_and_prices_each_tier() {
    let (mini, big) = (Fake::scores(&[3]), Fake::scores(&[4]));
    let s = routed(
        &config(CASCADE),
        &[("mini", mini.clone()), ("big", big.clone())],
    );
    let reg = registry();
    let pv = system_design(&reg);
    let out = s
        .judge
        .grade_with(
            &submission("t", TRANSCRIPT),
            pv,
            &GradeOptions {
                dry_run: true,
                bypass_cache: false,
            },
        )
        .await
        .unwrap();
    let GradeOutcome::DryRun(run) = out else {
        panic!("expected a dry run");
    };
    assert_eq!(mini.calls() + big.calls(), 0);
    assert!(run.dry_run);
    assert_eq!(run.tiers.len(), 2);
    let (cheap, strong) = (&run.tiers[0], &run.tiers[1]);
    assert_eq!(
        (cheap.tier.as_str(), cheap.used.as_str()),
        ("cheap", "first")
    );
    assert_eq!(
        (strong.tier.as_str(), strong.used.as_str()),
        ("strong", "on_escalation")
    );
    assert_eq!(cheap.samples, 3);
    assert!(run.prompt_tokens > run.system_tokens && run.system_tokens > 0);
    assert!(run.stable_prefix_share > 0.5 && run.stable_prefix_share < 1.0);
    let per = grader::llm::cost::max_cost_usd(
        &cfg_prices("mini"),
        cheap.prompt_tokens,
        cheap.max_output_tokens,
    );
    assert!((cheap.max_cost_usd - 3.0 * per).abs() < 1e-12);
    assert!(
        (run.max_cost_usd_if_escalated - cheap.max_cost_usd - strong.max_cost_usd).abs() < 1e-12
    );
    assert!(strong.max_cost_usd > cheap.max_cost_usd);
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["dry_run"], true);
}

fn cfg_prices(name: &str) -> grader::llm::Prices {
    config("").model(name).unwrap().prices
}

#[tokio::test]
async fn usage_is_recorded_per_grading_and_summed_per_prompt_and_model() {
    let (mini, big) = (Fake::scores(&[1, 3, 4]), Fake::scores(&[4]));
    let s = routed(&config(CASCADE), &[("mini", mini), ("big", big)]);
    let ledger = Arc::new(MemoryLedger::new());
    let judge = s.judge.with_usage_ledger(ledger.clone());
    let reg = registry();
    let pv = system_design(&reg);
    for n in 0..2 {
        let text = TRANSCRIPT.replace("10,000", &format!("{n}0 thousand"));
        judge.grade(&submission("t", &text), pv).await.unwrap();
    }
    let rows = ledger.summary(&UsageFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = |m: &str| rows.iter().find(|r| r.model == m).unwrap();
    assert_eq!(row("mini-id").prompt, "system_design@v1");
    assert_eq!((row("mini-id").gradings, row("mini-id").samples), (2, 6));
    assert_eq!((row("big-id").gradings, row("big-id").samples), (2, 2));
    assert!((row("big-id").cost_usd - 2.0 * (1000.0 * 2.5 + 100.0 * 10.0) / 1e6).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_dry_run_on_the_cli_calls_no_model() {
    let server = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("grader.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
[[models]]
name = "mini"
model = "gpt-4o-mini"
base_url = "{0}"
prices = {{ input_per_mtok = 0.15, output_per_mtok = 0.6 }}

[[models]]
name = "big"
model = "gpt-4o"
base_url = "{0}"
prices = {{ input_per_mtok = 2.5, output_per_mtok = 10.0 }}

[routes.default]
cheap = "mini"
strong = "big"
cheap_samples = 3
"#,
            server.base_url
        ),
    )
    .unwrap();
    let mut json_cmd = grader_cmd();
    json_cmd.arg("--config").arg(&cfg_path).args([
        "grade",
        "--stage",
        "system_design",
        "--dry-run",
        "--json",
        "examples/transcripts/system_design_strong.txt",
    ]);
    let mut text_cmd = grader_cmd();
    text_cmd.arg("--config").arg(&cfg_path).args([
        "grade",
        "--stage",
        "system_design",
        "--dry-run",
        "examples/transcripts/system_design_strong.txt",
    ]);
    let (json_out, text_out) = tokio::task::spawn_blocking(move || {
        (json_cmd.output().unwrap(), text_cmd.output().unwrap())
    })
    .await
    .unwrap();
    assert!(
        json_out.status.success(),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    assert_eq!(server.calls(), 0);
    let v: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["tiers"][0]["model_id"], "gpt-4o-mini");
    assert_eq!(v["tiers"][1]["used"], "on_escalation");
    assert!(v["tiers"][0]["max_cost_usd"].as_f64().unwrap() > 0.0);
    let text = String::from_utf8_lossy(&text_out.stdout);
    assert!(text.contains("Dry run: no model was called"), "{text}");
    assert!(
        text.contains("cheap") && text.contains("only on escalation"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_records_usage_and_the_usage_command_sums_it_and_caps_hold_across_runs() {
    let server = StandIn::start().await;
    server.set_default(Reply::dynamic(|req| {
        let schema = &req["response_format"]["json_schema"]["schema"];
        let user = req["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        Reply::reply_with_usage(
            judgment_json(schema, user, 3, &[]).to_string(),
            1000,
            100,
            0,
        )
    }));
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("usage.jsonl");
    let write_cfg = |cap: &str| {
        let path = dir.path().join("grader.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[[models]]
name = "mini"
model = "gpt-4o-mini"
base_url = "{}"
prices = {{ input_per_mtok = 0.15, output_per_mtok = 0.6 }}

[budgets]
ledger_path = "{}"
{cap}
"#,
                server.base_url,
                ledger.display()
            ),
        )
        .unwrap();
        path
    };
    let cfg = write_cfg("");
    let grade = |cfg: &std::path::Path, file: &str| {
        let mut c = grader_cmd();
        c.arg("--config")
            .arg(cfg)
            .args(["grade", "--stage", "system_design", "--json", file]);
        c
    };
    let run = |c: std::process::Command| async move {
        let mut c = c;
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    };
    for file in [
        "examples/transcripts/system_design_strong.txt",
        "examples/transcripts/system_design_weak.txt",
    ] {
        let out = run(grade(&cfg, file)).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(server.calls(), 2);
    let mut usage = grader_cmd();
    usage.arg("--config").arg(&cfg).args(["usage", "--json"]);
    let out = run(usage).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"][0]["prompt"], "system_design@v1");
    assert_eq!(v["rows"][0]["model"], "gpt-4o-mini");
    assert_eq!(v["rows"][0]["gradings"], 2);
    let expected = 2.0 * (1000.0 * 0.15 + 100.0 * 0.6) / 1e6;
    assert!((v["total"]["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12);

    // A cap below what is already spent: the next run grades offline and says why.
    let capped = write_cfg(&format!("tenant_daily_usd = {}", expected / 2.0));
    let out = run(grade(
        &capped,
        "examples/transcripts/system_design_strong.txt",
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.calls(), 2, "no model call over budget");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["judge"]["model"], "offline");
    assert_eq!(r["needs_review"], true);
    assert!(r["review_reasons"][0]
        .as_str()
        .unwrap()
        .contains("daily budget"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_command_reads_the_stores_usage_with_db() {
    let db = TestDb::new(Backend::Sqlite).await;
    let record = |tenant: &str, cost: f64| grader::budget::UsageRecord {
        at: chrono::Utc::now(),
        tenant: tenant.into(),
        stage: "system_design".into(),
        prompt: "system_design@v1".into(),
        prompt_sha256: "cd".repeat(32),
        model: "gpt-4o-mini".into(),
        tier: "cheap".into(),
        samples: 1,
        cached_samples: 0,
        prompt_tokens: 1000,
        completion_tokens: 100,
        cached_tokens: 0,
        cost_usd: cost,
    };
    db.store
        .record_usage(&[record("acme", 0.25), record("globex", 0.5)])
        .await
        .unwrap();
    let url = db.url.clone();
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || grader_cmd().args(args).output().unwrap())
            .await
            .unwrap()
    };
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["usage", "--json", "--db", url.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = run(args(&[])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"][0]["gradings"], 2);
    assert_eq!(v["total"]["cost_usd"], 0.75);
    let out = run(args(&["--tenant", "acme"])).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["cost_usd"], 0.25);
    // A missing SQLite file is an error, not a new empty database.
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let out = run(vec!["usage".into(), "--db".into(), missing]).await;
    assert!(!out.status.success());
    assert!(!dir.path().join("none.db").exists());
}

/// A ledger that answers slowly, so a grading refused by its budget is still "in flight" when
/// an identical grading of another tenant arrives.
struct SlowLedger(MemoryLedger);

#[async_trait]
impl UsageLedger for SlowLedger {
    async fn record(
        &self,
        records: &[grader::budget::UsageRecord],
    ) -> Result<(), grader::budget::LedgerError> {
        self.0.record(records).await
    }
    async fn spent(
        &self,
        tenant: &str,
        day: chrono::NaiveDate,
    ) -> Result<grader::budget::Spent, grader::budget::LedgerError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.0.spent(tenant, day).await
    }
    async fn summary(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<grader::budget::UsageSummaryRow>, grader::budget::LedgerError> {
        self.0.summary(filter).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_exhausted_budget_does_not_leak_to_another_waiting_on_the_same_call() {
    let mini = Fake::scores(&[3]);
    let cfg = config("[routes.default]\ncheap = \"mini\"\ncheap_samples = 1\n");
    let s = routed(&cfg, &[("mini", mini.clone())]);
    let mut caps = BudgetConfig::default();
    caps.tenants.insert(
        "broke".into(),
        grader::config::TenantBudget {
            daily_usd: Some(0.0),
            monthly_usd: None,
        },
    );
    let judge = Arc::new(
        s.judge
            .with_memory_cache(Default::default())
            .with_budget(caps, Arc::new(SlowLedger(MemoryLedger::new()))),
    );
    let reg = Arc::new(registry());
    let spawn = |tenant: &'static str| {
        let (judge, reg) = (judge.clone(), reg.clone());
        tokio::spawn(async move {
            judge
                .grade(&submission(tenant, TRANSCRIPT), system_design(&reg))
                .await
                .unwrap()
        })
    };
    let broke = spawn("broke");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rich = spawn("rich");
    let (broke, rich) = (broke.await.unwrap(), rich.await.unwrap());
    assert_eq!(broke.judge.model, "offline");
    assert_eq!(rich.judge.tier, "cheap", "{:?}", rich.review_reasons);
    assert_eq!(mini.calls(), 1);
}
