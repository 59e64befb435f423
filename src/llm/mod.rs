//! Talking to models. `Provider` is the seam the judge depends on; `llm::openai` is the only
//! place that knows async-openai. Retries, token counting and cost live here too.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message. The content is shared, not owned: a grading's messages are cloned into
/// every sample's request and repair turn, and the system message is one string per prompt
/// version shared by every grading, so cloning a message never copies its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Arc<str>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<Arc<str>>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// One chat-completion request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    pub max_tokens: u32,
    /// Strict JSON-schema structured output: (schema name, schema). Shared: the schema is
    /// built once per prompt version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<(String, Arc<serde_json::Value>)>,
    /// Sent as `prompt_cache_key` where the provider supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The assistant message text (the JSON judgment, when all goes well).
    pub content: String,
    /// The model id the provider says answered.
    pub model: String,
    pub usage: TokenUsage,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("rate limited by the provider (HTTP 429){}", .retry_after.map(|d| format!(", retry after {:.1}s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        retry_after: Option<std::time::Duration>,
    },
    #[error("provider server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("provider rejected the request (HTTP {status}): {message}")]
    Client { status: u16, message: String },
    #[error("provider request timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("could not reach the provider: {0}")]
    Transport(String),
    #[error("provider response could not be read: {0}")]
    BadResponse(String),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Exhausted { attempts: u32, last: Box<LlmError> },
}

/// An OpenAI-compatible chat completion endpoint. Implementations do one attempt per call;
/// retrying is [`retry`]'s job so the policy is ours, bounded, and not doubled by a client library.
#[async_trait]
pub trait Provider: Send + Sync {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;
}

/// Prices in USD per million tokens. Cached input tokens are billed at their own rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub input_per_mtok: f64,
    #[serde(default)]
    pub cached_input_per_mtok: f64,
    pub output_per_mtok: f64,
}

fn default_timeout_secs() -> u64 {
    60
}
fn default_max_retries() -> u32 {
    3
}
fn default_context_window() -> u64 {
    128_000
}
fn default_max_output_tokens() -> u32 {
    2_000
}

/// One model the router may use, as declared in `grader.toml` (`[[models]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Local name used in routes and reports (`cheap`, `strong`, ...).
    pub name: String,
    /// Model id sent to the provider (`gpt-4o-mini`).
    pub model: String,
    /// OpenAI-compatible base URL (`https://api.openai.com/v1`); `None` = `OPENAI_BASE_URL` or OpenAI.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key (default `OPENAI_API_KEY`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub prices: Prices,
    #[serde(default = "default_context_window")]
    pub context_window: u64,
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u32,
    /// tiktoken encoding name (`o200k_base`, `cl100k_base`); `None` = chosen from the model id.
    #[serde(default)]
    pub tokenizer: Option<String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries after the first attempt on 429 / 5xx / timeout.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Client-side limit in requests per minute; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Client-side limit in tokens (prompt + completion) per minute; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl ModelConfig {
    /// The rate limits the router enforces for this model.
    pub fn limits(&self) -> ratelimit::ModelLimits {
        ratelimit::ModelLimits {
            rpm: self.rpm,
            tpm: self.tpm,
        }
    }
}

pub mod bpe;
pub mod breaker;
pub mod cost;
pub mod openai;
pub mod ratelimit;
pub mod retry;
pub mod router;
pub mod tokens;

pub use cost::cost_usd;
pub use openai::OpenAiProvider;
pub use retry::{complete_with_retry, RetryPolicy};
pub use tokens::{check_budget, count_messages, count_tokens, encoding_for, Encoding, TokenError};
