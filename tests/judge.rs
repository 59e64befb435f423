//! The judge pipeline with a scripted in-memory provider: every path of `Judge::grade`
//! without a network. (End-to-end through the stand-in server is in tests/cli_grade.rs.)

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grader::domain::{Recommendation, ReportStatus, Stage, Submission};
use grader::ingest::{self, Limits};
use grader::judge::pipeline::{Judge, JudgeError, JudgeSettings};
use grader::judge::validate::validate;
use grader::judge::{JudgedFlag, JudgedScore, Judgment};
use grader::llm::retry::RetryPolicy;
use grader::llm::{ChatRequest, ChatResponse, LlmError, ModelConfig, Provider, Role, TokenUsage};
use grader::prompts::{self, PromptFile, RenderInput};
use support::fixtures::{registry, system_design, TRANSCRIPT};

/// Answers each call with the next scripted reply and records every request.
#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<Result<String, LlmError>>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl Scripted {
    fn new(replies: Vec<String>) -> Arc<Scripted> {
        Arc::new(Scripted {
            replies: Mutex::new(replies.into_iter().map(Ok).collect()),
            requests: Mutex::default(),
        })
    }
    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for Scripted {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.requests.lock().unwrap().push(request.clone());
        let next = self.replies.lock().unwrap().pop_front();
        match next {
            Some(Ok(content)) => Ok(ChatResponse {
                content,
                model: "scripted-model".into(),
                usage: TokenUsage {
                    prompt_tokens: 1000,
                    completion_tokens: 100,
                    cached_tokens: 400,
                },
            }),
            Some(Err(e)) => Err(e),
            None => Err(LlmError::Server {
                status: 500,
                message: "script exhausted".into(),
            }),
        }
    }
}

fn model(context_window: u64) -> ModelConfig {
    ModelConfig {
        name: "cheap".into(),
        model: "gpt-4o-mini".into(),
        base_url: None,
        api_key_env: None,
        prices: grader::llm::Prices {
            input_per_mtok: 1.0,
            cached_input_per_mtok: 0.5,
            output_per_mtok: 4.0,
        },
        context_window,
        max_output_tokens: 2000,
        tokenizer: None,
        timeout_secs: 5,
        max_retries: 0,
        rpm: None,
        tpm: None,
    }
}

fn settings(samples: u32) -> JudgeSettings {
    JudgeSettings {
        samples,
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

fn submission(stage: Stage, text: &str) -> Submission {
    let transcript = ingest::parse(text.as_bytes(), None, &Limits::default()).unwrap();
    Submission {
        tenant: "t".into(),
        stage,
        question: Some("Design a legal QA system".into()),
        transcript,
        candidate: None,
        external_id: None,
        metadata: serde_json::Value::Null,
    }
}

/// A valid judgment for any rubric: every dimension at `score(scale max)`, quoting `quote`.
fn judgment(file: &PromptFile, score: impl Fn(u8) -> i64, quote: &str) -> Judgment {
    Judgment {
        scores: file
            .dimensions
            .iter()
            .map(|d| JudgedScore {
                dimension: d.id.clone(),
                score: score(d.scale.max),
                rationale: format!("rationale for {}", d.id),
                evidence: vec![quote.to_string()],
            })
            .collect(),
        flags: vec![],
        summary: "summary".into(),
    }
}

fn json(j: &Judgment) -> String {
    serde_json::to_string(j).unwrap()
}

#[tokio::test]
async fn every_stage_prompt_renders_and_a_good_judgment_is_scored() {
    let reg = registry();
    for stage in Stage::ALL {
        let pv = reg
            .for_stage(stage)
            .unwrap_or_else(|| panic!("no prompt for {stage}"));
        let sub = submission(stage, TRANSCRIPT);
        let rendered = prompts::render(
            pv,
            &RenderInput {
                question: sub.question.clone(),
                transcript: sub.transcript.text.clone(),
                format: "speaker".into(),
            },
        )
        .unwrap();
        assert_eq!(rendered.messages[0].role, Role::System);
        assert!(rendered.messages[1]
            .content
            .contains("golden regression set"));
        let good = judgment(&pv.file, |max| max as i64, "hybrid search, BM25 plus dense");
        validate(&good, &pv.file).unwrap();
        let provider = Scripted::new(vec![json(&good)]);
        let judge = Judge::with_model(provider.clone(), model(128_000), settings(1));
        let report = judge.grade(&sub, pv).await.unwrap();
        assert_eq!(report.status, ReportStatus::Scored, "{stage}");
        assert_eq!(report.scores.len(), pv.file.dimensions.len());
        assert!(report
            .scores
            .iter()
            .all(|s| s.score == Some(s.scale.max as f64) && s.evidence.len() == 1));
        assert_eq!(report.overall, Some(1.0));
        assert_eq!(report.recommendation, Recommendation::StrongHire);
        assert_eq!(report.prompt.sha256, pv.sha256);
        assert_eq!(report.judge.model, "scripted-model");
        // The request asked for strict structured output.
        let req = &provider.requests()[0];
        let (_, schema) = req.json_schema.as_ref().unwrap();
        assert_eq!(schema["additionalProperties"], false);
    }
}

#[tokio::test]
async fn malformed_output_is_repaired_once_then_scored() {
    let reg = registry();
    let pv = system_design(&reg);
    let good = judgment(&pv.file, |_| 3, "cross-encoder re-ranker");
    let provider = Scripted::new(vec!["Sure! Here is my grading: {oops".into(), json(&good)]);
    let judge = Judge::with_model(provider.clone(), model(128_000), settings(1));
    let report = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Scored);
    assert_eq!(report.judge.repairs, 1);
    let reqs = provider.requests();
    assert_eq!(reqs.len(), 2);
    // The repair turn shows the model its own output and what was wrong with it.
    let repair = &reqs[1].messages;
    assert_eq!(repair[repair.len() - 2].role, Role::Assistant);
    assert!(repair[repair.len() - 2].content.contains("{oops"));
    assert!(repair[repair.len() - 1]
        .content
        .contains("not a valid judgment"));
    // Usage of both calls is counted and priced: 2 x (600 input, 400 cached, 100 output).
    assert_eq!(report.usage.prompt_tokens, 2000);
    let expected = 2.0 * (600.0 * 1.0 + 400.0 * 0.5 + 100.0 * 4.0) / 1e6;
    assert!((report.usage.cost_usd - expected).abs() < 1e-12);
}

#[tokio::test]
async fn malformed_twice_is_unscored_never_a_low_score() {
    let reg = registry();
    let pv = system_design(&reg);
    let provider = Scripted::new(vec!["not json".into(), "still not json".into()]);
    let judge = Judge::with_model(provider.clone(), model(128_000), settings(1));
    let report = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Unscored);
    assert!(report.scores.iter().all(|s| s.score.is_none()));
    assert_eq!(report.overall, None);
    assert_eq!(report.recommendation, Recommendation::InsufficientEvidence);
    assert!(report.needs_review);
    assert!(report
        .unscored_reason
        .as_deref()
        .unwrap()
        .contains("not a valid judgment"));
    assert_eq!(provider.requests().len(), 2);
}

#[tokio::test]
async fn out_of_range_score_and_unknown_ids_are_rejected() {
    let reg = registry();
    let pv = system_design(&reg);
    let mut bad = judgment(&pv.file, |max| max as i64 + 4, "hybrid search");
    bad.flags.push(JudgedFlag {
        id: "made_up_flag".into(),
        evidence: vec![],
    });
    let problems = validate(&bad, &pv.file).unwrap_err().join("\n");
    assert!(problems.contains("outside its scale"), "{problems}");
    assert!(
        problems.contains("unknown flag `made_up_flag`"),
        "{problems}"
    );
    let mut missing = judgment(&pv.file, |_| 2, "hybrid search");
    let dropped = missing.scores.pop().unwrap();
    let problems = validate(&missing, &pv.file).unwrap_err().join("\n");
    assert!(problems.contains(&format!("`{}` is missing", dropped.dimension)));

    let provider = Scripted::new(vec![json(&bad), json(&bad)]);
    let judge = Judge::with_model(provider, model(128_000), settings(1));
    let report = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Unscored);
    assert!(report
        .unscored_reason
        .unwrap()
        .contains("outside its scale"));
}

#[tokio::test]
async fn fabricated_quotes_are_dropped_and_counted() {
    let reg = registry();
    let pv = system_design(&reg);
    let mut j = judgment(&pv.file, |_| 3, "golden   REGRESSION set");
    j.scores[0]
        .evidence
        .push("we fine-tuned GPT-4 on every contract".into());
    // One dimension only has an invented quote.
    j.scores[1].evidence = vec!["I have ten years of Kubernetes".into()];
    let judge = Judge::with_model(Scripted::new(vec![json(&j)]), model(128_000), settings(1));
    let sub = submission(Stage::SystemDesign, TRANSCRIPT);
    let report = judge.grade(&sub, pv).await.unwrap();
    assert_eq!(report.dropped_quotes, 2);
    let first = &report.scores[0];
    assert_eq!(first.evidence.len(), 1);
    let e = &first.evidence[0];
    // Offsets point into the normalized transcript, and the quote is the transcript's own text.
    let at: String = sub
        .transcript
        .text
        .chars()
        .skip(e.start)
        .take(e.end - e.start)
        .collect();
    assert_eq!(at, e.quote);
    assert_eq!(e.quote.to_lowercase(), "golden regression set");
    assert!(report.scores[1].evidence.is_empty());
    assert!(report.needs_review);
    assert!(report
        .review_reasons
        .iter()
        .any(|r| r.contains(&report.scores[1].dimension) && r.contains("no evidence")));
}

#[tokio::test]
async fn samples_are_aggregated_by_median_and_disagreement_needs_review() {
    let reg = registry();
    let pv = system_design(&reg);
    let f = &pv.file;
    let replies = vec![
        json(&judgment(f, |_| 1, "hybrid search")),
        json(&judgment(f, |_| 3, "hybrid search")),
        json(&judgment(f, |max| max as i64, "hybrid search")),
    ];
    let provider = Scripted::new(replies);
    let judge = Judge::with_model(provider.clone(), model(128_000), settings(3));
    let report = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(report.judge.samples, 3);
    for s in &report.scores {
        assert_eq!(s.score, Some(3.0));
        assert_eq!(s.samples.len(), 3);
        assert!(s.confidence < 0.6, "{}", s.confidence);
    }
    assert!(report
        .review_reasons
        .iter()
        .any(|r| r.contains("samples disagree")));
    // Distinct seeds per sample, so samples are reproducible yet independent.
    let seeds: Vec<_> = provider.requests().iter().map(|r| r.seed).collect();
    assert_eq!(seeds, vec![Some(1), Some(2), Some(3)]);
}

#[tokio::test]
async fn recommendation_is_computed_in_code_and_capped_by_a_severe_red_flag() {
    let reg = registry();
    let pv = system_design(&reg);
    let red = pv
        .file
        .flags
        .iter()
        .find(|f| {
            f.kind == grader::domain::FlagKind::Red && f.severity == grader::domain::Severity::High
        })
        .expect("system_design has a high-severity red flag");
    let mut j = judgment(&pv.file, |max| max as i64, "hybrid search");
    j.flags.push(JudgedFlag {
        id: red.id.clone(),
        evidence: vec!["BM25 plus dense retrieval".into()],
    });
    j.summary = "Outstanding candidate, strong hire!".into();
    let judge = Judge::with_model(Scripted::new(vec![json(&j)]), model(128_000), settings(1));
    let report = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap();
    assert_eq!(report.overall, Some(1.0));
    assert_eq!(report.recommendation, Recommendation::LeanNoHire);
    assert_eq!(report.flags.len(), 1);
    assert!(report.needs_review);
}

#[tokio::test]
async fn input_over_the_context_budget_is_refused_before_any_call() {
    let reg = registry();
    let pv = system_design(&reg);
    let provider = Scripted::new(vec![]);
    let judge = Judge::with_model(provider.clone(), model(3_000), settings(1));
    let err = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::InputTooLong(_)), "{err}");
    assert!(err.to_string().contains("tokens"), "{err}");
    assert!(provider.requests().is_empty());
}

#[tokio::test]
async fn provider_failure_is_a_clear_error_not_a_score() {
    let reg = registry();
    let pv = system_design(&reg);
    let judge = Judge::with_model(Scripted::new(vec![]), model(128_000), settings(1));
    let err = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("script exhausted"), "{err}");
}

#[tokio::test]
async fn offline_judge_is_labelled_and_needs_review() {
    let reg = registry();
    let pv = system_design(&reg);
    let judge = Judge::offline(settings(1));
    let sub = submission(Stage::SystemDesign, TRANSCRIPT);
    let a = judge.grade(&sub, pv).await.unwrap();
    let b = judge.grade(&sub, pv).await.unwrap();
    assert_eq!(a.judge.model, "offline");
    assert!(a.needs_review);
    assert!(a.notice.contains("offline"));
    assert_eq!(a.usage.cost_usd, 0.0);
    assert_eq!(a.dropped_quotes, 0, "offline evidence is verbatim");
    let scores =
        |r: &grader::domain::GradeReport| r.scores.iter().map(|s| s.score).collect::<Vec<_>>();
    assert_eq!(scores(&a), scores(&b));
}

#[tokio::test]
async fn a_prompt_for_another_stage_is_refused() {
    let reg = registry();
    let pv = reg.for_stage(Stage::DeepDive).unwrap();
    let judge = Judge::offline(settings(1));
    let err = judge
        .grade(&submission(Stage::SystemDesign, TRANSCRIPT), pv)
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::StageMismatch { .. }), "{err}");
}

/// An in-memory cache, standing in for the store-backed L2 in these pure tests.
#[derive(Default)]
struct MemCache(Mutex<std::collections::HashMap<String, grader::cache::CachedJudgment>>);

#[async_trait]
impl grader::cache::JudgmentCache for MemCache {
    async fn get(&self, key: &str) -> Option<grader::cache::CachedJudgment> {
        self.0.lock().unwrap().get(key).cloned()
    }
    async fn put(&self, key: &str, _prompt: &str, value: &grader::cache::CachedJudgment) {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_string(), value.clone());
    }
}

#[tokio::test]
async fn a_repeated_grading_is_served_from_the_cache_and_a_new_input_misses() {
    let reg = registry();
    let pv = system_design(&reg);
    let good = judgment(&pv.file, |_| 3, "hybrid search");
    let provider = Scripted::new(vec![json(&good), json(&good)]);
    let cache = Arc::new(MemCache::default());
    let judge =
        Judge::with_model(provider.clone(), model(128_000), settings(1)).with_cache(cache.clone());
    let sub = submission(Stage::SystemDesign, TRANSCRIPT);
    let first = judge.grade(&sub, pv).await.unwrap();
    assert!(!first.judge.cached);
    let second = judge.grade(&sub, pv).await.unwrap();
    assert_eq!(
        provider.requests().len(),
        1,
        "the repeat made no provider call"
    );
    assert!(second.judge.cached);
    assert_eq!(second.judge.cache, grader::domain::CacheStatus::Hit);
    assert_eq!(second.usage.cost_usd, 0.0);
    assert_eq!(
        first.scores.iter().map(|s| s.score).collect::<Vec<_>>(),
        second.scores.iter().map(|s| s.score).collect::<Vec<_>>()
    );
    // Any change to the input is a different key.
    let other = submission(Stage::SystemDesign, &TRANSCRIPT.replace("10,000", "20,000"));
    judge.grade(&other, pv).await.unwrap();
    assert_eq!(provider.requests().len(), 2);
    // Invalid output is never cached: an unscored grading is retried next time.
    let bad_provider = Scripted::new(vec!["x".into(), "y".into(), json(&good)]);
    let judge2 = Judge::with_model(bad_provider.clone(), model(128_000), settings(1))
        .with_cache(Arc::new(MemCache::default()));
    let unscored = judge2.grade(&sub, pv).await.unwrap();
    assert_eq!(unscored.status, ReportStatus::Unscored);
    let retried = judge2.grade(&sub, pv).await.unwrap();
    assert_eq!(retried.status, ReportStatus::Scored);
    assert_eq!(bad_provider.requests().len(), 3);
}
