//! The real OpenAI provider (async-openai underneath) against the stand-in server: what is
//! sent, what is read back, and that retries are ours alone.

mod support;

use std::time::Duration;

use grader::llm::openai::{OpenAiProvider, ProviderConfigError};
use grader::llm::retry::{complete_with_retry, RetryPolicy};
use grader::llm::tokens::{check_budget, count_messages, count_tokens, Encoding};
use grader::llm::{ChatRequest, LlmError, Message, ModelConfig, Provider, Role, TokenUsage};
use serde_json::json;
use support::{Scripted, StandIn};

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message {
                role: Role::System,
                content: "You grade system-design interviews.".into(),
            },
            Message {
                role: Role::User,
                content: "<transcript>Candidate: we use hybrid search.</transcript>".into(),
            },
        ],
        temperature: 0.0,
        seed: Some(42),
        max_tokens: 800,
        json_schema: Some((
            "judgment".into(),
            std::sync::Arc::new(json!({
                "type": "object",
                "properties": {"score": {"type": "integer"}},
                "required": ["score"],
                "additionalProperties": false
            })),
        )),
        prompt_cache_key: Some("system_design@v1".into()),
    }
}

fn provider(server: &StandIn) -> OpenAiProvider {
    OpenAiProvider::new(&server.base_url, Some("sk-test"), Duration::from_secs(10))
        .expect("provider for the stand-in")
}

/// Quick backoff so tests spend their time only where they mean to (Retry-After, timeouts).
fn policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    }
}

fn model_config(base_url: &str) -> ModelConfig {
    ModelConfig {
        name: "cheap".into(),
        model: "gpt-4o-mini".into(),
        base_url: Some(base_url.into()),
        api_key_env: None,
        prices: Default::default(),
        context_window: 128_000,
        max_output_tokens: 2_000,
        tokenizer: None,
        timeout_secs: 10,
        max_retries: 2,
        rpm: None,
        tpm: None,
    }
}

#[tokio::test]
async fn completion_returns_content_and_usage_and_sends_the_whole_request() {
    let server = StandIn::start().await;
    server.push(Scripted::reply_with_usage(
        r#"{"score":3}"#,
        1_500,
        40,
        1_024,
    ));

    let response = provider(&server).complete(&request()).await.unwrap();

    assert_eq!(response.content, r#"{"score":3}"#);
    assert_eq!(response.model, "gpt-4o-mini");
    assert_eq!(
        response.usage,
        TokenUsage {
            prompt_tokens: 1_500,
            completion_tokens: 40,
            cached_tokens: 1_024
        }
    );

    let recorded = server.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(recorded[0].authorization.as_deref(), Some("Bearer sk-test"));
    let sent = &recorded[0].body;
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You grade system-design interviews."},
            {"role": "user", "content": "<transcript>Candidate: we use hybrid search.</transcript>"}
        ])
    );
    assert_eq!(sent["temperature"], 0.0);
    assert_eq!(sent["seed"], 42);
    assert_eq!(sent["max_tokens"], 800);
    assert_eq!(
        sent["response_format"],
        json!({
            "type": "json_schema",
            "json_schema": {
                "name": "judgment",
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {"score": {"type": "integer"}},
                    "required": ["score"],
                    "additionalProperties": false
                }
            }
        })
    );
    assert_eq!(sent["prompt_cache_key"], "system_design@v1");
    assert!(sent.get("stream").is_none());
}

#[tokio::test]
async fn without_a_key_no_authorization_header_is_sent() {
    let server = StandIn::start().await;
    server.push(Scripted::reply("ok"));
    let provider = OpenAiProvider::new(&server.base_url, None, Duration::from_secs(10)).unwrap();
    provider.complete(&request()).await.unwrap();
    assert_eq!(server.recorded()[0].authorization, None);
}

#[tokio::test]
async fn base_url_from_model_config_with_or_without_v1_and_trailing_slash() {
    let server = StandIn::start().await;
    server.push_n(2, Scripted::reply("ok"));
    let root = format!("http://{}/", server.addr);
    let from_root = OpenAiProvider::from_config_with_env(&model_config(&root), |_| None).unwrap();
    from_root.complete(&request()).await.unwrap();
    let with_v1 = format!("{}/", server.base_url);
    let from_v1 = OpenAiProvider::from_config_with_env(&model_config(&with_v1), |_| None).unwrap();
    from_v1.complete(&request()).await.unwrap();
    let paths: Vec<_> = server.recorded().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/chat/completions", "/v1/chat/completions"]);
}

#[tokio::test]
async fn rate_limit_honours_retry_after_then_succeeds() {
    let server = StandIn::start().await;
    server.push(Scripted::rate_limited("1"));
    server.push(Scripted::reply("after the wait"));

    let (response, attempts) = complete_with_retry(&provider(&server), &request(), &policy(3))
        .await
        .unwrap();

    assert_eq!(response.content, "after the wait");
    assert_eq!(attempts, 2);
    assert_eq!(server.calls(), 2);
    let recorded = server.recorded();
    let waited = recorded[1].at.duration_since(recorded[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the 1 s Retry-After"
    );
}

#[tokio::test]
async fn a_single_call_is_a_single_request_even_on_500() {
    // async-openai's own retry layer would turn this into several requests.
    let server = StandIn::start().await;
    server.push_n(10, Scripted::error(500, "upstream exploded"));
    let err = provider(&server).complete(&request()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Server { status: 500, message } if message == "upstream exploded"),
        "{err:?}"
    );
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn server_errors_exhaust_the_retries_with_a_clear_error() {
    let server = StandIn::start().await;
    server.push_n(10, Scripted::error(503, "The server is overloaded"));

    let err = complete_with_retry(&provider(&server), &request(), &policy(2))
        .await
        .unwrap_err();

    assert_eq!(server.calls(), 3, "max_retries + 1 requests, no more");
    match &err {
        LlmError::Exhausted { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(matches!(**last, LlmError::Server { status: 503, .. }));
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempts; last error: provider server error (HTTP 503): The server is overloaded"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = StandIn::start().await;
    server.push(Scripted::error(
        400,
        "Invalid schema for response_format 'judgment'",
    ));
    server.push(Scripted::reply("never reached"));

    let err = complete_with_retry(&provider(&server), &request(), &policy(3))
        .await
        .unwrap_err();

    assert_eq!(server.calls(), 1);
    assert_eq!(
        err.to_string(),
        "provider rejected the request (HTTP 400): Invalid schema for response_format 'judgment'"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let server = StandIn::start().await;
    server.push(Scripted::delay(
        Duration::from_secs(5),
        Scripted::reply("too late"),
    ));
    server.push(Scripted::delay(
        Duration::from_secs(5),
        Scripted::reply("too late"),
    ));
    server.push(Scripted::reply("in time"));
    let timeout = Duration::from_millis(500);
    let provider = provider(&server).with_timeout(timeout);

    let err = provider.complete(&request()).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Timeout(t) if t == timeout),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "provider request timed out after 500ms");

    let (response, attempts) = complete_with_retry(&provider, &request(), &policy(3))
        .await
        .unwrap();
    assert_eq!(response.content, "in time");
    assert_eq!(attempts, 2);
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_transport_error() {
    // A port that was just free: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider =
        OpenAiProvider::new(&format!("http://{addr}/v1"), None, Duration::from_secs(5)).unwrap();

    let err = complete_with_retry(&provider, &request(), &policy(1))
        .await
        .unwrap_err();

    match err {
        LlmError::Exhausted { attempts: 2, last } => {
            assert!(matches!(*last, LlmError::Transport(_)), "{last:?}");
        }
        other => panic!("expected Exhausted after transport errors, got {other:?}"),
    }
}

#[tokio::test]
async fn nonstandard_but_usable_responses_are_accepted() {
    // finish_reason "eos" and no usage: async-openai's strict types reject it; we read it.
    let server = StandIn::start().await;
    server.push(Scripted::RawJson(json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "llama3.1:8b",
        "choices": [{"index": 0, "finish_reason": "eos",
                     "message": {"role": "assistant", "content": "{\"score\":2}"}}]
    })));
    let response = provider(&server).complete(&request()).await.unwrap();
    assert_eq!(response.content, "{\"score\":2}");
    assert_eq!(response.model, "llama3.1:8b");
    assert_eq!(response.usage, TokenUsage::default());
}

#[tokio::test]
async fn dynamic_responses_see_the_request() {
    let server = StandIn::start().await;
    server.set_default(Scripted::dynamic(|body| {
        Scripted::reply(format!("seed was {}", body["seed"]))
    }));
    let response = provider(&server).complete(&request()).await.unwrap();
    assert_eq!(response.content, "seed was 42");
}

#[test]
fn missing_named_key_is_a_config_error() {
    let mut cfg = model_config("http://127.0.0.1:1/v1");
    cfg.api_key_env = Some("GRADER_TEST_SURELY_UNSET_KEY".into());
    let err = OpenAiProvider::from_config_with_env(&cfg, |_| None).unwrap_err();
    assert!(matches!(err, ProviderConfigError::MissingApiKey { .. }));
}

#[test]
fn token_counts_and_budget_message() {
    assert_eq!(count_tokens(Encoding::Cl100kBase, "hello world"), 2);
    assert_eq!(count_tokens(Encoding::O200kBase, "hello world"), 2);
    let messages = [Message {
        role: Role::User,
        content: "hello world".into(),
    }];
    // 3 framing + 1 role + 2 content + 3 reply priming
    assert_eq!(count_messages(Encoding::O200kBase, &messages), 9);

    let cfg = model_config("http://127.0.0.1:1/v1");
    assert!(check_budget(&cfg, 126_000).is_ok());
    let err = check_budget(&cfg, 150_234).unwrap_err();
    assert_eq!(
        err.to_string(),
        "prompt is 150,234 tokens; model gpt-4o-mini allows 128,000 minus 2,000 reserved for \
         the answer (126,000 for the prompt)"
    );
}
