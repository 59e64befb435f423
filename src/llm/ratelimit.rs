//! Client-side rate limiting per model from its RPM/TPM limits: two token buckets (requests
//! and tokens per minute), each starting full and refilling continuously.
//!
//! Why client-side when the provider enforces limits anyway: a burst of gradings (an eval, a
//! webhook storm) otherwise turns into a wall of 429s, each costing a retry with backoff and
//! tripping the circuit breaker. Waiting here spaces the requests so they mostly succeed the
//! first time; `Retry-After` (in `llm::retry`) still covers what the provider decides.
//!
//! A request is charged its estimated tokens up front (prompt plus `max_tokens`, the way
//! providers count a request against TPM) and refunded the unused part once usage is known.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A model's rate limits as configured (`rpm`, `tpm` in a `[[models]]` entry); `None` =
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<u64>,
}

impl ModelLimits {
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// One token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn per_minute(limit: f64, now: Instant) -> Bucket {
        Bucket {
            capacity: limit,
            tokens: limit,
            rate: limit / 60.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// How long until `n` can be taken. A request larger than the whole bucket waits only for
    /// a full bucket and then drives it negative, so it is slow rather than stuck forever.
    fn wait_for(&self, n: f64) -> Duration {
        let need = n.min(self.capacity);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }
}

/// The RPM and TPM buckets of one model.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<(Option<Bucket>, Option<Bucket>)>,
}

impl RateLimiter {
    /// `None` when the model has no limits: nothing to wait for.
    pub fn new(limits: ModelLimits) -> Option<RateLimiter> {
        RateLimiter::new_at(limits, Instant::now())
    }

    pub fn new_at(limits: ModelLimits, now: Instant) -> Option<RateLimiter> {
        if limits.is_unlimited() {
            return None;
        }
        Some(RateLimiter {
            buckets: Mutex::new((
                limits
                    .rpm
                    .filter(|r| *r > 0)
                    .map(|r| Bucket::per_minute(f64::from(r), now)),
                limits
                    .tpm
                    .filter(|t| *t > 0)
                    .map(|t| Bucket::per_minute(t as f64, now)),
            )),
        })
    }

    /// Takes one request and `tokens` tokens if both buckets have them now; otherwise takes
    /// nothing and says how long to wait. Both or neither, so a request waiting on TPM does
    /// not burn an RPM slot meanwhile.
    pub fn try_acquire(&self, tokens: u64, now: Instant) -> Result<(), Duration> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (rpm, tpm) = &mut *b;
        let mut wait = Duration::ZERO;
        if let Some(r) = rpm.as_mut() {
            r.refill(now);
            wait = wait.max(r.wait_for(1.0));
        }
        if let Some(t) = tpm.as_mut() {
            t.refill(now);
            wait = wait.max(t.wait_for(tokens as f64));
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if let Some(r) = rpm.as_mut() {
            r.tokens -= 1.0;
        }
        if let Some(t) = tpm.as_mut() {
            t.tokens -= tokens as f64;
        }
        Ok(())
    }

    /// Waits until the request may go; returns how long it waited.
    pub async fn acquire(&self, tokens: u64) -> Duration {
        let started = Instant::now();
        let mut waited = false;
        loop {
            match self.try_acquire(tokens, Instant::now()) {
                Ok(()) if !waited => return Duration::ZERO,
                Ok(()) => return started.elapsed(),
                // A small floor keeps a rounding-error wait from spinning.
                Err(wait) => {
                    waited = true;
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await
                }
            }
        }
    }

    /// Gives back tokens charged up front but not used (`charged - used`, when positive), or
    /// charges the excess when the estimate was low.
    pub fn settle(&self, charged: u64, used: u64) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = b.1.as_mut() {
            t.tokens = (t.tokens + charged as f64 - used as f64).min(t.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_bucket_starts_full_then_spaces_requests() {
        let t = Instant::now();
        let l = RateLimiter::new_at(
            ModelLimits {
                rpm: Some(60),
                tpm: None,
            },
            t,
        )
        .unwrap();
        for _ in 0..60 {
            l.try_acquire(0, t).unwrap();
        }
        // Empty: one request per second refills.
        let wait = l.try_acquire(0, t).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
        assert!(l.try_acquire(0, t + Duration::from_millis(999)).is_err());
        l.try_acquire(0, t + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn tpm_waits_for_the_tokens_and_settle_refunds_the_unused_part() {
        let t = Instant::now();
        let l = RateLimiter::new_at(
            ModelLimits {
                rpm: Some(1000),
                tpm: Some(6000),
            },
            t,
        )
        .unwrap();
        l.try_acquire(5000, t).unwrap();
        // 1,000 left; 3,000 needed: 2,000 short at 100 tokens/s = 20 s.
        let wait = l.try_acquire(3000, t).unwrap_err();
        assert!((wait.as_secs_f64() - 20.0).abs() < 1e-9, "{wait:?}");
        // The first request only used 1,000 of its 5,000.
        l.settle(5000, 1000);
        l.try_acquire(3000, t).unwrap();
    }

    #[test]
    fn a_request_bigger_than_the_bucket_waits_for_a_full_bucket_only() {
        let t = Instant::now();
        let l = RateLimiter::new_at(
            ModelLimits {
                rpm: None,
                tpm: Some(600),
            },
            t,
        )
        .unwrap();
        l.try_acquire(1000, t).unwrap();
        // 400 in debt; a full bucket (600) needs 1,000 tokens at 10/s.
        let wait = l.try_acquire(1000, t).unwrap_err();
        assert!((wait.as_secs_f64() - 100.0).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn unlimited_models_have_no_limiter() {
        assert!(RateLimiter::new(ModelLimits::default()).is_none());
    }

    #[tokio::test]
    async fn acquire_sleeps_until_the_bucket_refills() {
        let l = RateLimiter::new(ModelLimits {
            rpm: Some(600),
            tpm: None,
        })
        .unwrap();
        for _ in 0..600 {
            assert_eq!(l.acquire(0).await, Duration::ZERO);
        }
        // 10 per second: the next one waits about 100 ms.
        let waited = l.acquire(0).await;
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
    }
}
