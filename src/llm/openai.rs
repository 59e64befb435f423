//! [`Provider`] over any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama,
//! LiteLLM, gateways), through async-openai. This is the only file that knows async-openai.
//!
//! One call is one HTTP attempt. async-openai's default executor wraps every request in its
//! own `OpenAIRetryLayer`, which would multiply our retries (4 of ours x its own); so the
//! client is built with [`Client::with_http_service`] over our own [`Transport`], a bare tower
//! service on a `reqwest::Client`. The transport also turns non-2xx responses into a
//! [`HttpStatusError`] carrying the status and `Retry-After`, which async-openai's own error
//! path would throw away, so [`super::retry`] can honour it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::CreateChatCompletionResponse;
use async_openai::Client;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;

use super::{ChatRequest, ChatResponse, LlmError, Message, ModelConfig, Provider, TokenUsage};

/// Where requests go when neither the model config nor `OPENAI_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The environment variables read when the model config does not name its own.
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Connecting is bounded separately from the whole request so an unreachable host fails (and
/// is retried) quickly even when the request timeout is generous for long generations.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body goes into an error message.
const ERROR_BODY_LIMIT: usize = 1_000;

/// Which request field carries the answer-length limit.
///
/// OpenAI's reasoning models (o-series, gpt-5) reject `max_tokens` and need
/// `max_completion_tokens`; many OpenAI-compatible servers (older vLLM, Ollama, TGI) only know
/// `max_tokens`, which OpenAI still accepts for its other models. `Auto` sends
/// `max_completion_tokens` to reasoning-model ids and `max_tokens` to everything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    #[default]
    Auto,
    MaxTokens,
    MaxCompletionTokens,
}

/// Why a provider could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    #[error("invalid provider base URL {url:?}: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("environment variable {var} (the API key of model {model:?}) is not set")]
    MissingApiKey { var: String, model: String },
    #[error(
        "the value of {var} cannot be sent in an HTTP header (line break or control character?)"
    )]
    InvalidHeaderValue { var: String },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
}

/// A non-2xx HTTP response, as captured by [`Transport`] before async-openai sees it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("HTTP {status}: {body}")]
pub struct HttpStatusError {
    pub status: u16,
    /// From `retry-after-ms` or `Retry-After` (seconds or HTTP-date), when the server sent one.
    pub retry_after: Option<Duration>,
    /// The response body, truncated to a readable length.
    pub body: String,
}

/// The OpenAI-compatible provider. Cheap to share (`Arc`) across concurrent gradings: the
/// underlying connection pool is reused.
#[derive(Clone)]
pub struct OpenAiProvider {
    client: Client<OpenAIConfig>,
    base_url: String,
    timeout: Duration,
    max_tokens_field: MaxTokensField,
}

impl std::fmt::Debug for OpenAiProvider {
    /// Never prints the API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("max_tokens_field", &self.max_tokens_field)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A provider for a configured model, reading the process environment: base URL from
    /// `base_url`, else `OPENAI_BASE_URL`, else OpenAI; key from the `api_key_env` variable,
    /// else `OPENAI_API_KEY`; timeout `timeout_secs`.
    pub fn from_config(model: &ModelConfig) -> Result<Self, ProviderConfigError> {
        Self::from_config_with_env(model, |var| std::env::var(var).ok())
    }

    /// [`OpenAiProvider::from_config`] with the environment supplied by the caller, so config
    /// resolution is testable without mutating the process environment.
    ///
    /// A missing default `OPENAI_API_KEY` is fine (local servers such as vLLM or Ollama need
    /// none, and no `Authorization` header is sent then); a variable the config names
    /// explicitly in `api_key_env` must exist, since naming it says a key is required.
    pub fn from_config_with_env(
        model: &ModelConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderConfigError> {
        let base_url = resolve_base_url(model, &env);
        let api_key = match &model.api_key_env {
            Some(var) => match env(var).filter(|k| !k.trim().is_empty()) {
                Some(key) => Some(key),
                None => {
                    return Err(ProviderConfigError::MissingApiKey {
                        var: var.clone(),
                        model: model.name.clone(),
                    })
                }
            },
            None => env(API_KEY_ENV).filter(|k| !k.trim().is_empty()),
        };
        let mut org_and_project = [String::new(), String::new()];
        for (slot, var) in org_and_project
            .iter_mut()
            .zip(["OPENAI_ORG_ID", "OPENAI_PROJECT_ID"])
        {
            // async-openai would `unwrap` these into headers; validate them first.
            let value = env(var).unwrap_or_default().trim().to_string();
            if HeaderValue::from_str(&value).is_err() {
                return Err(ProviderConfigError::InvalidHeaderValue { var: var.into() });
            }
            *slot = value;
        }
        let [org, project] = org_and_project;
        Self::build(
            &base_url,
            api_key.as_deref(),
            &org,
            &project,
            Duration::from_secs(model.timeout_secs),
        )
    }

    /// A provider for `base_url` (e.g. `http://127.0.0.1:8000/v1`) with an optional API key.
    /// Organisation and project headers are not sent (use [`OpenAiProvider::from_config`]).
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ProviderConfigError> {
        Self::build(base_url, api_key, "", "", timeout)
    }

    fn build(
        base_url: &str,
        api_key: Option<&str>,
        org: &str,
        project: &str,
        timeout: Duration,
    ) -> Result<Self, ProviderConfigError> {
        let base_url = normalize_base_url(base_url)?;
        let key = api_key.map(str::trim).unwrap_or_default();
        if HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
            return Err(ProviderConfigError::InvalidHeaderValue {
                var: "the API key".into(),
            });
        }
        // Org and project always explicit: OpenAIConfig::new() would read them from the
        // process environment behind our back.
        let config = OpenAIConfig::new()
            .with_api_base(base_url.clone())
            .with_api_key(key)
            .with_org_id(org)
            .with_project_id(project);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ProviderConfigError::HttpClient(error_chain(&e)))?;
        // `Client::build` installs async-openai's retrying executor; `with_http_service`
        // replaces it with our single-attempt transport. The reqwest client given to `build`
        // is only used to assemble requests.
        let client = Client::build(http.clone(), config)
            .with_http_service(Transport::new(http, !key.is_empty()));
        Ok(OpenAiProvider {
            client,
            base_url,
            timeout,
            max_tokens_field: MaxTokensField::Auto,
        })
    }

    /// Overrides the per-request timeout (tests use sub-second ones).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Overrides which field carries the answer-length limit (see [`MaxTokensField`]).
    pub fn with_max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }

    /// The normalized base URL requests go to (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = wire_request(request, self.max_tokens_field);
        // The timeout covers the whole exchange, body download included (async-openai reads
        // the body after our transport returns), and dropping the future aborts the request.
        let chat = self.client.chat();
        let call = chat.create_byot::<_, CreateChatCompletionResponse>(&body);
        let outcome = tokio::time::timeout(self.timeout, call).await;
        match outcome {
            Err(_elapsed) => Err(LlmError::Timeout(self.timeout)),
            Ok(Ok(response)) => from_openai_response(response),
            // async-openai's types are strict; compatible servers are not always.
            Ok(Err(OpenAIError::JSONDeserialize(_, raw))) => from_lenient_json(&raw),
            Ok(Err(err)) => Err(map_error(err, self.timeout)),
        }
    }
}

/// `model.base_url`, else `OPENAI_BASE_URL` (when non-empty), else OpenAI.
pub fn resolve_base_url(model: &ModelConfig, env: impl Fn(&str) -> Option<String>) -> String {
    model
        .base_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| env(BASE_URL_ENV).filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}

/// Checks the URL and strips trailing slashes: async-openai appends `/chat/completions` to
/// the base verbatim, and `…/v1//chat/completions` is a 404 on several servers.
fn normalize_base_url(url: &str) -> Result<String, ProviderConfigError> {
    let trimmed = url.trim().trim_end_matches('/');
    let invalid = |reason: String| ProviderConfigError::InvalidBaseUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment".into()));
    }
    Ok(trimmed.to_string())
}

/// Whether `model` is one of OpenAI's reasoning models, which take `max_completion_tokens`
/// and reject any `temperature` other than the default.
pub fn is_reasoning_model(model: &str) -> bool {
    let id = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let family = |prefix: &str| id == prefix || id.starts_with(&format!("{prefix}-"));
    family("o1") || family("o3") || family("o4") || id.starts_with("gpt-5")
}

/// The request body as sent: a borrowed view of our [`ChatRequest`], serialized straight into
/// the body by async-openai's bring-your-own-types entry point (`create_byot`). Building
/// async-openai's own request type instead would copy every message (the system message is
/// most of the body) once more per call; the view copies nothing, and the body is the only
/// copy of the text a call holds while it waits for the answer. `temperature` is left out for
/// reasoning models (they only accept the default and would answer 400); the strict JSON
/// schema becomes `response_format: {type: json_schema, json_schema: {name, schema, strict:
/// true}}`. A test checks it serializes exactly as async-openai's
/// `CreateChatCompletionRequest` would.
#[derive(serde::Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<WireFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
}

#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireFormat<'a> {
    JsonSchema { json_schema: WireSchema<'a> },
}

#[derive(serde::Serialize)]
struct WireSchema<'a> {
    name: &'a str,
    schema: &'a Value,
    strict: bool,
}

fn wire_request(req: &ChatRequest, field: MaxTokensField) -> WireRequest<'_> {
    let reasoning = is_reasoning_model(&req.model);
    let completion_field = match field {
        MaxTokensField::Auto => reasoning,
        MaxTokensField::MaxTokens => false,
        MaxTokensField::MaxCompletionTokens => true,
    };
    WireRequest {
        model: &req.model,
        messages: &req.messages,
        max_tokens: (!completion_field).then_some(req.max_tokens),
        max_completion_tokens: completion_field.then_some(req.max_tokens),
        temperature: (!reasoning).then_some(req.temperature),
        response_format: req
            .json_schema
            .as_ref()
            .map(|(name, schema)| WireFormat::JsonSchema {
                json_schema: WireSchema {
                    name,
                    schema,
                    strict: true,
                },
            }),
        seed: req.seed,
        prompt_cache_key: req.prompt_cache_key.as_deref(),
    }
}

fn from_openai_response(resp: CreateChatCompletionResponse) -> Result<ChatResponse, LlmError> {
    let usage = resp
        .usage
        .map(|u| TokenUsage {
            prompt_tokens: u64::from(u.prompt_tokens),
            completion_tokens: u64::from(u.completion_tokens),
            cached_tokens: u64::from(
                u.prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
            ),
        })
        .unwrap_or_default();
    let choice = resp
        .choices
        .iter()
        .find(|c| c.index == 0)
        .or(resp.choices.first())
        .ok_or_else(|| LlmError::BadResponse("the response has no choices".into()))?;
    let content = match (&choice.message.content, &choice.message.refusal) {
        (Some(content), _) => content.clone(),
        (None, Some(refusal)) => {
            return Err(LlmError::BadResponse(format!(
                "the model refused: {refusal}"
            )))
        }
        (None, None) => {
            return Err(LlmError::BadResponse(format!(
                "choice 0 has no content (finish_reason: {:?})",
                choice.finish_reason
            )))
        }
    };
    Ok(ChatResponse {
        content,
        model: resp.model,
        usage,
    })
}

/// Reads a chat.completion body that async-openai's strict types rejected. Compatible servers
/// differ in small ways (a `finish_reason` of `"eos"` or `"abort"`, content given as a list
/// of parts, usage fields missing); those still carry a usable answer. A JSON error object
/// in a 200 response (some gateways do that) is reported as such.
fn from_lenient_json(raw: &str) -> Result<ChatResponse, LlmError> {
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        LlmError::BadResponse(format!("response is not JSON ({e}): {}", truncate(raw)))
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        return Err(LlmError::BadResponse(format!(
            "provider returned an error object: {}",
            truncate(&message)
        )));
    }
    let message = value.pointer("/choices/0/message").ok_or_else(|| {
        LlmError::BadResponse(format!(
            "response has no choices[0].message: {}",
            truncate(raw)
        ))
    })?;
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<String>(),
        _ => match message.get("refusal").and_then(Value::as_str) {
            Some(refusal) => {
                return Err(LlmError::BadResponse(format!(
                    "the model refused: {refusal}"
                )))
            }
            None => return Err(LlmError::BadResponse("choice 0 has no text content".into())),
        },
    };
    let number = |pointer: &str| value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    Ok(ChatResponse {
        content,
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        usage: TokenUsage {
            prompt_tokens: number("/usage/prompt_tokens"),
            completion_tokens: number("/usage/completion_tokens"),
            cached_tokens: number("/usage/prompt_tokens_details/cached_tokens"),
        },
    })
}

fn map_error(err: OpenAIError, timeout: Duration) -> LlmError {
    match err {
        OpenAIError::Boxed(boxed) => {
            if let Some(status) = boxed.downcast_ref::<HttpStatusError>() {
                return from_status(status.status, status.retry_after, &status.body);
            }
            if let Some(reqwest_err) = boxed.downcast_ref::<reqwest::Error>() {
                return from_reqwest(reqwest_err, timeout);
            }
            LlmError::Transport(error_chain(boxed.as_ref()))
        }
        OpenAIError::Reqwest(e) => from_reqwest(&e, timeout),
        // Only reached if a response bypassed our transport's status check.
        OpenAIError::ApiError(api) => {
            from_status(api.status_code.as_u16(), None, &api.api_error.message)
        }
        OpenAIError::JSONDeserialize(e, raw) => {
            LlmError::BadResponse(format!("{e}: {}", truncate(&raw)))
        }
        // Status 0: refused before anything was sent, so retrying cannot help.
        OpenAIError::InvalidArgument(msg) => LlmError::Client {
            status: 0,
            message: format!("request could not be built: {msg}"),
        },
        other => LlmError::BadResponse(other.to_string()),
    }
}

fn from_status(status: u16, retry_after: Option<Duration>, body: &str) -> LlmError {
    let message = error_message(body);
    match status {
        429 => LlmError::RateLimited { retry_after },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::Client { status, message },
    }
}

fn from_reqwest(err: &reqwest::Error, timeout: Duration) -> LlmError {
    if err.is_timeout() {
        LlmError::Timeout(timeout)
    } else {
        // Connect failures, resets, and errors while streaming the body are all worth a retry.
        LlmError::Transport(error_chain(err))
    }
}

/// OpenAI-shaped error bodies (`{"error": {"message": …}}`) give their message; anything
/// else (an HTML page from a proxy, plain text) is quoted, truncated.
fn error_message(body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .and_then(Value::as_str)
    });
    match message {
        Some(m) => truncate(m),
        None if body.trim().is_empty() => "(empty body)".to_string(),
        None => truncate(body.trim()),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(ERROR_BODY_LIMIT) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// "error sending request: … : connection refused" rather than the outermost layer only.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Parses `Retry-After`: delay-seconds (fractions tolerated) or an HTTP-date, relative to
/// `now`. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten();
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The server's requested wait: OpenAI's `retry-after-ms` when present (more precise), else
/// the standard `Retry-After`.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Duration::try_from_secs_f64(ms / 1000.0).ok();
        }
    }
    header("retry-after").and_then(|v| parse_retry_after(v, now))
}

/// The HTTP layer under async-openai: builds the request from async-openai's factory, sends
/// it once, and turns a non-2xx status into [`HttpStatusError`]. No retries, by design.
#[derive(Clone)]
struct Transport {
    http: reqwest::Client,
    /// False when no API key is configured: then no `Authorization` header is sent at all
    /// rather than an empty `Bearer`, which some gateways reject.
    send_auth: bool,
}

impl Transport {
    fn new(http: reqwest::Client, send_auth: bool) -> Self {
        Transport { http, send_auth }
    }
}

type TransportFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let send_auth = self.send_auth;
        Box::pin(async move {
            let mut request = factory.build().await?;
            if !send_auth {
                request.headers_mut().remove(AUTHORIZATION);
            }
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retry_after = retry_after(response.headers(), SystemTime::now());
            let body = match response.text().await {
                Ok(text) => truncate(&text),
                Err(e) => format!("(body unreadable: {e})"),
            };
            Err(OpenAIError::Boxed(Box::new(HttpStatusError {
                status: status.as_u16(),
                retry_after,
                body,
            })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Role;

    fn cfg() -> ModelConfig {
        ModelConfig {
            name: "cheap".into(),
            model: "gpt-4o-mini".into(),
            base_url: None,
            api_key_env: None,
            prices: Default::default(),
            context_window: 128_000,
            max_output_tokens: 2_000,
            tokenizer: None,
            timeout_secs: 7,
            max_retries: 3,
            rpm: None,
            tpm: None,
        }
    }

    fn request(model: &str) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "rubric".into(),
                },
                Message {
                    role: Role::User,
                    content: "transcript".into(),
                },
                Message {
                    role: Role::Assistant,
                    content: "prior".into(),
                },
            ],
            temperature: 0.2,
            seed: Some(7),
            max_tokens: 500,
            json_schema: Some((
                "judgment".into(),
                std::sync::Arc::new(serde_json::json!({"type": "object"})),
            )),
            prompt_cache_key: Some("stage:v1".into()),
        }
    }

    /// async-openai's own request type, built the way this module used to build it: the
    /// reference [`wire_request`] must serialize identically to.
    #[allow(deprecated)]
    fn reference_request(req: &ChatRequest, field: MaxTokensField) -> Value {
        use async_openai::types::chat::{
            ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
            ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
            CreateChatCompletionRequest, ResponseFormat, ResponseFormatJsonSchema,
        };
        let reasoning = is_reasoning_model(&req.model);
        let completion_field = match field {
            MaxTokensField::Auto => reasoning,
            MaxTokensField::MaxTokens => false,
            MaxTokensField::MaxCompletionTokens => true,
        };
        let message = |m: &Message| -> ChatCompletionRequestMessage {
            let content = m.content.to_string();
            match m.role {
                Role::System => ChatCompletionRequestSystemMessage::from(content).into(),
                Role::User => ChatCompletionRequestUserMessage::from(content).into(),
                Role::Assistant => ChatCompletionRequestAssistantMessage::from(content).into(),
            }
        };
        // Through the text, as the body is: serializing an f32 into a `Value` widens it to
        // 0.20000000298…, while the body says 0.2 either way.
        let body = serde_json::to_string(&CreateChatCompletionRequest {
            model: req.model.clone(),
            messages: req.messages.iter().map(message).collect(),
            temperature: (!reasoning).then_some(req.temperature),
            seed: req.seed,
            max_tokens: (!completion_field).then_some(req.max_tokens),
            max_completion_tokens: completion_field.then_some(req.max_tokens),
            response_format: req.json_schema.as_ref().map(|(name, schema)| {
                ResponseFormat::JsonSchema {
                    json_schema: ResponseFormatJsonSchema {
                        description: None,
                        name: name.clone(),
                        schema: (**schema).clone(),
                        strict: Some(true),
                    },
                }
            }),
            prompt_cache_key: req.prompt_cache_key.clone(),
            ..Default::default()
        })
        .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    fn to_openai_request(req: &ChatRequest, field: MaxTokensField) -> Value {
        serde_json::to_value(wire_request(req, field)).unwrap()
    }

    #[test]
    fn wire_body_equals_async_openai_serialization() {
        let mut cases = Vec::new();
        for model in ["gpt-4o-mini", "o3-mini", "llama3"] {
            for field in [
                MaxTokensField::Auto,
                MaxTokensField::MaxTokens,
                MaxTokensField::MaxCompletionTokens,
            ] {
                let mut bare = request(model);
                bare.seed = None;
                bare.json_schema = None;
                bare.prompt_cache_key = None;
                bare.messages[1].content = "quote \" \\ \n \u{1F600} é".into();
                cases.push((request(model), field));
                cases.push((bare, field));
            }
        }
        for (req, field) in &cases {
            let ours = serde_json::to_string(&wire_request(req, *field)).unwrap();
            let theirs = reference_request(req, *field);
            assert_eq!(
                serde_json::from_str::<Value>(&ours).unwrap(),
                theirs,
                "{} {field:?}",
                req.model
            );
        }
    }

    #[test]
    fn request_json_has_what_servers_read() {
        let body = to_openai_request(&request("gpt-4o-mini"), MaxTokensField::Auto);
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][0]["content"], "rubric");
        assert_eq!(body["messages"][1]["role"], "user");
        assert_eq!(body["messages"][2]["role"], "assistant");
        assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["max_tokens"], 500);
        assert!(body.get("max_completion_tokens").is_none());
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["name"], "judgment");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["type"],
            "object"
        );
        assert_eq!(body["prompt_cache_key"], "stage:v1");
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
        let body = to_openai_request(&request("o3-mini"), MaxTokensField::Auto);
        assert_eq!(body["max_completion_tokens"], 500);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("temperature").is_none());
        let forced = to_openai_request(&request("llama3"), MaxTokensField::MaxCompletionTokens);
        assert_eq!(forced["max_completion_tokens"], 500);
        assert!(is_reasoning_model("gpt-5-mini"));
        assert!(is_reasoning_model("openai/o1"));
        assert!(!is_reasoning_model("gpt-4o"));
        assert!(!is_reasoning_model("o1x"));
    }

    #[test]
    fn base_url_precedence_and_normalization() {
        let no_env = |_: &str| None;
        let env = |var: &str| (var == BASE_URL_ENV).then(|| "http://env:1/v1".to_string());
        assert_eq!(resolve_base_url(&cfg(), no_env), DEFAULT_BASE_URL);
        assert_eq!(resolve_base_url(&cfg(), env), "http://env:1/v1");
        let mut with_url = cfg();
        with_url.base_url = Some("http://cfg:2/v1/".into());
        assert_eq!(resolve_base_url(&with_url, env), "http://cfg:2/v1/");
        assert_eq!(
            normalize_base_url("http://cfg:2/v1/").unwrap(),
            "http://cfg:2/v1"
        );
        assert!(normalize_base_url("localhost:8000").is_err());
        assert!(normalize_base_url("ftp://x/v1").is_err());
        assert!(normalize_base_url("not a url").is_err());
    }

    #[test]
    fn from_config_reads_env_and_rejects_bad_values() {
        let env = |var: &str| match var {
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:9/v1/".to_string()),
            "OPENAI_API_KEY" => Some("sk-test".to_string()),
            _ => None,
        };
        let provider = OpenAiProvider::from_config_with_env(&cfg(), env).unwrap();
        assert_eq!(provider.base_url(), "http://127.0.0.1:9/v1");
        assert_eq!(provider.timeout(), Duration::from_secs(7));
        assert!(!format!("{provider:?}").contains("sk-test"));

        // No key at all is fine (local servers).
        assert!(OpenAiProvider::from_config_with_env(&cfg(), |_| None).is_ok());

        let mut named = cfg();
        named.api_key_env = Some("STRONG_KEY".into());
        let err = OpenAiProvider::from_config_with_env(&named, |_| None).unwrap_err();
        assert!(matches!(err, ProviderConfigError::MissingApiKey { .. }));
        assert_eq!(
            err.to_string(),
            "environment variable STRONG_KEY (the API key of model \"cheap\") is not set"
        );

        let bad_key = |var: &str| (var == API_KEY_ENV).then(|| "sk\nx".to_string());
        assert!(matches!(
            OpenAiProvider::from_config_with_env(&cfg(), bad_key),
            Err(ProviderConfigError::InvalidHeaderValue { .. })
        ));
        let bad_org = |var: &str| (var == "OPENAI_ORG_ID").then(|| "org\r\nx".to_string());
        assert!(matches!(
            OpenAiProvider::from_config_with_env(&cfg(), bad_org),
            Err(ProviderConfigError::InvalidHeaderValue { .. })
        ));
    }

    #[test]
    fn retry_after_seconds_dates_and_ms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);

        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn statuses_map_to_retryable_or_not() {
        let openai_body = r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
        assert!(matches!(
            from_status(429, Some(Duration::from_secs(1)), openai_body),
            LlmError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(1)
        ));
        match from_status(503, None, "<html>bad gateway</html>") {
            LlmError::Server { status, message } => {
                assert_eq!(status, 503);
                assert_eq!(message, "<html>bad gateway</html>");
            }
            other => panic!("{other:?}"),
        }
        match from_status(400, None, r#"{"error":{"message":"Invalid schema"}}"#) {
            LlmError::Client { status, message } => {
                assert_eq!((status, message.as_str()), (400, "Invalid schema"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_status(404, None, ""),
            LlmError::Client { status: 404, message } if message == "(empty body)"
        ));
    }

    #[test]
    fn lenient_parsing_accepts_nonstandard_but_usable_bodies() {
        let raw = r#"{"model":"llama3","choices":[{"index":0,"finish_reason":"eos",
            "message":{"role":"assistant","content":[{"type":"text","text":"{\"a\""},{"type":"text","text":":1}"}]}}],
            "usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        let resp = from_lenient_json(raw).unwrap();
        assert_eq!(resp.content, "{\"a\":1}");
        assert_eq!(resp.model, "llama3");
        assert_eq!(
            resp.usage,
            TokenUsage {
                prompt_tokens: 12,
                completion_tokens: 3,
                cached_tokens: 0
            }
        );
        let err = from_lenient_json(r#"{"error":{"message":"upstream overloaded"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider response could not be read: provider returned an error object: upstream overloaded"
        );
        assert!(matches!(
            from_lenient_json("<html>"),
            Err(LlmError::BadResponse(_))
        ));
        assert!(matches!(
            from_lenient_json(r#"{"choices":[]}"#),
            Err(LlmError::BadResponse(_))
        ));
    }

    #[test]
    fn truncation_is_char_safe() {
        let long = "é".repeat(ERROR_BODY_LIMIT + 5);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), ERROR_BODY_LIMIT + 1);
        assert!(cut.ends_with('…'));
    }
}
