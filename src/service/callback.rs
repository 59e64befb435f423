//! Results out: a finished GradeReport POSTed to the tenant's callback URL, signed with
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! Delivery never fails the grading: the report is committed before any attempt, and
//! `GET /v1/submissions/{id}` always serves it. Pending deliveries are **durable**:
//! `Store::complete_job` adds the report's delivery to the store's callback outbox in the
//! transaction that stores the report, and each process runs one delivery loop ([`run`])
//! that leases due deliveries (PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite `BEGIN
//! IMMEDIATE`), POSTs them, and settles every attempt in one transaction: the attempt goes to
//! the delivery log (`Store::callbacks`), the delivery is marked delivered, rescheduled with
//! exponential backoff and jitter, or failed after `service.callback_max_attempts`. The
//! backoff lives in the row's `next_attempt_at`, not in a sleeping task, so a restart
//! mid-backoff loses nothing: the next process (or another replica) continues where the
//! log stopped. Delivery is at least once: a process that dies between a receiver's 2xx and
//! the settle repeats the attempt after the lease, with the same `webhook-id`.
//!
//! The message:
//!
//! ```json
//! {"type": "grading.completed", "timestamp": "2024-...Z",
//!  "data": {"submission_id": "...", "external_id": "...", "report": { GradeReport }}}
//! ```
//!
//! `webhook-id` is `msg_<submission id>`, the same on every attempt, so a receiver that saw a
//! success whose answer got lost can drop the retry. The timestamp and signature are fresh
//! per attempt (a receiver's 5-minute tolerance would refuse an old timestamp).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde_json::json;
use tokio::sync::watch;

use super::{worker, App};
use crate::config::Config;
use crate::domain::GradeReport;
use crate::ingest::ats;
use crate::store::{CallbackAttempt, CallbackNext, PendingCallback};

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the tenant no longer has a callback_url")]
    NoUrl,
    #[error("the {0} of this delivery no longer exists")]
    Gone(&'static str),
    #[error("tenant has a callback_url but no callback_secret; set both with `grader admin tenant set --callback-url URL --callback-secret whsec_...`")]
    NoSecret,
    #[error("invalid callback_secret: {0}")]
    BadSecret(String),
    #[error("callback URL {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error("cannot serialize the report: {0}")]
    Serialize(String),
    #[error("gave up after {attempts} attempts; last: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// The shared callback client: the per-attempt timeout from the config, and no redirects
/// (a signed POST must reach the configured URL, not wherever a 3xx points).
pub fn client(cfg: &Config) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(
            cfg.service.callback_timeout_secs.max(1),
        ))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!("callback client setup failed ({e}); using defaults");
            reqwest::Client::new()
        })
}

/// Exponential backoff with "equal jitter": `d = min(max, base * 2^(n-1))`, then a uniform
/// pick in `[d/2, d]`, so retries of many reports spread out yet never come sooner than
/// half the nominal delay. `n` is the attempt that failed (1-based).
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(30);
    let nominal = base.saturating_mul(1u32 << exp).min(max);
    let nominal_ms = u64::try_from(nominal.as_millis()).unwrap_or(u64::MAX);
    if nominal_ms < 2 {
        return nominal;
    }
    let half = nominal_ms / 2;
    Duration::from_millis(half + rand::rng().random_range(0..=nominal_ms - half))
}

/// The JSON a callback carries (see the module docs).
pub fn message(
    submission_id: &str,
    report: &GradeReport,
    external_id: Option<&str>,
) -> serde_json::Value {
    json!({
        "type": "grading.completed",
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": {
            "submission_id": submission_id,
            "external_id": external_id,
            "report": report,
        }
    })
}

/// Most deliveries one loop attempts at once (one lease, attempted concurrently).
const BATCH: u32 = 16;

/// How long a leased delivery stays with its loop: a few request timeouts, so only a loop
/// that died mid-POST loses it (another loop retries it after this).
fn lease(cfg: &Config) -> Duration {
    Duration::from_secs(cfg.service.callback_timeout_secs.max(1).saturating_mul(3) + 30)
}

/// The delivery loop of one process: leases due deliveries from the store's callback outbox
/// (rows `complete_job` added with the report), attempts them, and settles each attempt in
/// the store: delivered, rescheduled with backoff, or failed after
/// `service.callback_max_attempts`. Runs until `shutdown` holds `true`; attempts in flight
/// finish (bounded by the callback timeout) and are settled first, so a graceful stop
/// leaves nothing leased.
pub async fn run(app: Arc<App>, name: String, mut shutdown: watch::Receiver<bool>) {
    let poll = Duration::from_millis(app.config.service.poll_interval_ms.max(1));
    let lease = lease(&app.config);
    let mut errors = 0u32;
    tracing::debug!(loop_name = %name, "callback delivery loop started");
    while !worker::stopping(&shutdown) {
        match app.store.lease_callbacks(&name, lease, BATCH).await {
            Ok(due) if !due.is_empty() => {
                errors = 0;
                futures::future::join_all(due.into_iter().map(|d| attempt(&app, d))).await;
            }
            Ok(_) => {
                errors = 0;
                worker::idle(poll, &mut shutdown).await;
            }
            Err(e) => {
                errors = errors.saturating_add(1);
                app.metrics
                    .worker_store_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(loop_name = %name, "cannot lease callback deliveries: {e}");
                let backoff = poll
                    .saturating_mul(1u32 << errors.min(10))
                    .min(Duration::from_secs(10));
                worker::idle(backoff, &mut shutdown).await;
            }
        }
    }
    tracing::debug!(loop_name = %name, "callback delivery loop stopped");
}

/// What one delivery needs, read from the store at attempt time (the tenant's settings may
/// have changed since the report was stored).
struct Ready {
    url: String,
    secret: String,
    body: Vec<u8>,
}

/// `Ok(None)`: the store could not answer now; the delivery is left leased and is retried
/// when the lease ends. `Err`: the delivery cannot work (configuration), give up.
async fn prepare(app: &App, d: &PendingCallback) -> Result<Option<Ready>, CallbackError> {
    let tenant = match app.store.tenant(&d.tenant_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err(CallbackError::Gone("tenant")),
        Err(e) => {
            tracing::warn!(submission = %d.submission_id, "cannot load the tenant: {e}");
            return Ok(None);
        }
    };
    let record = match app.store.submission(&d.tenant_id, &d.submission_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(CallbackError::Gone("submission")),
        Err(e) => {
            tracing::warn!(submission = %d.submission_id, "cannot load the submission: {e}");
            return Ok(None);
        }
    };
    let report = record
        .report
        .as_ref()
        .ok_or(CallbackError::Gone("report"))?;
    let url = tenant
        .settings
        .callback_url
        .clone()
        .ok_or(CallbackError::NoUrl)?;
    let secret = tenant
        .settings
        .callback_secret
        .clone()
        .ok_or(CallbackError::NoSecret)?;
    ats::validate_standard_secret(&secret).map_err(CallbackError::BadSecret)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(CallbackError::BadUrl(url));
    }
    let external_id = record.submission.external_id.as_deref();
    let body = serde_json::to_vec(&message(&record.id, report, external_id))
        .map_err(|e| CallbackError::Serialize(e.to_string()))?;
    Ok(Some(Ready { url, secret, body }))
}

/// One attempt of one leased delivery, settled in the store.
async fn attempt(app: &App, d: PendingCallback) {
    let n = d.attempts + 1;
    let svc = &app.config.service;
    let max_attempts = svc.callback_max_attempts.max(1);
    let record = |status: Option<u16>, error: Option<String>| CallbackAttempt {
        tenant_id: d.tenant_id.clone(),
        submission_id: d.submission_id.clone(),
        attempt: n,
        status,
        error,
        at: Utc::now(),
    };
    let ready = match prepare(app, &d).await {
        Ok(Some(ready)) => ready,
        Ok(None) => return,
        Err(e) => {
            // Logged once so the tenant sees why nothing arrived; not retried: a retry
            // cannot fix configuration.
            app.metrics
                .callbacks_abandoned
                .fetch_add(1, Ordering::Relaxed);
            settle(
                app,
                &d,
                record(None, Some(e.to_string())),
                CallbackNext::Failed,
            )
            .await;
            return;
        }
    };
    let msg_id = format!("msg_{}", d.submission_id);
    let ts = Utc::now().timestamp();
    let signature = ats::sign_standard(&ready.secret, &msg_id, ts, &ready.body);
    let result = app
        .http_client
        .post(&ready.url)
        .header("content-type", "application/json")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(ready.body)
        .send()
        .await;
    let (status, error) = match result {
        Ok(resp) if resp.status().is_success() => {
            app.metrics
                .callbacks_delivered
                .fetch_add(1, Ordering::Relaxed);
            let code = resp.status().as_u16();
            settle(app, &d, record(Some(code), None), CallbackNext::Delivered).await;
            return;
        }
        Ok(resp) => {
            let code = resp.status().as_u16();
            (Some(code), format!("receiver answered HTTP {code}"))
        }
        Err(e) => (None, format!("request failed: {}", error_chain(&e))),
    };
    app.metrics
        .callback_attempts_failed
        .fetch_add(1, Ordering::Relaxed);
    let next = if n >= max_attempts {
        app.metrics
            .callbacks_abandoned
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            submission = %d.submission_id,
            "callback not delivered: {}",
            CallbackError::GaveUp {
                attempts: n,
                last: error.clone()
            }
        );
        CallbackNext::Failed
    } else {
        CallbackNext::Retry(backoff(
            Duration::from_millis(svc.callback_retry_base_ms),
            Duration::from_millis(svc.callback_retry_max_ms),
            n,
        ))
    };
    settle(app, &d, record(status, Some(error)), next).await;
}

/// A store failure here leaves the delivery leased: when the lease ends it is attempted
/// again (at least once; the receiver deduplicates on `webhook-id`).
async fn settle(app: &App, d: &PendingCallback, attempt: CallbackAttempt, next: CallbackNext) {
    match app.store.finish_callback(d, &attempt, next).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            submission = %d.submission_id,
            "callback lease lost before attempt {} was recorded",
            attempt.attempt
        ),
        Err(e) => tracing::warn!(
            submission = %d.submission_id,
            "cannot record callback attempt {}: {e}",
            attempt.attempt
        ),
    }
}

/// reqwest's top-level message is often just "error sending request"; the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        for _ in 0..50 {
            let d1 = backoff(base, max, 1).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = backoff(base, max, 3).as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d10 = backoff(base, max, 10).as_millis();
            assert!((500..=1_000).contains(&d10), "{d10}");
        }
        assert_eq!(backoff(Duration::ZERO, max, 4), Duration::ZERO);
    }
}
