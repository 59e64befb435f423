//! The cascade against always-strong, through the real `Judge` (routing, escalation rules,
//! aggregation), over synthetic items with known true scores and two stand-in judges of
//! known noise.
//!
//!     cargo run --release --example cascade_sim [ITEMS] [hetero|homo] [SEED] ['RULE; LINES']
//!
//! Without a rule it sweeps a few escalation rules; a rule is `[routes.default]` lines
//! separated by `;`, e.g. `'escalate_spread = 3; escalate_min_dimensions = 2'`.
//!
//! Items: the system_design rubric (7 dimensions, one on 1-4, six on 1-5). Each item has a
//! latent ability (true scores cluster around it) and a difficulty h in [0, 1), most items
//! easy (h = u^2). The judges score every dimension as round(true + error), clamped:
//!
//! * strong (gpt-4o prices): error ~ N(0, 0.35 + 0.25 h) per sample.
//! * cheap (gpt-4o-mini prices), `hetero` (default): error = shared + own, where
//!   shared ~ N(0, 0.5 h) is the same for all of an item's cheap samples (a consistent
//!   misreading that self-agreement cannot detect) and own ~ N(0, 0.25 + 1.5 h) per sample.
//!   LLM judges are reliable on clear-cut answers and erratic on ambiguous ones.
//! * cheap, `homo`: error ~ N(0, 0.8) per sample whatever the item (a uniformly noisy judge).
//!
//! Always-strong: one strong sample per item. Cascade: 3 cheap samples, escalate to one
//! strong sample when the rule fires (default: any dimension's cheap samples span >= 2).
//! Every call is billed 3,000 prompt + 400 completion tokens (no provider prefix caching in
//! either arm). QWK is against the true scores, per dimension, then averaged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use grader::calibration::{weighted_kappa, KappaWeights};
use grader::config::Config;
use grader::domain::{Stage, Submission};
use grader::ingest::{self, Limits};
use grader::judge::pipeline::{Judge, JudgeSettings};
use grader::llm::router::Router;
use grader::llm::{ChatRequest, ChatResponse, LlmError, ModelConfig, Provider, TokenUsage};
use grader::metrics::JudgeMetrics;
use grader::prompts::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(Clone, Copy, PartialEq)]
enum Noise {
    Hetero,
    Homo,
}

struct Item {
    truth: Vec<i64>,
    difficulty: f64,
}

/// Standard normal by Box-Muller (no distributions crate needed for one function).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A stand-in judge: parses the item number from the data block, draws its error from a
/// generator seeded by (item, judge, sample), so reruns are identical.
struct SimJudge {
    strong: bool,
    noise: Noise,
    items: Arc<Vec<Item>>,
    scales: Vec<(i64, i64)>,
    dims: Vec<String>,
    seed: u64,
    calls: AtomicUsize,
}

#[async_trait]
impl Provider for SimJudge {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let user = request.messages.last().map(|m| &*m.content).unwrap_or("");
        let n: usize = user
            .split("item number ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| LlmError::BadResponse("no item number".into()))?;
        let item = &self.items[n];
        let sample = request.seed.unwrap_or(0) as u64;
        let h = item.difficulty;
        let mut shared_rng = StdRng::seed_from_u64(self.seed ^ (n as u64 * 7919) ^ 0xC0FFEE);
        let mut own_rng = StdRng::seed_from_u64(
            self.seed ^ (n as u64 * 104_729) ^ (sample * 31) ^ if self.strong { 0xAB } else { 0 },
        );
        let scores: Vec<_> = self
            .dims
            .iter()
            .enumerate()
            .map(|(d, id)| {
                let (lo, hi) = self.scales[d];
                let error = if self.strong {
                    normal(&mut own_rng) * (0.35 + 0.25 * h)
                } else {
                    match self.noise {
                        Noise::Hetero => {
                            normal(&mut shared_rng) * 0.5 * h
                                + normal(&mut own_rng) * (0.25 + 1.5 * h)
                        }
                        Noise::Homo => normal(&mut own_rng) * 0.8,
                    }
                };
                let s = ((item.truth[d] as f64) + error).round() as i64;
                json!({"dimension": id, "score": s.clamp(lo, hi), "rationale": "sim",
                       "evidence": ["hybrid search"]})
            })
            .collect();
        Ok(ChatResponse {
            content: json!({"scores": scores, "flags": [], "summary": "sim"}).to_string(),
            model: request.model.clone(),
            usage: TokenUsage {
                prompt_tokens: 3000,
                completion_tokens: 400,
                cached_tokens: 0,
            },
        })
    }
}

const MODELS: &str = r#"
[judge]
temperature = 0.7
seed = 0
max_repairs = 0

[[models]]
name = "mini"
model = "gpt-4o-mini"
max_retries = 0
prices = { input_per_mtok = 0.15, cached_input_per_mtok = 0.075, output_per_mtok = 0.60 }

[[models]]
name = "4o"
model = "gpt-4o"
max_retries = 0
prices = { input_per_mtok = 2.50, cached_input_per_mtok = 1.25, output_per_mtok = 10.00 }
"#;

struct Arm {
    name: &'static str,
    qwk: Vec<f64>,
    cost: f64,
    escalated: usize,
    cheap_calls: usize,
    strong_calls: usize,
}

async fn run_arm(
    name: &'static str,
    routes: &str,
    items: &Arc<Vec<Item>>,
    noise: Noise,
    seed: u64,
) -> Arm {
    let reg = Registry::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/prompts"
    )))
    .expect("prompts");
    let pv = reg
        .for_stage(Stage::SystemDesign)
        .expect("system_design prompt");
    let dims: Vec<String> = pv.file.dimensions.iter().map(|d| d.id.clone()).collect();
    let scales: Vec<(i64, i64)> = pv
        .file
        .dimensions
        .iter()
        .map(|d| (i64::from(d.scale.min), i64::from(d.scale.max)))
        .collect();
    let cfg =
        Config::from_sources(None, Some(&format!("{MODELS}{routes}")), &|_| None).expect("config");
    let judges: HashMap<&str, Arc<SimJudge>> = [("mini", false), ("4o", true)]
        .into_iter()
        .map(|(n, strong)| {
            (
                n,
                Arc::new(SimJudge {
                    strong,
                    noise,
                    items: items.clone(),
                    scales: scales.clone(),
                    dims: dims.clone(),
                    seed,
                    calls: AtomicUsize::new(0),
                }),
            )
        })
        .collect();
    let router = Router::from_config(
        &cfg,
        &|m: &ModelConfig| {
            judges
                .get(m.name.as_str())
                .map(|j| j.clone() as Arc<dyn Provider>)
                .ok_or_else(|| m.name.clone())
        },
        Arc::new(JudgeMetrics::new()),
    )
    .expect("router")
    .expect("a model");
    let judge = Judge::with_router(router, JudgeSettings::from_config(&cfg, cfg.judge_model()))
        .without_cache();
    let mut predicted: Vec<Vec<f64>> = vec![Vec::new(); dims.len()];
    let mut truth: Vec<Vec<f64>> = vec![Vec::new(); dims.len()];
    let (mut cost, mut escalated) = (0.0, 0);
    for (n, item) in items.iter().enumerate() {
        let text = format!(
            "Interviewer: Walk me through item number {n}.\nCandidate: I used hybrid search with a re-ranker.\n"
        );
        let sub = Submission {
            tenant: "sim".into(),
            stage: Stage::SystemDesign,
            question: None,
            transcript: ingest::parse(text.as_bytes(), None, &Limits::default()).expect("parse"),
            candidate: None,
            external_id: None,
            metadata: serde_json::Value::Null,
        };
        let report = judge.grade(&sub, pv).await.expect("grading");
        cost += report.usage.cost_usd;
        escalated += usize::from(report.judge.escalated);
        for (d, s) in report.scores.iter().enumerate() {
            if let Some(v) = s.score {
                predicted[d].push(v);
                truth[d].push(item.truth[d] as f64);
            }
        }
    }
    let qwk = (0..dims.len())
        .map(|d| {
            weighted_kappa(&predicted[d], &truth[d], scales[d], KappaWeights::Quadratic)
                .ok()
                .flatten()
                .unwrap_or(f64::NAN)
        })
        .collect();
    Arm {
        name,
        qwk,
        cost,
        escalated,
        cheap_calls: judges["mini"].calls.load(Ordering::Relaxed),
        strong_calls: judges["4o"].calls.load(Ordering::Relaxed),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000)
        .max(10);
    let noise = match args.next().as_deref() {
        Some("homo") => Noise::Homo,
        _ => Noise::Hetero,
    };
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let rule = args.next().unwrap_or_default().replace(';', "\n");
    let mut rng = StdRng::seed_from_u64(seed);
    let scales = [(1, 4), (1, 5), (1, 5), (1, 5), (1, 5), (1, 5), (1, 5)];
    let items: Arc<Vec<Item>> = Arc::new(
        (0..n)
            .map(|_| {
                let ability: f64 = rng.random();
                let u: f64 = rng.random();
                let truth = scales
                    .iter()
                    .map(|&(lo, hi)| {
                        let centre = lo as f64 + ability * (hi - lo) as f64;
                        ((centre + normal(&mut rng) * 0.6).round() as i64).clamp(lo, hi)
                    })
                    .collect();
                Item {
                    truth,
                    difficulty: u * u,
                }
            })
            .collect(),
    );
    let started = std::time::Instant::now();
    let strong = run_arm(
        "always strong (1 x gpt-4o)",
        "[routes.default]\ncheap = \"4o\"\ncheap_samples = 1\n",
        &items,
        noise,
        seed,
    )
    .await;
    let cheap = run_arm(
        "always cheap (3 x gpt-4o-mini, median)",
        "[routes.default]\ncheap = \"mini\"\ncheap_samples = 3\n",
        &items,
        noise,
        seed,
    )
    .await;
    // The rule(s) to compare: the argument (`;` separates config lines), or a sweep.
    let rules: Vec<String> = if rule.trim().is_empty() {
        [
            "",
            "escalate_min_dimensions = 3",
            "escalate_min_dimensions = 4",
            "escalate_min_dimensions = 5",
            "escalate_spread = 3",
            "escalate_spread = 3\nescalate_min_dimensions = 2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        vec![rule]
    };
    let mut cascades = Vec::new();
    for r in &rules {
        let name: &'static str = Box::leak(
            format!("cascade: 3 x mini, escalate to 1 x 4o when {}", describe(r)).into_boxed_str(),
        );
        cascades.push(
            run_arm(
                name,
                &format!("[routes.default]\ncheap = \"mini\"\nstrong = \"4o\"\ncheap_samples = 3\nstrong_samples = 1\n{r}\n"),
                &items,
                noise,
                seed,
            )
            .await,
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{n} items, cheap noise `{}`, seed {seed}, {:.1} s\n",
        if noise == Noise::Hetero {
            "hetero"
        } else {
            "homo"
        },
        started.elapsed().as_secs_f64()
    );
    println!("| arm | mean QWK | min QWK (dimension) | cost USD | cost vs always-strong | escalated | cheap calls | strong calls |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for arm in [&strong, &cheap].into_iter().chain(cascades.iter()) {
        println!(
            "| {} | {:.3} | {:.3} | {:.4} | {:.1}% | {:.1}% | {} | {} |",
            arm.name,
            mean(&arm.qwk),
            arm.qwk.iter().cloned().fold(f64::INFINITY, f64::min),
            arm.cost,
            100.0 * arm.cost / strong.cost,
            100.0 * arm.escalated as f64 / n as f64,
            arm.cheap_calls,
            arm.strong_calls
        );
    }
    println!();
    for c in &cascades {
        let gap = mean(&c.qwk) - mean(&strong.qwk);
        let share = c.cost / strong.cost;
        println!(
            "{}: {:.1}% of always-strong's cost (target <= 40%), QWK {gap:+.3} (target >= -0.02): {}",
            c.name,
            100.0 * share,
            if share <= 0.40 && gap >= -0.02 {
                "MEETS the target"
            } else {
                "misses"
            }
        );
    }
}

/// The escalation rule in words, from its config lines.
fn describe(rule: &str) -> String {
    let get = |key: &str| {
        rule.lines().find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
        })
    };
    let spread = get("escalate_spread").unwrap_or_else(|| "2".into());
    let dims = get("escalate_min_dimensions").unwrap_or_else(|| "1".into());
    format!("spread >= {spread} on >= {dims} dimension(s)")
}
