//! A stand-in OpenAI-compatible server for tests: no network beyond 127.0.0.1.
//!
//! Each test starts its own on an ephemeral port, scripts the responses it wants, points the
//! code under test at [`StandIn::base_url`], and afterwards asserts on what was sent:
//!
//! ```ignore
//! let server = StandIn::start().await;
//! server.push(Scripted::rate_limited("1"));
//! server.push(Scripted::reply(r#"{"scores": []}"#));
//! // ... call the provider with base_url = server.base_url ...
//! assert_eq!(server.calls(), 2);
//! assert_eq!(server.requests()[0]["model"], "gpt-4o-mini");
//! ```
//!
//! `POST /v1/chat/completions` and `POST /chat/completions` pop the next scripted response;
//! when the script is empty the default answers (a 500 "script exhausted" unless changed with
//! [`StandIn::set_default`], e.g. to a [`Scripted::dynamic`] that always replies). Every
//! request, on any path, is recorded with its JSON body and arrival time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// Usage reported by [`Scripted::reply`]: (prompt, completion, cached) tokens.
pub const DEFAULT_USAGE: (u64, u64, u64) = (100, 20, 0);

type Responder = dyn Fn(&Value) -> Scripted + Send + Sync;

/// One scripted answer.
#[derive(Clone)]
pub enum Scripted {
    /// A 200 `chat.completion` whose choice 0 has `content`; usage is (prompt, completion,
    /// cached) tokens. The `model` echoes the request's.
    Reply {
        content: String,
        usage: (u64, u64, u64),
    },
    /// Any status with a body (sent as JSON when it parses as JSON) and an optional
    /// `Retry-After` header value (seconds or an HTTP-date, sent verbatim).
    Status {
        code: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Wait, then answer with the inner response (for timeouts and arrival-time tests).
    Delay(Duration, Box<Scripted>),
    /// Decide from the request body (e.g. echo, or answer per stage).
    Dynamic(Arc<Responder>),
    /// A 200 with exactly this JSON body (to imitate non-standard servers).
    RawJson(Value),
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scripted::Reply { content, usage } => f
                .debug_struct("Reply")
                .field("content", content)
                .field("usage", usage)
                .finish(),
            Scripted::Status {
                code,
                body,
                retry_after,
            } => f
                .debug_struct("Status")
                .field("code", code)
                .field("body", body)
                .field("retry_after", retry_after)
                .finish(),
            Scripted::Delay(d, inner) => f.debug_tuple("Delay").field(d).field(inner).finish(),
            Scripted::Dynamic(_) => f.write_str("Dynamic(..)"),
            Scripted::RawJson(v) => f.debug_tuple("RawJson").field(v).finish(),
        }
    }
}

impl Scripted {
    /// A successful completion with [`DEFAULT_USAGE`].
    pub fn reply(content: impl Into<String>) -> Self {
        Scripted::Reply {
            content: content.into(),
            usage: DEFAULT_USAGE,
        }
    }

    /// A successful completion with the given token usage; `cached` is part of `prompt`.
    pub fn reply_with_usage(
        content: impl Into<String>,
        prompt: u64,
        completion: u64,
        cached: u64,
    ) -> Self {
        Scripted::Reply {
            content: content.into(),
            usage: (prompt, completion, cached),
        }
    }

    /// A successful completion whose content is `value` serialized (a judgment, say).
    pub fn reply_json(value: &Value) -> Self {
        Scripted::reply(value.to_string())
    }

    /// An error status with an OpenAI-shaped body `{"error": {"message", "type", "code"}}`.
    pub fn error(code: u16, message: &str) -> Self {
        let kind = match code {
            429 => "rate_limit_exceeded",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        };
        Scripted::Status {
            code,
            body: json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
                .to_string(),
            retry_after: None,
        }
    }

    /// A status with a verbatim body (HTML from a proxy, plain text, ...).
    pub fn status(code: u16, body: impl Into<String>) -> Self {
        Scripted::Status {
            code,
            body: body.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: retry_after` (e.g. `"1"`).
    pub fn rate_limited(retry_after: &str) -> Self {
        match Scripted::error(429, "Rate limit reached for requests") {
            Scripted::Status { code, body, .. } => Scripted::Status {
                code,
                body,
                retry_after: Some(retry_after.to_string()),
            },
            other => other,
        }
    }

    /// Answer with `then` after `delay`.
    pub fn delay(delay: Duration, then: Scripted) -> Self {
        Scripted::Delay(delay, Box::new(then))
    }

    /// Answer computed from the request body.
    pub fn dynamic(f: impl Fn(&Value) -> Scripted + Send + Sync + 'static) -> Self {
        Scripted::Dynamic(Arc::new(f))
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// The JSON body; a body that is not JSON is kept as a JSON string.
    pub body: Value,
    pub authorization: Option<String>,
    pub at: Instant,
}

struct Inner {
    queue: VecDeque<Scripted>,
    default: Scripted,
    recorded: Vec<Recorded>,
    served: u64,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    /// A panicking test thread must not poison the server for the assertions that follow.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running stand-in server; stopped when dropped.
pub struct StandIn {
    /// `http://127.0.0.1:PORT/v1`, what an OpenAI client takes as its base URL.
    pub base_url: String,
    pub addr: SocketAddr,
    pub started: Instant,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Binds 127.0.0.1:0 and serves in the background on the test's runtime.
    pub async fn start() -> StandIn {
        let shared = Shared(Arc::new(Mutex::new(Inner {
            queue: VecDeque::new(),
            default: Scripted::error(500, "stand-in script exhausted"),
            recorded: Vec::new(),
            served: 0,
        })));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .fallback(unknown)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("stand-in: local address");
        let task = tokio::spawn(async move {
            // Ends when the test drops the StandIn (abort) or the runtime shuts down.
            let _ = axum::serve(listener, app).await;
        });
        StandIn {
            base_url: format!("http://{addr}/v1"),
            addr,
            started: Instant::now(),
            shared,
            task,
        }
    }

    /// Queues the next response.
    pub fn push(&self, response: Scripted) -> &Self {
        self.shared.lock().queue.push_back(response);
        self
    }

    /// Queues the same response `n` times.
    pub fn push_n(&self, n: usize, response: Scripted) -> &Self {
        let mut inner = self.shared.lock();
        for _ in 0..n {
            inner.queue.push_back(response.clone());
        }
        self
    }

    /// What to answer once the queue is empty (default: 500 "stand-in script exhausted").
    pub fn set_default(&self, response: Scripted) -> &Self {
        self.shared.lock().default = response;
        self
    }

    /// Bodies of all chat-completion requests received, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.recorded()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .map(|r| r.body)
            .collect()
    }

    /// Every request received (any path), with arrival times.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.lock().recorded.clone()
    }

    /// Number of chat-completion requests received.
    pub fn calls(&self) -> usize {
        self.requests().len()
    }

    /// Scripted responses not yet consumed.
    pub fn pending(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Value {
    let value = serde_json::from_slice::<Value>(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    shared.lock().recorded.push(Recorded {
        path: uri.path().to_string(),
        body: value.clone(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: Instant::now(),
    });
    value
}

async fn chat(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request = record(&shared, &uri, &headers, &body);
    let (mut next, n) = {
        let mut inner = shared.lock();
        inner.served += 1;
        let next = inner
            .queue
            .pop_front()
            .unwrap_or_else(|| inner.default.clone());
        (next, inner.served)
    };
    loop {
        next = match next {
            Scripted::Delay(delay, then) => {
                tokio::time::sleep(delay).await;
                *then
            }
            Scripted::Dynamic(f) => f(&request),
            Scripted::Reply { content, usage } => return completion(&request, &content, usage, n),
            Scripted::RawJson(value) => return axum::Json(value).into_response(),
            Scripted::Status {
                code,
                body,
                retry_after,
            } => return status_response(code, body, retry_after),
        };
    }
}

async fn unknown(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, &uri, &headers, &body);
    let message = format!("stand-in has no route {}", uri.path());
    status_response(
        404,
        json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string(),
        None,
    )
}

/// A `chat.completion` object shaped exactly like OpenAI's.
fn completion(request: &Value, content: &str, usage: (u64, u64, u64), n: u64) -> Response {
    let (prompt, completion, cached) = usage;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("stand-in");
    axum::Json(json!({
        "id": format!("chatcmpl-standin-{n}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        }
    }))
    .into_response()
}

fn status_response(code: u16, body: String, retry_after: Option<String>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::RETRY_AFTER, value);
    }
    response
}
