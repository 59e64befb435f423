//! Per-API-key and per-webhook rate limits: an abuse limit, answered `429 rate_limited` with
//! `Retry-After` and counted in `grader_rate_limited_total`.
//!
//! Each API key (by key id, with `service.rate_limit_roles` overriding
//! `service.rate_limit_per_minute` for its role) and each webhook endpoint (tenant name +
//! source, `service.webhook_rate_limit_per_minute`) has a token bucket. The bucket is
//! [`crate::llm::ratelimit::RateLimiter`]'s RPM bucket, reused: it holds one minute's worth
//! of requests and refills continuously, so a client may burst up to its per-minute limit
//! and then proceeds at the steady rate. 0 switches a limit off; everything is off by
//! default (the load benchmark `examples/load_202.rs` runs without limits).
//!
//! **The buckets are in-process, per replica**: with N replicas behind a load balancer a key
//! may make up to N times its limit. That is deliberate: the limit protects each process
//! from one client's flood, and a shared bucket would cost a database round trip on the
//! hot 202 path. Set the per-replica figure to (wanted limit / replicas) if the global rate
//! matters.
//!
//! Webhook buckets are charged before the signature is checked (checking costs a secret
//! lookup): they shield the service from a flood at a tenant's endpoint, at the price that
//! such a flood also delays that tenant's genuine deliveries, which ATSs retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::Caller;
use super::error::error_response;
use super::Ctx;
use crate::config::ServiceConfig;
use crate::llm::ratelimit::{ModelLimits, RateLimiter};
use crate::store::Role;

/// Buckets above this count are dropped wholesale (as the auth cache does): a crude bound
/// against a flood of distinct keys or tenant names; real keys and endpoints are few.
const MAX_BUCKETS: usize = 100_000;

/// The limits in force and one bucket per key or endpoint.
pub struct RateLimits {
    default_per_minute: u32,
    /// Per role, indexed by [`role_index`]; `None` falls back to the default.
    per_role: [Option<u32>; 3],
    webhook_per_minute: u32,
    buckets: Mutex<HashMap<String, Arc<RateLimiter>>>,
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Ingest => 0,
        Role::Grader => 1,
        Role::Admin => 2,
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// `key` or `webhook`: the metric label.
    pub kind: &'static str,
    pub per_minute: u32,
    pub retry_after: Duration,
}

impl RateLimits {
    pub fn from_config(svc: &ServiceConfig) -> RateLimits {
        let mut per_role = [None; 3];
        for (name, limit) in &svc.rate_limit_roles {
            // `Config::validate` refused unknown role names already.
            if let Some(role) = Role::parse(name) {
                per_role[role_index(role)] = Some(*limit);
            }
        }
        RateLimits {
            default_per_minute: svc.rate_limit_per_minute,
            per_role,
            webhook_per_minute: svc.webhook_rate_limit_per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any limit is on; when none is, the middleware does nothing at all.
    pub fn enabled(&self) -> bool {
        self.keys_enabled() || self.webhook_per_minute > 0
    }

    fn keys_enabled(&self) -> bool {
        self.default_per_minute > 0 || self.per_role.iter().any(|r| r.is_some_and(|v| v > 0))
    }

    /// The per-minute limit of a key with `role` (0 = unlimited).
    pub fn key_limit(&self, role: Role) -> u32 {
        self.per_role[role_index(role)].unwrap_or(self.default_per_minute)
    }

    /// Takes one request from the bucket `name` (created full at `per_minute`), or says how
    /// long until one is available.
    pub fn take(&self, name: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let limiter = {
            let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(name) {
                Some(l) => l.clone(),
                None => {
                    if map.len() >= MAX_BUCKETS {
                        map.clear();
                    }
                    let limits = ModelLimits {
                        rpm: Some(per_minute),
                        tpm: None,
                    };
                    // `None` means "no limits", which `per_minute > 0` rules out.
                    let Some(l) = RateLimiter::new_at(limits, now) else {
                        return Ok(());
                    };
                    let l = Arc::new(l);
                    map.insert(name.to_string(), l.clone());
                    l
                }
            }
        };
        limiter.try_acquire(0, now)
    }

    /// Charges a request to its bucket: the webhook endpoint's for `/v1/webhooks/{t}/{s}`,
    /// else the API key's (when the caller authenticates; a bad key is left to the handler's
    /// 401).
    async fn charge(&self, ctx: &Arc<Ctx>, req: Request) -> (Request, Result<(), Limited>) {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix("/v1/webhooks/") {
            if self.webhook_per_minute > 0 {
                let name = format!("webhook:{}", rest.trim_end_matches('/'));
                let per_minute = self.webhook_per_minute;
                let verdict = self
                    .take(&name, per_minute, Instant::now())
                    .map_err(|wait| Limited {
                        kind: "webhook",
                        per_minute,
                        retry_after: wait,
                    });
                return (req, verdict);
            }
            return (req, Ok(()));
        }
        if !self.keys_enabled() || !req.headers().contains_key(AUTHORIZATION) {
            return (req, Ok(()));
        }
        let (mut parts, body) = req.into_parts();
        // Authenticating here puts the Caller in the extensions, so the handler's own
        // extraction reuses it instead of looking the key up again.
        let verdict = match Caller::from_request_parts(&mut parts, ctx).await {
            Ok(caller) => {
                let per_minute = self.key_limit(caller.role());
                self.take(
                    &format!("key:{}", caller.key.id),
                    per_minute,
                    Instant::now(),
                )
                .map_err(|wait| Limited {
                    kind: "key",
                    per_minute,
                    retry_after: wait,
                })
            }
            Err(_) => Ok(()),
        };
        (Request::from_parts(parts, body), verdict)
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// The 429 answer: the JSON error names the limit, `Retry-After` says when to come back.
pub fn limited_response(l: &Limited) -> Response {
    let secs = retry_after_secs(l.retry_after);
    let (what, setting) = match l.kind {
        "webhook" => (
            "this webhook endpoint (tenant and source)",
            "service.webhook_rate_limit_per_minute",
        ),
        _ => (
            "this API key",
            "service.rate_limit_per_minute / service.rate_limit_roles",
        ),
    };
    let mut resp = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!(
            "rate limit exceeded: {what} may make {} requests per minute ({setting}); retry after {secs} s",
            l.per_minute
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

/// Middleware: charges every request to its bucket, 429 when it is empty.
pub async fn limit(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    if !ctx.limits.enabled() {
        return next.run(req).await;
    }
    let (req, verdict) = ctx.limits.charge(&ctx, req).await;
    match verdict {
        Ok(()) => next.run(req).await,
        Err(l) => {
            ctx.app.metrics.record_rate_limited(l.kind);
            limited_response(&l)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(default: u32, roles: &[(&str, u32)], webhook: u32) -> RateLimits {
        let svc = ServiceConfig {
            rate_limit_per_minute: default,
            rate_limit_roles: roles.iter().map(|(r, v)| (r.to_string(), *v)).collect(),
            webhook_rate_limit_per_minute: webhook,
            ..Default::default()
        };
        RateLimits::from_config(&svc)
    }

    #[test]
    fn off_by_default() {
        let l = RateLimits::from_config(&ServiceConfig::default());
        assert!(!l.enabled());
        assert_eq!(l.key_limit(Role::Ingest), 0);
        assert!(l.take("key:a", 0, Instant::now()).is_ok());
    }

    #[test]
    fn bucket_allows_a_minute_then_spaces_requests() {
        let l = limits(60, &[], 0);
        let t = Instant::now();
        for _ in 0..60 {
            l.take("key:a", 60, t).unwrap();
        }
        let wait = l.take("key:a", 60, t).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        // Another key has its own bucket.
        l.take("key:b", 60, t).unwrap();
        l.take("key:a", 60, t + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn role_overrides_the_default() {
        let l = limits(100, &[("ingest", 1000), ("admin", 0)], 0);
        assert_eq!(l.key_limit(Role::Ingest), 1000);
        assert_eq!(l.key_limit(Role::Grader), 100);
        assert_eq!(l.key_limit(Role::Admin), 0);
        assert!(l.enabled());
        let only_roles = limits(0, &[("grader", 5)], 0);
        assert!(only_roles.enabled());
        assert_eq!(only_roles.key_limit(Role::Ingest), 0);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
