//! Small throughput benchmarks, each the median of 5 timed runs after a warm-up:
//!
//! * token counting (`llm::bpe` through `llm::tokens`, o200k_base and cl100k_base) on the
//!   shipped 11 KB transcript: tokens/s and MB/s;
//! * metrics: recording one HTTP request (`service::Metrics::record_request`) and rendering
//!   `/metrics` (service metrics + judge metrics, as the handler does) with realistic label
//!   cardinality;
//! * the per-grading input work before any model call, for reading the grading figures:
//!   `ingest::parse` and `guard::protect` (PII redaction + injection scan) of the same file.
//!
//! ```text
//! cargo run --release --example micro_bench
//! ```

use std::time::{Duration, Instant};

use grader::domain::{Stage, Submission};
use grader::ingest::{self, Limits};
use grader::llm::tokens::{count_tokens, Encoding};

/// Median over 5 runs of `iters` calls of `f`: time per call.
fn median_per_call(iters: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters.div_ceil(10) {
        f();
    }
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..iters {
                f();
            }
            t0.elapsed() / iters
        })
        .collect();
    runs.sort();
    runs[2]
}

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/transcripts/system_design_strong.txt");
    let text = std::fs::read_to_string(&path).expect("sample transcript");
    let bytes = text.len() as f64;
    println!(
        "micro_bench: medians of 5 runs; input {} ({} bytes)\n",
        path.display(),
        text.len()
    );
    println!("| what | per call | throughput |");
    println!("| --- | ---: | ---: |");
    for (name, enc) in [
        ("o200k_base", Encoding::O200kBase),
        ("cl100k_base", Encoding::Cl100kBase),
    ] {
        let tokens = count_tokens(enc, &text);
        let per = median_per_call(200, || {
            std::hint::black_box(count_tokens(enc, std::hint::black_box(&text)));
        });
        let s = per.as_secs_f64();
        println!(
            "| count_tokens {name} (11 KB → {tokens} tokens) | {:.0} µs | {:.2} M tokens/s, {:.1} MB/s |",
            s * 1e6,
            tokens as f64 / s / 1e6,
            bytes / s / 1e6
        );
    }

    let metrics = grader::service::Metrics::new();
    let routes = [
        "/v1/grade",
        "/v1/submissions",
        "/v1/submissions/{id}",
        "/v1/webhooks/{tenant}/{source}",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    let statuses = [200u16, 202, 400, 401, 404, 500];
    let mut i = 0usize;
    let per = median_per_call(1_000_000, || {
        i = i.wrapping_add(1);
        metrics.record_request(
            "POST",
            routes[i % routes.len()],
            statuses[i % statuses.len()],
            Duration::from_micros((i % 5_000) as u64),
        );
    });
    println!(
        "| record one request (7 routes × 6 statuses) | {:.0} ns | {:.1} M requests/s |",
        per.as_secs_f64() * 1e9,
        1.0 / per.as_secs_f64() / 1e6
    );
    for (i, source) in ["greenhouse", "lever", "ashby", "standard", "api"]
        .iter()
        .enumerate()
    {
        metrics.record_enqueued(source, i % 2 == 0);
    }
    let judge = grader::metrics::global();
    for model in ["gpt-4o-mini", "gpt-4o"] {
        judge.provider_call(model, "ok", Duration::from_millis(800));
        judge.usage(model, 4_000, 500, 1_000, 0.002);
    }
    let rendered = format!("{}{}", metrics.render(), grader::metrics::render());
    let per = median_per_call(2_000, || {
        let page = format!("{}{}", metrics.render(), grader::metrics::render());
        std::hint::black_box(page);
    });
    println!(
        "| render /metrics ({} lines, {} bytes) | {:.1} µs | {:.0} renders/s |",
        rendered.lines().count(),
        rendered.len(),
        per.as_secs_f64() * 1e6,
        1.0 / per.as_secs_f64()
    );

    let limits = Limits::default();
    let per = median_per_call(200, || {
        std::hint::black_box(ingest::parse(text.as_bytes(), None, &limits).expect("parse"));
    });
    println!(
        "| ingest::parse (11 KB) | {:.0} µs | {:.1} MB/s |",
        per.as_secs_f64() * 1e6,
        bytes / per.as_secs_f64() / 1e6
    );
    let sub = Submission {
        tenant: "bench".into(),
        stage: Stage::SystemDesign,
        question: None,
        transcript: ingest::parse(text.as_bytes(), None, &limits).expect("parse"),
        candidate: None,
        external_id: None,
        metadata: serde_json::Value::Null,
    };
    let per = median_per_call(200, || {
        std::hint::black_box(grader::guard::protect(&sub).expect("guard"));
    });
    println!(
        "| guard::protect (redact + injection scan, 11 KB) | {:.0} µs | {:.1} MB/s |",
        per.as_secs_f64() * 1e6,
        bytes / per.as_secs_f64() / 1e6
    );
    let (redacted, _) = grader::guard::redact_submission(&sub).expect("redact");
    let per = median_per_call(200, || {
        std::hint::black_box(grader::guard::injection::detect(&redacted.transcript).expect("scan"));
    });
    println!(
        "| guard::injection::detect alone (11 KB) | {:.0} µs | {:.1} MB/s |",
        per.as_secs_f64() * 1e6,
        bytes / per.as_secs_f64() / 1e6
    );
}
