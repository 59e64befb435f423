//! Our retry policy around a [`Provider`]: bounded, exponential backoff with jitter,
//! honouring `Retry-After` on 429s. Providers make exactly one attempt per call (the OpenAI
//! client is built without async-openai's own retry layer), so the number of HTTP calls is
//! exactly what this module decides and tests can count them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ChatRequest, ChatResponse, LlmError, ModelConfig, Provider};

/// How hard to try. `max_retries` counts retries after the first attempt, so a call makes at
/// most `max_retries + 1` requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// Backoff before the first retry; doubles on each further retry.
    pub base_delay: Duration,
    /// Ceiling of the exponential backoff.
    pub max_delay: Duration,
    /// Ceiling on a server's `Retry-After`, so a misconfigured or hostile server cannot park a
    /// grading for an hour; past it we retry early and let the bounded attempts decide.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The default delays with the model's configured `max_retries`.
    pub fn for_model(model: &ModelConfig) -> Self {
        RetryPolicy {
            max_retries: model.max_retries,
            ..RetryPolicy::default()
        }
    }

    /// Backoff before retry number `retry` (0-based) with "equal jitter": half the
    /// exponential delay is fixed, the other half scaled by `jitter` in `[0, 1)`. The fixed
    /// half guarantees real spacing; the random half keeps concurrent gradings that failed
    /// together from retrying in lockstep.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let exp = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// How long to wait after `err` before retry number `retry`: the server's `Retry-After`
    /// (capped) when it sent one, else [`RetryPolicy::backoff`].
    pub fn delay_for(&self, err: &LlmError, retry: u32, jitter: f64) -> Duration {
        match err {
            LlmError::RateLimited {
                retry_after: Some(after),
            } => (*after).min(self.max_retry_after),
            _ => self.backoff(retry, jitter),
        }
    }
}

/// Whether an error is worth another attempt: rate limits, server errors, timeouts and
/// transport failures are (usually) transient. Other 4xx mean the request itself is wrong and
/// would fail identically, except 408 (request timeout) and 409 (conflict), which OpenAI's
/// own SDKs retry. An unreadable response is not retried here: it is the caller's call
/// (the judge has its own repair retry).
pub fn is_retryable(err: &LlmError) -> bool {
    match err {
        LlmError::RateLimited { .. }
        | LlmError::Server { .. }
        | LlmError::Timeout(_)
        | LlmError::Transport(_) => true,
        LlmError::Client { status, .. } => matches!(status, 408 | 409),
        LlmError::BadResponse(_) | LlmError::Exhausted { .. } => false,
    }
}

/// Calls `provider` until it succeeds, fails with a non-retryable error (returned as is), or
/// `policy.max_retries` retries are spent (then [`LlmError::Exhausted`] with the last error).
/// On success also returns how many attempts it took, for the report and metrics.
pub async fn complete_with_retry(
    provider: &dyn Provider,
    req: &ChatRequest,
    policy: &RetryPolicy,
) -> Result<(ChatResponse, u32), LlmError> {
    let mut rng = StdRng::seed_from_u64(jitter_seed());
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let err = match provider.complete(req).await {
            Ok(response) => return Ok((response, attempts)),
            Err(err) => err,
        };
        if !is_retryable(&err) {
            return Err(err);
        }
        let retry = attempts - 1;
        if retry >= policy.max_retries {
            return Err(LlmError::Exhausted {
                attempts,
                last: Box::new(err),
            });
        }
        let delay = policy.delay_for(&err, retry, rng.random::<f64>());
        tracing::warn!(
            model = %req.model,
            attempt = attempts,
            error = %err,
            delay_ms = delay.as_millis() as u64,
            "provider call failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// A seed that differs per call and per process, so replicas and concurrent gradings draw
/// different jitter. Not security sensitive.
fn jitter_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Instant;

    use async_trait::async_trait;

    use super::super::{Message, Role, TokenUsage};
    use super::*;

    /// Plays back a script of results, one per call, and counts the calls.
    struct Scripted {
        script: Mutex<VecDeque<Result<ChatResponse, LlmError>>>,
        calls: AtomicU64,
    }

    impl Scripted {
        fn new(script: Vec<Result<ChatResponse, LlmError>>) -> Self {
            Scripted {
                script: Mutex::new(script.into()),
                calls: AtomicU64::new(0),
            }
        }
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Provider for Scripted {
        async fn complete(&self, _request: &ChatRequest) -> Result<ChatResponse, LlmError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.script.lock().map(|mut s| s.pop_front()).ok().flatten();
            next.unwrap_or_else(|| Err(LlmError::BadResponse("script exhausted".into())))
        }
    }

    fn ok(content: &str) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            content: content.into(),
            model: "m".into(),
            usage: TokenUsage::default(),
        })
    }

    fn server() -> Result<ChatResponse, LlmError> {
        Err(LlmError::Server {
            status: 503,
            message: "overloaded".into(),
        })
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: "hi".into(),
            }],
            temperature: 0.0,
            seed: None,
            max_tokens: 10,
            json_schema: None,
            prompt_cache_key: None,
        }
    }

    fn fast(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_retry_after: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn success_first_time_is_one_attempt() {
        let p = Scripted::new(vec![ok("a")]);
        let (resp, attempts) = complete_with_retry(&p, &request(), &fast(3)).await.unwrap();
        assert_eq!((resp.content.as_str(), attempts, p.calls()), ("a", 1, 1));
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let p = Scripted::new(vec![
            server(),
            Err(LlmError::Timeout(Duration::from_secs(1))),
            Err(LlmError::Transport("connection reset".into())),
            ok("done"),
        ]);
        let (resp, attempts) = complete_with_retry(&p, &request(), &fast(3)).await.unwrap();
        assert_eq!((resp.content.as_str(), attempts, p.calls()), ("done", 4, 4));
    }

    #[tokio::test]
    async fn exhaustion_reports_attempts_and_last_error() {
        let p = Scripted::new(vec![server(), server(), server()]);
        let err = complete_with_retry(&p, &request(), &fast(2))
            .await
            .unwrap_err();
        assert_eq!(p.calls(), 3);
        match &err {
            LlmError::Exhausted { attempts, last } => {
                assert_eq!(*attempts, 3);
                assert!(matches!(**last, LlmError::Server { status: 503, .. }));
            }
            other => panic!("expected Exhausted, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "gave up after 3 attempts; last error: provider server error (HTTP 503): overloaded"
        );
    }

    #[tokio::test]
    async fn zero_retries_means_one_attempt() {
        let p = Scripted::new(vec![server(), ok("never")]);
        let err = complete_with_retry(&p, &request(), &fast(0))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Exhausted { attempts: 1, .. }));
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let p = Scripted::new(vec![
            Err(LlmError::Client {
                status: 400,
                message: "bad schema".into(),
            }),
            ok("never"),
        ]);
        let err = complete_with_retry(&p, &request(), &fast(3))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Client { status: 400, .. }));
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test]
    async fn bad_responses_are_returned_to_the_caller() {
        let p = Scripted::new(vec![Err(LlmError::BadResponse("no choices".into()))]);
        let err = complete_with_retry(&p, &request(), &fast(3))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::BadResponse(_)));
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let p = Scripted::new(vec![
            Err(LlmError::RateLimited {
                retry_after: Some(Duration::from_millis(120)),
            }),
            ok("late"),
        ]);
        let started = Instant::now();
        let (_, attempts) = complete_with_retry(&p, &request(), &fast(3)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert_eq!(attempts, 2);
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = fast(3);
        let err = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(policy.delay_for(&err, 0, 0.5), Duration::from_millis(200));
        // A 429 without Retry-After backs off like any other transient error.
        let bare = LlmError::RateLimited { retry_after: None };
        assert_eq!(policy.delay_for(&bare, 0, 0.0), policy.backoff(0, 0.0));
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        assert_eq!(policy.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(2, 0.5), Duration::from_millis(300));
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(u32::MAX, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn retryable_classification() {
        let client = |status| LlmError::Client {
            status,
            message: String::new(),
        };
        assert!(is_retryable(&client(408)));
        assert!(is_retryable(&client(409)));
        assert!(!is_retryable(&client(400)));
        assert!(!is_retryable(&client(401)));
        assert!(!is_retryable(&client(404)));
        assert!(is_retryable(&LlmError::RateLimited { retry_after: None }));
    }
}
