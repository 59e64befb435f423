//! Ingest-only timing (temporary helper bench).
use std::time::Instant;
use grader::ingest::{self, Limits};
fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "examples/transcripts/system_design_strong.txt".into());
    let iters: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let text = std::fs::read(&path).expect("read");
    let limits = Limits::default();
    for _ in 0..200 { std::hint::black_box(ingest::parse(&text, None, &limits).expect("parse")); }
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..iters { std::hint::black_box(ingest::parse(std::hint::black_box(&text), None, &limits).expect("parse")); }
        runs.push(t0.elapsed().as_secs_f64() / iters as f64 * 1e6);
    }
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("ingest::parse {} : median {:.1} us (min {:.1})", path, runs[2], runs[0]);
}
