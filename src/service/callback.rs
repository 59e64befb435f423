//! Results out: a finished GradeReport POSTed to the tenant's callback URL, signed with
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! Delivery is best-effort and never fails the grading: the report is already committed when
//! a callback starts, and `GET /v1/submissions/{id}` always serves it. Each attempt is
//! recorded with [`Store::record_callback`](crate::store::Store::record_callback) (the
//! delivery log); failed attempts are retried with exponential backoff and jitter up to
//! `service.callback_max_attempts`. Retries live in this process: a process that exits
//! mid-backoff drops the remaining attempts (the log shows where it stopped), which is
//! acceptable because the result stays fetchable.
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

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde_json::json;

use super::App;
use crate::config::Config;
use crate::domain::GradeReport;
use crate::ingest::ats;
use crate::store::{CallbackAttempt, Tenant};

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
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

/// Delivers one report to `tenant`'s callback URL, retrying with backoff; returns the number
/// of attempts on success. Does nothing (Ok(0)) when the tenant has no callback URL.
pub async fn deliver(
    app: &App,
    tenant: &Tenant,
    submission_id: &str,
    external_id: Option<&str>,
    report: &GradeReport,
) -> Result<u32, CallbackError> {
    let Some(url) = tenant.settings.callback_url.as_deref() else {
        return Ok(0);
    };
    let record = |attempt: u32, status: Option<u16>, error: Option<String>| CallbackAttempt {
        tenant_id: tenant.id.clone(),
        submission_id: submission_id.to_string(),
        attempt,
        status,
        error,
        at: Utc::now(),
    };
    let setup = (|| {
        let secret = tenant
            .settings
            .callback_secret
            .as_deref()
            .ok_or(CallbackError::NoSecret)?;
        ats::validate_standard_secret(secret).map_err(CallbackError::BadSecret)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CallbackError::BadUrl(url.to_string()));
        }
        let body = serde_json::to_vec(&message(submission_id, report, external_id))
            .map_err(|e| CallbackError::Serialize(e.to_string()))?;
        Ok((secret, body))
    })();
    let (secret, body) = match setup {
        Ok(v) => v,
        Err(e) => {
            // Logged once so the tenant sees why nothing arrived; not retried: a retry
            // cannot fix configuration.
            log_attempt(app, &record(1, None, Some(e.to_string()))).await;
            app.metrics
                .callbacks_abandoned
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
    };
    let svc = &app.config.service;
    let max_attempts = svc.callback_max_attempts.max(1);
    let msg_id = format!("msg_{submission_id}");
    let mut last = String::new();
    for attempt in 1..=max_attempts {
        let ts = Utc::now().timestamp();
        let signature = ats::sign_standard(secret, &msg_id, ts, &body);
        let result = app
            .http_client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body.clone())
            .send()
            .await;
        let (status, error) = match result {
            Ok(resp) if resp.status().is_success() => {
                log_attempt(app, &record(attempt, Some(resp.status().as_u16()), None)).await;
                app.metrics
                    .callbacks_delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(attempt);
            }
            Ok(resp) => {
                let code = resp.status().as_u16();
                (Some(code), format!("receiver answered HTTP {code}"))
            }
            Err(e) => (None, format!("request failed: {}", error_chain(&e))),
        };
        app.metrics
            .callback_attempts_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log_attempt(app, &record(attempt, status, Some(error.clone()))).await;
        last = error;
        if attempt < max_attempts {
            tokio::time::sleep(backoff(
                Duration::from_millis(svc.callback_retry_base_ms),
                Duration::from_millis(svc.callback_retry_max_ms),
                attempt,
            ))
            .await;
        }
    }
    app.metrics
        .callbacks_abandoned
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Err(CallbackError::GaveUp {
        attempts: max_attempts,
        last,
    })
}

/// A store failure while logging must not stop the delivery itself.
async fn log_attempt(app: &App, attempt: &CallbackAttempt) {
    if let Err(e) = app.store.record_callback(attempt).await {
        tracing::warn!(
            submission = %attempt.submission_id,
            "cannot record callback attempt {}: {e}",
            attempt.attempt
        );
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
