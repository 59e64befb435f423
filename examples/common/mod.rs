//! What the benchmark examples share: the repository root, the percentile of a sorted
//! sample, the process's memory from `/proc/self/status`, and the model entry benchmarks
//! grade with. Included by each example as `#[path = "common/mod.rs"] mod common;` (cargo
//! builds only `examples/*.rs` and `examples/*/main.rs` as examples, so not this file alone).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use grader::llm::{ModelConfig, Prices};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The nearest-rank percentile `p` (0..=1) of an ascending sample; zero when it is empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A `/proc/self/status` field in KiB (`VmRSS:` now, `VmHWM:` the peak); NaN if unreadable.
pub fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

pub fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// gpt-4o-mini's prices and limits, no retries (a benchmark measures one attempt), at
/// `base_url` (`None`: the provider's default).
pub fn bench_model(base_url: Option<&str>) -> ModelConfig {
    ModelConfig {
        name: "bench".into(),
        model: "gpt-4o-mini".into(),
        base_url: base_url.map(str::to_string),
        api_key_env: None,
        prices: Prices {
            input_per_mtok: 0.15,
            cached_input_per_mtok: 0.075,
            output_per_mtok: 0.6,
        },
        context_window: 128_000,
        max_output_tokens: 2_000,
        tokenizer: None,
        timeout_secs: 60,
        max_retries: 0,
        rpm: None,
        tpm: None,
    }
}
