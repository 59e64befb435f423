//! Gradings per second and added latency through the REAL provider path: `Judge` →
//! router → retry → `llm::openai` (async-openai over reqwest) → HTTP on loopback → a minimal
//! OpenAI-compatible responder (axum, its own thread and runtime) that answers at once with a
//! fixed valid judgment. Unlike `judge_bench` (an in-process provider), every grading here
//! pays request serialization, the HTTP round trip and response parsing, as in production.
//!
//! ```text
//! cargo run --release --example bench_grading                  # miss/hit table (2,000 per row, 8 concurrent)
//! cargo run --release --example bench_grading -- table 5000 16
//! cargo run --release --example bench_grading -- promptfoo     # 500 written answers of ~400 words
//! cargo run --release --example bench_grading -- inflight 1000 2000 [LIMIT] [SAMPLES]  # 1,000 gradings held 2 s each
//! ```
//!
//! `promptfoo` is the issue's comparison workload (promptfoo's llm-rubric grading 500 answers of
//! ~400 words against a zero-latency stand-in: 9.0 s wall, 296 MB peak RSS): 500 distinct
//! written answers of ≈ 400 words, 4 at a time (promptfoo's default concurrency), one sample
//! each, cache on. Run it under `/usr/bin/time -v` for the wall time and peak RSS of the whole
//! process. `inflight` starts N distinct gradings at once against a responder that holds every
//! answer DELAY_MS, and reports the resident set while all N are in flight.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use common::{bench_model, mib, percentile, root, status_kib};
use grader::cache::TieredSettings;
use grader::domain::{Stage, Submission};
use grader::ingest::{self, Limits};
use grader::judge::pipeline::{Judge, JudgeSettings};
use grader::llm::openai::OpenAiProvider;
use grader::prompts::{PromptVersion, Registry};
use serde_json::json;

/// A `chat.completion` body carrying `content`, serialized once.
fn completion_body(content: &str) -> Bytes {
    Bytes::from(
        json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_764_000_000u64,
            "model": "gpt-4o-mini",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 4000, "completion_tokens": 500, "total_tokens": 4500}
        })
        .to_string(),
    )
}

/// The responder: `POST /v1/chat/completions` answers `body` after `delay` (zero: at once).
/// Runs on its own OS thread with a current-thread runtime, so it shares no scheduler with
/// the judge; returns its base URL.
fn start_responder(body: Bytes, delay: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("responder runtime");
        rt.block_on(async move {
            let app = Router::new().route(
                "/v1/chat/completions",
                post(move |_req: Bytes| {
                    let body = body.clone();
                    async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        ([("content-type", "application/json")], body)
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("responder address");
    format!("http://{addr}/v1")
}

/// A judgment valid for `pv`'s rubric, quoting `quote` (which the input must contain).
fn judgment(pv: &PromptVersion, quote: &str) -> String {
    json!({
        "scores": pv.file.dimensions.iter().map(|d| json!({
            "dimension": d.id, "score": d.scale.max - 1, "rationale": "bench rationale",
            "evidence": [quote]
        })).collect::<Vec<_>>(),
        "flags": [],
        "summary": "bench"
    })
    .to_string()
}

fn judge_for(base_url: &str, cached: bool) -> Arc<Judge> {
    judge_with_samples(base_url, cached, 1)
}

fn judge_with_samples(base_url: &str, cached: bool, samples: u32) -> Arc<Judge> {
    let provider =
        OpenAiProvider::new(base_url, Some("sk-bench"), Duration::from_secs(60)).expect("provider");
    let settings = JudgeSettings {
        samples,
        temperature: if samples > 1 { 0.7 } else { 0.0 },
        ..JudgeSettings::default()
    };
    let judge = Judge::with_model(Arc::new(provider), bench_model(Some(base_url)), settings);
    Arc::new(if cached {
        judge.with_memory_cache(TieredSettings::default())
    } else {
        judge.without_cache()
    })
}

/// `n` gradings, `concurrency` at a time; `vary(i)` makes input i (distinct = cache misses).
async fn run(
    judge: &Arc<Judge>,
    pv: &Arc<PromptVersion>,
    n: usize,
    concurrency: usize,
    vary: Arc<dyn Fn(usize) -> Submission + Send + Sync>,
) -> (Duration, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (judge, pv, vary, next) = (judge.clone(), pv.clone(), vary.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let sub = vary(i);
                    let t0 = Instant::now();
                    let report = judge.grade(&sub, &pv).await.expect("grading");
                    lat.push(t0.elapsed());
                    assert_eq!(
                        report.status,
                        grader::domain::ReportStatus::Scored,
                        "a valid judgment"
                    );
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let wall = started.elapsed();
    lat.sort_unstable();
    (wall, lat)
}

fn row(label: &str, wall: Duration, lat: &[Duration]) {
    println!(
        "| {label} | {} | {:.0} | {:.0} µs | {:.0} µs |",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(lat, 0.5).as_secs_f64() * 1e6,
        percentile(lat, 0.99).as_secs_f64() * 1e6,
    );
}

fn system_design() -> (Arc<PromptVersion>, Submission, String) {
    let reg = Registry::load(&root().join("prompts")).expect("prompts");
    let pv = Arc::new(
        reg.for_stage(Stage::SystemDesign)
            .expect("system_design prompt")
            .clone(),
    );
    let bytes = std::fs::read(root().join("examples/transcripts/system_design_strong.txt"))
        .expect("sample transcript");
    let transcript = ingest::parse(&bytes, None, &Limits::default()).expect("parse");
    let quote: String = transcript
        .text
        .split("Candidate: ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect();
    let sub = Submission {
        tenant: "bench".into(),
        stage: Stage::SystemDesign,
        question: None,
        transcript,
        candidate: None,
        external_id: None,
        metadata: serde_json::Value::Null,
    };
    (pv, sub, quote)
}

/// The miss/hit table through HTTP, plus the bare HTTP round trip for reference.
async fn table(n: usize, concurrency: usize) {
    let (pv, base, quote) = system_design();
    let url = start_responder(completion_body(&judgment(&pv, &quote)), Duration::ZERO);
    let cached = judge_for(&url, true);
    let uncached = judge_for(&url, false);
    let distinct = |offset: usize| -> Arc<dyn Fn(usize) -> Submission + Send + Sync> {
        let base = base.clone();
        Arc::new(move |i| {
            let mut s = base.clone();
            s.transcript.text.push_str(&format!(
                "\nInterviewer: Thanks, that is all ({}).\n",
                offset + i
            ));
            s
        })
    };
    let same: Arc<dyn Fn(usize) -> Submission + Send + Sync> = {
        let base = base.clone();
        Arc::new(move |_| base.clone())
    };
    println!(
        "grader bench_grading: {n} gradings per row, {} KB transcript (system_design), one sample, \
         OpenAI-compatible responder on loopback answering at once; judge on a 2-thread runtime\n",
        base.transcript.text.len() / 1024
    );
    // Warm-up: connections, BPE tables, templates, allocator.
    run(&cached, &pv, 200, concurrency, distinct(50_000_000)).await;
    run(&cached, &pv, 1, 1, same.clone()).await;

    // What the transport alone costs: the same request body, posted with reqwest.
    let client = reqwest::Client::new();
    let probe_body = {
        let msgs = json!([{"role": "user", "content": base.transcript.text}]);
        json!({"model": "gpt-4o-mini", "messages": msgs}).to_string()
    };
    let mut rt_lat = Vec::new();
    let t0 = Instant::now();
    for _ in 0..n.min(2000) {
        let t = Instant::now();
        let r = client
            .post(format!("{url}/chat/completions"))
            .header("content-type", "application/json")
            .body(probe_body.clone())
            .send()
            .await
            .expect("post");
        let _ = r.bytes().await.expect("body");
        rt_lat.push(t.elapsed());
    }
    let rt_wall = t0.elapsed();
    rt_lat.sort_unstable();

    println!("| path | gradings | gradings/s | p50 latency | p99 latency |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row(
        "HTTP round trip only (no judge), sequential",
        rt_wall,
        &rt_lat,
    );
    let (w, l) = run(&uncached, &pv, n, 1, distinct(0)).await;
    row("no cache, sequential", w, &l);
    let (w, l) = run(&cached, &pv, n, 1, distinct(1_000_000)).await;
    row("cache miss, sequential", w, &l);
    let (w, l) = run(&cached, &pv, n, 1, same.clone()).await;
    row("cache hit, sequential", w, &l);
    let (w, l) = run(&cached, &pv, n, concurrency, distinct(2_000_000)).await;
    row(&format!("cache miss, {concurrency} concurrent"), w, &l);
    let (w, l) = run(&cached, &pv, n, concurrency, same).await;
    row(&format!("cache hit, {concurrency} concurrent"), w, &l);
    println!("\npeak RSS: {:.1} MiB", mib(status_kib("VmHWM:")));
}

/// ≈ 400 words of a written answer, distinct per `i`.
fn answer_text(i: usize) -> String {
    let sentences = [
        "I would start from the failure modes users actually see, not from the model.",
        "Retrieval quality is measured with recall at k on a labelled query set that we refresh every month.",
        "Faithfulness is judged by a model we calibrate against human grades before trusting it.",
        "Every prompt change runs against a golden regression set in continuous integration.",
        "Latency and cost per answer are tracked per tenant, with budgets that alert before they bite.",
        "When the retriever misses, the answer should say so instead of guessing.",
        "We log traces for each request so that a bad answer can be replayed end to end.",
        "Chunking follows the document structure, with headings kept as context for each chunk.",
        "Hybrid search combines BM25 with dense vectors, and a cross-encoder re-ranks the top fifty.",
        "Evaluation sets include adversarial queries and prompt injection attempts from real tickets.",
    ];
    let mut s = format!("Answer {i}. ");
    let mut words = 2;
    let mut k = i;
    while words < 400 {
        let sentence = sentences[k % sentences.len()];
        s.push_str(sentence);
        s.push(' ');
        words += sentence.split_whitespace().count();
        k = k.wrapping_mul(31).wrapping_add(7);
    }
    s
}

fn written(i: usize, limits: &Limits) -> Submission {
    Submission {
        tenant: "bench".into(),
        stage: Stage::WrittenAnswer,
        question: Some(
            "How would you make a retrieval-augmented assistant reliable in production?".into(),
        ),
        transcript: ingest::written_answer(&answer_text(i), limits).expect("answer"),
        candidate: None,
        external_id: None,
        metadata: serde_json::Value::Null,
    }
}

/// The issue's promptfoo comparison: 500 answers of ~400 words, 4 at a time.
async fn promptfoo(n: usize, concurrency: usize) {
    let started = Instant::now();
    let reg = Registry::load(&root().join("prompts")).expect("prompts");
    let pv = Arc::new(
        reg.for_stage(Stage::WrittenAnswer)
            .expect("written_answer prompt")
            .clone(),
    );
    let url = start_responder(
        completion_body(&judgment(&pv, "I would start from the failure modes")),
        Duration::ZERO,
    );
    let judge = judge_for(&url, true);
    let limits = Limits::default();
    let words = answer_text(0).split_whitespace().count();
    let vary: Arc<dyn Fn(usize) -> Submission + Send + Sync> =
        Arc::new(move |i| written(i, &limits));
    let (wall, lat) = run(&judge, &pv, n, concurrency, vary).await;
    println!(
        "promptfoo workload: {n} written answers of ≈ {words} words, {concurrency} at a time: \
         gradings {:.2} s ({:.0}/s, p50 {:.0} µs, p99 {:.0} µs); process {:.2} s including \
         start-up; peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        started.elapsed().as_secs_f64(),
        mib(status_kib("VmHWM:")),
    );
}

/// The responder as a child process (`bench_grading responder DELAY_MS`), so the resident set
/// measured is the judge's alone; prints its base URL on stdout.
fn spawn_responder(delay: Duration) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .args(["responder", &delay.as_millis().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the responder");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("responder address");
    (child, line.trim().to_string())
}

/// Child-process mode: serve the system-design judgment after `delay` until killed.
fn responder(delay: Duration) {
    let (pv, _, quote) = system_design();
    let url = start_responder(completion_body(&judgment(&pv, &quote)), delay);
    println!("{url}");
    loop {
        std::thread::park();
    }
}

/// N distinct gradings submitted at once, each answer held `delay` by the responder; at most
/// `limit` run at once (`judge.max_in_flight`; 0 = no limit), the rest wait for a permit.
async fn inflight(n: usize, delay: Duration, limit: usize, samples: u32) {
    let (pv, base, _) = system_design();
    let (mut child, url) = spawn_responder(delay);
    let judge = Arc::new(
        Arc::try_unwrap(judge_with_samples(&url, true, samples))
            .unwrap_or_else(|_| unreachable!("a fresh judge has one owner"))
            .with_max_in_flight(limit),
    );
    // Warm-up (one grading) so the baseline holds the BPE tables and compiled templates.
    let mut warm = base.clone();
    warm.transcript.text.push_str("\nInterviewer: warm-up.\n");
    judge.grade(&warm, &pv).await.expect("warm-up");
    let before = status_kib("VmRSS:");
    let vary: Arc<dyn Fn(usize) -> Submission + Send + Sync> = {
        let base = base.clone();
        Arc::new(move |i| {
            let mut s = base.clone();
            s.transcript
                .text
                .push_str(&format!("\nInterviewer: Thanks, that is all ({i}).\n"));
            // Sized exactly, as a submission deserialized from a request or a row is: the
            // caller's copy should not carry push_str's doubled capacity into the figure.
            s.transcript.text.shrink_to_fit();
            s
        })
    };
    let (wall, lat) = run(&judge, &pv, n, n, vary).await;
    let peak = status_kib("VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{n} gradings submitted at once, {samples} sample(s) each, at most {} provider calls in \
         flight (max_in_flight) ({} KB transcripts, answers held {} ms, responder in another \
         process): all done in {:.2} s (latency min {:.0} ms, max {:.0} ms); RSS before \
         {:.1} MiB, peak {:.1} MiB (+{:.1} MiB, {:.1} KiB per in-flight grading)",
        if limit == 0 {
            n * samples as usize
        } else {
            limit.min(n * samples as usize)
        },
        base.transcript.text.len() / 1024,
        delay.as_millis(),
        wall.as_secs_f64(),
        lat.first().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        mib(before),
        mib(peak),
        mib(peak - before),
        (peak - before) / n as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| {
        args.get(i)
            .and_then(|a| a.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        None | Some("table") => runtime.block_on(table(num(1, 2000).max(10), num(2, 8).max(1))),
        Some("promptfoo") => runtime.block_on(promptfoo(num(1, 500).max(1), num(2, 4).max(1))),
        Some("inflight") => runtime.block_on(inflight(
            num(1, 1000).max(1),
            Duration::from_millis(num(2, 2000) as u64),
            num(3, grader::config::Config::default().judge.max_in_flight),
            num(4, 1) as u32,
        )),
        Some("responder") => responder(Duration::from_millis(num(1, 0) as u64)),
        Some(other) => {
            eprintln!("usage: bench_grading [table [N] [CONCURRENCY] | promptfoo [N] [CONCURRENCY] | inflight [N] [DELAY_MS] [MAX_IN_FLIGHT] [SAMPLES]] (got {other})");
            std::process::exit(2);
        }
    }
}
