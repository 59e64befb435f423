//! Fixtures shared by the integration tests: the repository root, the shipped prompts, a short
//! system-design transcript, the `grader` binary with a clean environment, and a builder for
//! valid judgments from whatever rubric a request's strict schema names.

use std::path::PathBuf;
use std::process::{Command, Output};

use grader::domain::{Format, Speaker, Stage, Submission, Transcript, Turn};
use grader::prompts::{PromptVersion, Registry};
use serde_json::{json, Value};

/// A short system-design exchange with signals a judge can quote.
pub const TRANSCRIPT: &str = "Interviewer: How would you design retrieval for 10,000 contracts?\n\
Candidate: I would use hybrid search, BM25 plus dense retrieval, then a cross-encoder re-ranker.\n\
Interviewer: And how do you know it works?\n\
Candidate: We keep a golden regression set and track recall@k and faithfulness on every prompt change.\n";

/// The shipped strong system-design sample, relative to [`root`].
pub const STRONG: &str = "examples/transcripts/system_design_strong.txt";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped judge prompts.
pub fn registry() -> Registry {
    Registry::load(&root().join("prompts")).expect("the shipped prompts load")
}

pub fn system_design(reg: &Registry) -> &PromptVersion {
    reg.for_stage(Stage::SystemDesign)
        .expect("a system_design prompt")
}

/// The binary, run from the repository root, with no provider, config or database settings
/// leaking in from the machine.
pub fn grader_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grader"));
    cmd.current_dir(root());
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "GRADER_MODEL",
        "GRADER_CONFIG",
        "GRADER_SAMPLES",
        "GRADER_PROMPTS_DIR",
        "GRADER_DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command off the async runtime's threads so an in-test server keeps serving.
pub async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run grader"))
        .await
        .expect("join")
}

/// A valid judgment for the rubric named by `schema` (the strict output schema): every
/// dimension at `score`, the given flags raised, each quoting the first words the candidate
/// said in the `user` message's data block.
pub fn judgment_json(schema: &Value, user: &str, score: i64, flags: &[String]) -> Value {
    let dims = schema["properties"]["scores"]["items"]["properties"]["dimension"]["enum"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let quote: String = user
        .split("Candidate: ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take(30)
        .collect();
    json!({
        "scores": dims.iter().map(|d| json!({
            "dimension": d, "score": score, "rationale": "scripted", "evidence": [quote]
        })).collect::<Vec<_>>(),
        "flags": flags.iter().map(|f| json!({"id": f, "evidence": [quote]})).collect::<Vec<_>>(),
        "summary": "scripted"
    })
}

/// [`judgment_json`] for a chat-completion request as the stand-in recorded it.
pub fn judgment_for_request(request: &Value, score: i64) -> Value {
    let schema = &request["response_format"]["json_schema"]["schema"];
    let user = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    judgment_json(schema, user, score, &[])
}

/// A one-turn system-design-style submission for store-level tests: `text` is the
/// candidate's only turn.
pub fn submission(tenant: &str, stage: Stage, text: &str) -> Submission {
    let line = format!("Candidate: {text}\n");
    Submission {
        tenant: tenant.to_string(),
        stage,
        question: Some("Design a RAG system for support tickets.".into()),
        transcript: Transcript {
            format: Format::Speaker,
            turns: vec![Turn {
                speaker: Speaker::Candidate,
                text: text.to_string(),
                start: "Candidate: ".chars().count(),
                end: line.chars().count() - 1,
                start_ms: None,
                end_ms: None,
            }],
            text: line,
        },
        candidate: None,
        external_id: Some("ext-1".into()),
        metadata: json!({"job": "llm-engineer"}),
    }
}
