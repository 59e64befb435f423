//! Process metrics in the Prometheus text exposition format, hand-rolled: a few atomic
//! counters, one labelled counter map and two fixed-bucket histograms. A metrics crate would
//! add a registry, macros and a global recorder for what fits in this file; the HTTP layer and
//! the workers both write here, and `GET /metrics` renders it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

pub use crate::metrics::Histogram;
use std::time::Duration;

/// Every number `GET /metrics` reports. Counters only grow; `gradings_in_flight` is a gauge.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route template, status) → count. The route is the matched template
    /// (`/v1/submissions/{id}`), never the raw path, so ids cannot blow up the label space.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub request_latency: Histogram,
    /// Submissions newly stored, by source (`api`, `greenhouse`, ...).
    enqueued: Mutex<BTreeMap<String, u64>>,
    /// Redeliveries answered with an existing submission.
    pub submissions_duplicate: AtomicU64,
    pub gradings_completed: AtomicU64,
    /// Failed attempts that were re-queued with a backoff.
    pub gradings_failed: AtomicU64,
    /// Jobs dead-lettered after the last allowed attempt (or a permanent error).
    pub gradings_dead: AtomicU64,
    /// Jobs given back at shutdown without counting an attempt.
    pub gradings_released: AtomicU64,
    /// Completions refused because another worker had taken the job over.
    pub leases_lost: AtomicU64,
    pub gradings_in_flight: AtomicI64,
    /// Synchronous gradings (`POST /v1/grade`).
    pub sync_gradings: AtomicU64,
    pub grading_latency: Histogram,
    pub callbacks_delivered: AtomicU64,
    /// Callback attempts that failed (each retry counts).
    pub callback_attempts_failed: AtomicU64,
    /// Reports whose callback gave up after the last attempt.
    pub callbacks_abandoned: AtomicU64,
    /// Store errors seen by the workers' polling loop.
    pub worker_store_errors: AtomicU64,
    /// Requests refused with 429 by `http::ratelimit`, by limit (`key`, `webhook`).
    rate_limited: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking holder leaves plain counters behind: keep counting.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Escapes a label value per the exposition format (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn record_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        *lock(&self.requests)
            .entry((method.to_string(), route.to_string(), status))
            .or_insert(0) += 1;
        self.request_latency.observe(latency);
    }

    pub fn record_enqueued(&self, source: &str, created: bool) {
        if created {
            *lock(&self.enqueued).entry(source.to_string()).or_insert(0) += 1;
        } else {
            self.submissions_duplicate.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request refused by a rate limit (`key` or `webhook`).
    pub fn record_rate_limited(&self, limit: &str) {
        *lock(&self.rate_limited)
            .entry(limit.to_string())
            .or_insert(0) += 1;
    }

    /// Requests refused by the `limit` rate limit so far.
    pub fn rate_limited(&self, limit: &str) -> u64 {
        lock(&self.rate_limited).get(limit).copied().unwrap_or(0)
    }

    /// Total requests seen with this route template and status (for tests and readiness).
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        lock(&self.requests)
            .iter()
            .filter(|((_, r, s), _)| r == route && *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} counter");
            let _ = writeln!(o, "{name} {v}");
        };
        let _ = writeln!(
            o,
            "# HELP grader_http_requests_total HTTP requests by method, route template and status."
        );
        let _ = writeln!(o, "# TYPE grader_http_requests_total counter");
        for ((method, route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                o,
                "grader_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
        let _ = writeln!(
            o,
            "# HELP grader_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(o, "# TYPE grader_http_request_duration_seconds histogram");
        self.request_latency
            .render(&mut o, "grader_http_request_duration_seconds", "");

        let _ = writeln!(
            o,
            "# HELP grader_submissions_enqueued_total Submissions stored with their job, by source."
        );
        let _ = writeln!(o, "# TYPE grader_submissions_enqueued_total counter");
        for (source, n) in lock(&self.enqueued).iter() {
            let _ = writeln!(
                o,
                "grader_submissions_enqueued_total{{source=\"{}\"}} {n}",
                label(source)
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut o,
            "grader_submissions_duplicate_total",
            "Redeliveries answered with the submission already stored.",
            load(&self.submissions_duplicate),
        );
        counter(
            &mut o,
            "grader_gradings_completed_total",
            "Queued gradings stored as graded.",
            load(&self.gradings_completed),
        );
        counter(
            &mut o,
            "grader_gradings_failed_total",
            "Grading attempts that failed and were re-queued with backoff.",
            load(&self.gradings_failed),
        );
        counter(
            &mut o,
            "grader_gradings_dead_total",
            "Gradings dead-lettered.",
            load(&self.gradings_dead),
        );
        counter(
            &mut o,
            "grader_gradings_released_total",
            "Leased jobs given back at shutdown.",
            load(&self.gradings_released),
        );
        counter(
            &mut o,
            "grader_leases_lost_total",
            "Completions refused because the lease had passed to another worker.",
            load(&self.leases_lost),
        );
        counter(
            &mut o,
            "grader_sync_gradings_total",
            "Synchronous gradings (POST /v1/grade).",
            load(&self.sync_gradings),
        );
        counter(
            &mut o,
            "grader_callbacks_delivered_total",
            "Reports delivered to a tenant callback URL.",
            load(&self.callbacks_delivered),
        );
        counter(
            &mut o,
            "grader_callback_attempts_failed_total",
            "Callback attempts that failed.",
            load(&self.callback_attempts_failed),
        );
        counter(
            &mut o,
            "grader_callbacks_abandoned_total",
            "Callbacks that gave up after the last attempt.",
            load(&self.callbacks_abandoned),
        );
        counter(
            &mut o,
            "grader_worker_store_errors_total",
            "Store errors seen by the worker loop.",
            load(&self.worker_store_errors),
        );
        let _ = writeln!(
            o,
            "# HELP grader_rate_limited_total Requests refused with 429 by a rate limit, by limit (key, webhook)."
        );
        let _ = writeln!(o, "# TYPE grader_rate_limited_total counter");
        for (limit, n) in lock(&self.rate_limited).iter() {
            let _ = writeln!(
                o,
                "grader_rate_limited_total{{limit=\"{}\"}} {n}",
                label(limit)
            );
        }
        let _ = writeln!(
            o,
            "# HELP grader_gradings_in_flight Gradings running in this process now."
        );
        let _ = writeln!(o, "# TYPE grader_gradings_in_flight gauge");
        let _ = writeln!(
            o,
            "grader_gradings_in_flight {}",
            self.gradings_in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP grader_grading_duration_seconds Time to grade one submission (worker and synchronous)."
        );
        let _ = writeln!(o, "# TYPE grader_grading_duration_seconds histogram");
        self.grading_latency
            .render(&mut o, "grader_grading_duration_seconds", "");
        o
    }
}

/// The `grader_queue_depth` gauge: jobs queued or leased in the store, shared by every
/// replica, counted at scrape time (`Store::queue_depth`). `None` (the store did not answer)
/// renders no sample, so a failed count reads as missing rather than as an empty queue.
pub fn render_queue_depth(depth: Option<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP grader_queue_depth Jobs queued or leased in the store (all replicas), at scrape time."
    );
    let _ = writeln!(o, "# TYPE grader_queue_depth gauge");
    if let Some(n) = depth {
        let _ = writeln!(o, "grader_queue_depth {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::new();
        m.record_request("POST", "/v1/submissions", 202, Duration::from_millis(3));
        m.record_request("POST", "/v1/submissions", 202, Duration::from_millis(30));
        m.record_enqueued("api", true);
        m.record_enqueued("api", false);
        let text = m.render();
        assert!(text.contains(
            "grader_http_requests_total{method=\"POST\",route=\"/v1/submissions\",status=\"202\"} 2"
        ));
        assert!(text.contains("grader_submissions_enqueued_total{source=\"api\"} 1"));
        assert!(text.contains("grader_submissions_duplicate_total 1"));
        assert!(text.contains("grader_http_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("grader_http_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("grader_http_request_duration_seconds_count 2"));
        assert_eq!(m.requests("/v1/submissions", 202), 2);
    }

    #[test]
    fn queue_depth_is_a_gauge_without_a_sample_when_unknown() {
        let text = render_queue_depth(Some(7));
        assert!(text.contains("# TYPE grader_queue_depth gauge"));
        assert!(text.contains("\ngrader_queue_depth 7\n"));
        assert!(!render_queue_depth(None).contains("\ngrader_queue_depth "));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
