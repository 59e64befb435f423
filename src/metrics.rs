//! Judge-side Prometheus metrics: the response cache, provider calls per model and outcome,
//! cascade escalations, fallbacks, circuit breakers, rate-limit waits, tokens and cost.
//!
//! Hand-rolled like `service::metrics` (a few maps behind mutexes and fixed-bucket
//! histograms) so no metrics crate, registry or global recorder is needed. The process-wide
//! instance is [`global`]; `GET /metrics` appends [`render`] to the service's own metrics.
//! Components take an `Arc<JudgeMetrics>` so tests can count in isolation instead of reading
//! numbers that every other test in the binary also moves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::domain::CacheStatus;

/// Upper bounds (seconds) of every latency histogram's buckets, shared by the judge's and the
/// service's metrics: from a loopback stand-in or a cached 202 (sub-millisecond) to a slow
/// multi-sample grading (minutes).
const BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// A cumulative histogram with fixed buckets; `observe` is lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the `_bucket`, `_sum` and `_count` series in the text exposition format.
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Which cache layer answered a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheLayer {
    /// The in-process moka cache.
    L1,
    /// The store's `response_cache` table (shared by replicas, survives restarts).
    L2,
}

impl CacheLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheLayer::L1 => "l1",
            CacheLayer::L2 => "l2",
        }
    }
}

/// Circuit-breaker state as a gauge value: 0 closed, 1 half-open, 2 open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerGauge {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

type Labels2 = (String, String);

/// Every judge-side number `GET /metrics` reports. Counters only grow.
#[derive(Debug, Default)]
pub struct JudgeMetrics {
    /// Sample lookups by outcome (`hit`, `miss`, `coalesced`, `bypass`) and, for hits, layer.
    cache: Mutex<BTreeMap<Labels2, u64>>,
    /// Provider attempts (one HTTP request each) by model id and outcome.
    provider_calls: Mutex<BTreeMap<Labels2, u64>>,
    /// Provider attempt latency by model id.
    provider_latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
    /// Cheap-to-strong escalations by reason kind.
    escalations: Mutex<BTreeMap<String, u64>>,
    /// Calls answered by a fallback model after the primary failed or was open: (from, to).
    fallbacks: Mutex<BTreeMap<Labels2, u64>>,
    /// Breaker state per model name.
    breaker_state: Mutex<BTreeMap<String, BreakerGauge>>,
    /// Breaker openings per model name.
    breaker_opened: Mutex<BTreeMap<String, u64>>,
    /// Tokens by model id and kind (`prompt`, `completion`, `cached`).
    tokens: Mutex<BTreeMap<Labels2, u64>>,
    /// Spend in USD by model id.
    cost: Mutex<BTreeMap<String, f64>>,
    /// Gradings degraded to the offline judge because a budget was exhausted, by scope.
    budget_degraded: Mutex<BTreeMap<String, u64>>,
    /// Time spent waiting for the client-side rate limiter.
    pub ratelimit_wait: Histogram,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K, by: u64) {
    *lock(m).entry(k).or_default() += by;
}

/// Escapes a label value per the exposition format (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl JudgeMetrics {
    pub fn new() -> JudgeMetrics {
        JudgeMetrics::default()
    }

    pub fn cache_lookup(&self, status: CacheStatus, layer: Option<CacheLayer>) {
        let s = match status {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Bypass => "bypass",
        };
        let l = layer.map(CacheLayer::as_str).unwrap_or("");
        bump(&self.cache, (s.to_string(), l.to_string()), 1);
    }

    /// How many lookups ended with `status` (any layer).
    pub fn cache_count(&self, status: &str) -> u64 {
        lock(&self.cache)
            .iter()
            .filter(|((s, _), _)| s == status)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn provider_call(&self, model: &str, outcome: &str, latency: Duration) {
        bump(
            &self.provider_calls,
            (model.to_string(), outcome.to_string()),
            1,
        );
        let h = lock(&self.provider_latency)
            .entry(model.to_string())
            .or_default()
            .clone();
        h.observe(latency);
    }

    /// Provider attempts for `model` (all outcomes).
    pub fn provider_calls(&self, model: &str) -> u64 {
        lock(&self.provider_calls)
            .iter()
            .filter(|((m, _), _)| m == model)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn escalation(&self, reason: &str) {
        bump(&self.escalations, reason.to_string(), 1);
    }

    pub fn escalations(&self) -> u64 {
        lock(&self.escalations).values().sum()
    }

    pub fn fallback(&self, from: &str, to: &str) {
        bump(&self.fallbacks, (from.to_string(), to.to_string()), 1);
    }

    pub fn fallbacks(&self) -> u64 {
        lock(&self.fallbacks).values().sum()
    }

    pub fn breaker(&self, model: &str, state: BreakerGauge) {
        let previous = lock(&self.breaker_state).insert(model.to_string(), state);
        if state == BreakerGauge::Open && previous != Some(BreakerGauge::Open) {
            bump(&self.breaker_opened, model.to_string(), 1);
        }
    }

    pub fn breaker_state(&self, model: &str) -> Option<BreakerGauge> {
        lock(&self.breaker_state).get(model).copied()
    }

    pub fn usage(&self, model: &str, prompt: u64, completion: u64, cached: u64, cost_usd: f64) {
        for (kind, n) in [
            ("prompt", prompt),
            ("completion", completion),
            ("cached", cached),
        ] {
            if n > 0 {
                bump(&self.tokens, (model.to_string(), kind.to_string()), n);
            }
        }
        if cost_usd > 0.0 {
            *lock(&self.cost).entry(model.to_string()).or_default() += cost_usd;
        }
    }

    pub fn budget_degraded(&self, scope: &str) {
        bump(&self.budget_degraded, scope.to_string(), 1);
    }

    /// The Prometheus text exposition (format 0.0.4) of every judge metric.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let header = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
        };
        header(
            &mut o,
            "grader_cache_lookups_total",
            "counter",
            "Judge sample lookups in the response cache by result (hit, miss, coalesced, bypass) and answering layer.",
        );
        for ((status, layer), n) in lock(&self.cache).iter() {
            let _ = writeln!(
                o,
                "grader_cache_lookups_total{{result=\"{status}\",layer=\"{layer}\"}} {n}"
            );
        }
        header(
            &mut o,
            "grader_provider_calls_total",
            "counter",
            "Model provider requests (attempts) by model id and outcome.",
        );
        for ((model, outcome), n) in lock(&self.provider_calls).iter() {
            let _ = writeln!(
                o,
                "grader_provider_calls_total{{model=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(model)
            );
        }
        header(
            &mut o,
            "grader_provider_call_duration_seconds",
            "histogram",
            "Model provider request latency by model id.",
        );
        for (model, h) in lock(&self.provider_latency).iter() {
            h.render(
                &mut o,
                "grader_provider_call_duration_seconds",
                &format!("model=\"{}\"", esc(model)),
            );
        }
        header(
            &mut o,
            "grader_escalations_total",
            "counter",
            "Gradings escalated from the cheap to the strong tier, by reason.",
        );
        for (reason, n) in lock(&self.escalations).iter() {
            let _ = writeln!(o, "grader_escalations_total{{reason=\"{reason}\"}} {n}");
        }
        header(
            &mut o,
            "grader_fallbacks_total",
            "counter",
            "Samples answered by a fallback model after the primary failed or its breaker was open.",
        );
        for ((from, to), n) in lock(&self.fallbacks).iter() {
            let _ = writeln!(
                o,
                "grader_fallbacks_total{{from=\"{}\",to=\"{}\"}} {n}",
                esc(from),
                esc(to)
            );
        }
        header(
            &mut o,
            "grader_breaker_state",
            "gauge",
            "Circuit breaker per model: 0 closed, 1 half-open, 2 open.",
        );
        for (model, s) in lock(&self.breaker_state).iter() {
            let _ = writeln!(
                o,
                "grader_breaker_state{{model=\"{}\"}} {}",
                esc(model),
                *s as u8
            );
        }
        header(
            &mut o,
            "grader_breaker_opened_total",
            "counter",
            "Times a model's circuit breaker opened.",
        );
        for (model, n) in lock(&self.breaker_opened).iter() {
            let _ = writeln!(
                o,
                "grader_breaker_opened_total{{model=\"{}\"}} {n}",
                esc(model)
            );
        }
        header(
            &mut o,
            "grader_llm_tokens_total",
            "counter",
            "Tokens billed by model id and kind (cached is a subset of prompt).",
        );
        for ((model, kind), n) in lock(&self.tokens).iter() {
            let _ = writeln!(
                o,
                "grader_llm_tokens_total{{model=\"{}\",kind=\"{kind}\"}} {n}",
                esc(model)
            );
        }
        header(
            &mut o,
            "grader_llm_cost_usd_total",
            "counter",
            "Spend in USD by model id, from reported usage and the configured prices.",
        );
        for (model, usd) in lock(&self.cost).iter() {
            let _ = writeln!(
                o,
                "grader_llm_cost_usd_total{{model=\"{}\"}} {usd}",
                esc(model)
            );
        }
        header(
            &mut o,
            "grader_budget_degraded_total",
            "counter",
            "Gradings done by the offline judge because a budget was exhausted, by scope.",
        );
        for (scope, n) in lock(&self.budget_degraded).iter() {
            let _ = writeln!(o, "grader_budget_degraded_total{{scope=\"{scope}\"}} {n}");
        }
        header(
            &mut o,
            "grader_ratelimit_wait_seconds",
            "histogram",
            "Time provider requests waited for the client-side RPM/TPM limiter.",
        );
        self.ratelimit_wait
            .render(&mut o, "grader_ratelimit_wait_seconds", "");
        o
    }
}

/// The process-wide judge metrics, shared by every judge built without its own instance.
pub fn global() -> Arc<JudgeMetrics> {
    static GLOBAL: OnceLock<Arc<JudgeMetrics>> = OnceLock::new();
    GLOBAL.get_or_init(|| Arc::new(JudgeMetrics::new())).clone()
}

/// The global judge metrics as Prometheus text, for `GET /metrics` to append.
pub fn render() -> String {
    global().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_and_histograms() {
        let m = JudgeMetrics::new();
        m.cache_lookup(CacheStatus::Hit, Some(CacheLayer::L1));
        m.cache_lookup(CacheStatus::Coalesced, None);
        m.provider_call("gpt-4o-mini", "ok", Duration::from_millis(3));
        m.provider_call("gpt-4o-mini", "server_error", Duration::from_millis(20));
        m.escalation("disagreement");
        m.fallback("gpt-4o-mini", "llama\"3");
        m.breaker("cheap", BreakerGauge::Open);
        m.breaker("cheap", BreakerGauge::Open);
        m.usage("gpt-4o-mini", 1000, 100, 400, 0.0021);
        m.budget_degraded("tenant_daily");
        let t = m.render();
        assert!(t.contains("grader_cache_lookups_total{result=\"hit\",layer=\"l1\"} 1"));
        assert!(t.contains("grader_cache_lookups_total{result=\"coalesced\",layer=\"\"} 1"));
        assert!(t.contains(
            "grader_provider_calls_total{model=\"gpt-4o-mini\",outcome=\"server_error\"} 1"
        ));
        assert!(t.contains(
            "grader_provider_call_duration_seconds_bucket{model=\"gpt-4o-mini\",le=\"0.005\"} 1"
        ));
        assert!(t.contains("grader_provider_call_duration_seconds_count{model=\"gpt-4o-mini\"} 2"));
        assert!(t.contains("grader_fallbacks_total{from=\"gpt-4o-mini\",to=\"llama\\\"3\"} 1"));
        assert!(t.contains("grader_breaker_state{model=\"cheap\"} 2"));
        assert!(t.contains("grader_breaker_opened_total{model=\"cheap\"} 1"));
        assert!(t.contains("grader_llm_tokens_total{model=\"gpt-4o-mini\",kind=\"cached\"} 400"));
        assert!(t.contains("grader_budget_degraded_total{scope=\"tenant_daily\"} 1"));
        assert_eq!(m.provider_calls("gpt-4o-mini"), 2);
        assert_eq!(m.cache_count("hit"), 1);
    }
}
