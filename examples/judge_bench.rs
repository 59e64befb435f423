//! What the judge itself adds to a grading, with a zero-latency in-process provider: gradings
//! per second and per-grading latency on a cache miss and on a cache hit, with the L1 cache,
//! plus peak RSS; and the stable-prefix share of prompt tokens per stage over the golden sets.
//!
//!     cargo run --release --example judge_bench [GRADINGS] [CONCURRENCY]
//!
//! The provider answers instantly with a fixed valid judgment, so every microsecond measured
//! is ours: rendering, token counting, cache key, single-flight, parse, validation, evidence
//! location, aggregation, report. The transcript is the shipped 11 KB system-design sample.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{bench_model, mib, percentile, root, status_kib};
use grader::cache::TieredSettings;
use grader::domain::{Stage, Submission};
use grader::ingest::{self, Limits};
use grader::judge::pipeline::{Judge, JudgeSettings};
use grader::llm::{ChatRequest, ChatResponse, LlmError, Provider, TokenUsage};
use grader::prompts::Registry;
use serde_json::json;

/// Answers every request at once with the same valid judgment.
struct Instant0 {
    content: String,
}

#[async_trait]
impl Provider for Instant0 {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            content: self.content.clone(),
            model: request.model.clone(),
            usage: TokenUsage {
                prompt_tokens: 4000,
                completion_tokens: 500,
                cached_tokens: 0,
            },
        })
    }
}

struct Run {
    label: &'static str,
    n: usize,
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn row(&mut self) -> String {
        self.latencies.sort_unstable();
        format!(
            "| {} | {} | {:.0} | {:.0} µs | {:.0} µs |",
            self.label,
            self.n,
            self.n as f64 / self.wall.as_secs_f64(),
            percentile(&self.latencies, 0.5).as_secs_f64() * 1e6,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1e6,
        )
    }
}

/// `n` gradings, `concurrency` at a time; `distinct` makes every input different (misses).
async fn run(
    label: &'static str,
    judge: &Arc<Judge>,
    base: &Submission,
    n: usize,
    concurrency: usize,
    distinct: bool,
    offset: usize,
) -> Run {
    let reg = Arc::new(registry());
    let started = Instant::now();
    let per_task = n.div_ceil(concurrency);
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (judge, reg, base) = (judge.clone(), reg.clone(), base.clone());
            tokio::spawn(async move {
                let pv = reg.for_stage(Stage::SystemDesign).expect("prompt");
                let mut lat = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let mut sub = base.clone();
                    if distinct {
                        sub.transcript.text.push_str(&format!(
                            "\nInterviewer: Thanks, that is all ({}).\n",
                            offset + t * per_task + i
                        ));
                    }
                    let t0 = Instant::now();
                    judge.grade(&sub, pv).await.expect("grading");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    Run {
        label,
        n: latencies.len(),
        wall: started.elapsed(),
        latencies,
    }
}

fn registry() -> Registry {
    Registry::load(&root().join("prompts")).expect("prompts")
}

/// System-message tokens over prompt tokens per stage, over every golden item of the stage.
async fn prefix_shares() {
    let reg = registry();
    let judge = Judge::with_model(
        Arc::new(Instant0 {
            content: String::new(),
        }),
        bench_model(None),
        JudgeSettings::default(),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("golden"))
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let items = grader::evals::golden::load_golden(&files, &Limits::default()).expect("golden");
    println!("\n| stage | items | system tokens | prompt tokens (mean, min-max) | stable prefix share (mean, min-max) |");
    println!("| --- | --- | --- | --- | --- |");
    for stage in Stage::ALL {
        let Some(pv) = reg.for_stage(stage) else {
            continue;
        };
        let mut shares = Vec::new();
        let mut totals = Vec::new();
        let mut system = 0;
        for item in items.iter().filter(|i| i.stage == stage) {
            let d = judge
                .estimate(&item.submission, pv)
                .await
                .expect("estimate");
            system = d.system_tokens;
            totals.push(d.prompt_tokens);
            shares.push(d.stable_prefix_share);
        }
        if totals.is_empty() {
            continue;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let tf: Vec<f64> = totals.iter().map(|t| *t as f64).collect();
        println!(
            "| {stage} | {} | {system} | {:.0} ({}-{}) | {:.1}% ({:.1}-{:.1}%) |",
            totals.len(),
            mean(&tf),
            totals.iter().min().unwrap_or(&0),
            totals.iter().max().unwrap_or(&0),
            100.0 * mean(&shares),
            100.0 * shares.iter().cloned().fold(f64::INFINITY, f64::min),
            100.0 * shares.iter().cloned().fold(0.0, f64::max),
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000)
        .max(10);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let reg = registry();
        let pv = reg.for_stage(Stage::SystemDesign).expect("prompt");
        let path = root().join("examples/transcripts/system_design_strong.txt");
        let bytes = std::fs::read(Path::new(&path)).expect("sample transcript");
        let transcript = ingest::parse(&bytes, None, &Limits::default()).expect("parse");
        let quote: String = transcript
            .text
            .split("Candidate: ")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect();
        let judgment = json!({
            "scores": pv.file.dimensions.iter().map(|d| json!({
                "dimension": d.id, "score": d.scale.max - 1, "rationale": "bench rationale",
                "evidence": [quote]
            })).collect::<Vec<_>>(),
            "flags": [],
            "summary": "bench"
        })
        .to_string();
        let base = Submission {
            tenant: "bench".into(),
            stage: Stage::SystemDesign,
            question: None,
            transcript,
            candidate: None,
            external_id: None,
            metadata: serde_json::Value::Null,
        };
        let provider = Arc::new(Instant0 { content: judgment });
        let settings = JudgeSettings {
            samples: 1,
            ..JudgeSettings::default()
        };
        let cached = Arc::new(
            Judge::with_model(provider.clone(), bench_model(None), settings.clone())
                .with_memory_cache(TieredSettings::default()),
        );
        let uncached = Arc::new(
            Judge::with_model(provider.clone(), bench_model(None), settings.clone()).without_cache(),
        );
        println!(
            "grader judge bench: {n} gradings per row, {} KB transcript, zero-latency provider, 2 runtime threads\n",
            base.transcript.text.len() / 1024
        );
        println!("| path | gradings | gradings/s | p50 latency | p99 latency |");
        println!("| --- | --- | --- | --- | --- |");
        // Warm-up: BPE tables, compiled templates, allocator.
        run("warm-up", &cached, &base, 50, 1, true, 10_000_000).await;
        let mut rows = [
            run("no cache, sequential", &uncached, &base, n, 1, true, 0).await,
            run("cache miss, sequential", &cached, &base, n, 1, true, 1_000_000).await,
            run("cache hit, sequential", &cached, &base, n, 1, false, 0).await,
            run("cache miss, concurrent", &cached, &base, n, concurrency, true, 2_000_000).await,
            run("cache hit, concurrent", &cached, &base, n, concurrency, false, 0).await,
        ];
        for r in rows.iter_mut() {
            println!("{}", r.row());
        }
        if let Some((entries, bytes)) = cached.l1_usage().await {
            println!(
                "\nL1 after the runs: {entries} entries, {:.1} MiB weighed",
                bytes as f64 / (1024.0 * 1024.0)
            );
        }
        println!("peak RSS: {:.1} MiB", mib(status_kib("VmHWM:")));
        prefix_shares().await;
    });
}
