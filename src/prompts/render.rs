//! Rendering a prompt version into chat messages: the static system message (rubric, flags,
//! examples, rules) first, then the user message carrying the candidate's content inside a
//! boundary-delimited data block.

use std::collections::BTreeSet;

use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{PromptError, PromptFile, PromptVersion};
use crate::domain::{Dimension, FlagDef, Stage};
use crate::llm::{Message, Role};
use crate::prompts::Example;

/// The variables both templates get; the only ones the system template may use.
pub const STATIC_VARS: [&str; 4] = ["prompt", "dimensions", "flags", "examples"];

/// The per-candidate variables only the user template gets. The system template must not use
/// them: its output has to be byte-identical for every candidate of a stage so providers can
/// cache it as a prompt prefix.
pub const CANDIDATE_VARS: [&str; 4] = ["question", "transcript", "format", "boundary"];

/// What varies per grading request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderInput {
    /// The interview question or take-home prompt, where there is one.
    pub question: Option<String>,
    /// The candidate content: the normalized transcript text.
    pub transcript: String,
    /// The input format's name (`speaker`, `vtt`, `written_answer`, ...).
    pub format: String,
}

/// The messages to send, system first then user, and the boundary token that delimits the
/// candidate's data block (callers may use it to check a model's output did not echo it).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub messages: Vec<Message>,
    pub boundary: String,
}

/// Compiled templates, the static context and the rendered system message of one prompt
/// version; built once and cached inside the [`PromptVersion`].
pub(crate) struct Compiled {
    pub(crate) env: Environment<'static>,
    pub(crate) static_ctx: Value,
    /// Shared by every grading's messages (one copy per prompt version, not per grading).
    pub(crate) system: std::sync::Arc<str>,
}

#[derive(Serialize)]
struct PromptMeta<'a> {
    id: &'a str,
    version: &'a str,
    title: &'a str,
    description: &'a str,
    stage: Stage,
}

#[derive(Serialize)]
struct StaticCtx<'a> {
    prompt: PromptMeta<'a>,
    dimensions: &'a [Dimension],
    flags: &'a [FlagDef],
    examples: &'a [Example],
}

/// The template environment every prompt uses: strict undefined so a typo'd variable is an
/// error rather than an empty string in a judge prompt; HF-chat-template whitespace rules;
/// no HTML escaping (prompts are plain text).
pub(crate) fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

/// The static variables: `prompt`, `dimensions`, `flags`, `examples`.
pub(crate) fn static_context(file: &PromptFile) -> Value {
    Value::from_serialize(StaticCtx {
        prompt: PromptMeta {
            id: &file.id,
            version: &file.version,
            title: &file.title,
            description: &file.description,
            stage: file.stage,
        },
        dimensions: &file.dimensions,
        flags: &file.flags,
        examples: &file.examples,
    })
}

/// The full user-template context: the static variables plus the candidate ones.
pub(crate) fn user_context(static_ctx: &Value, input: &RenderInput, boundary: &str) -> Value {
    context! {
        question => input.question,
        transcript => input.transcript,
        format => input.format,
        boundary => boundary,
        ..static_ctx.clone()
    }
}

/// A minijinja error as one line: kind, detail and `template:line`.
pub(crate) fn describe(err: &minijinja::Error) -> String {
    err.to_string()
}

/// The variables a template reads without defining them (names of globals such as `range`
/// included; callers filter). `None` when the source does not parse.
pub(crate) fn undeclared(source: &str) -> Option<BTreeSet<String>> {
    let env = new_env();
    let tmpl = env.template_from_str(source).ok()?;
    Some(tmpl.undeclared_variables(false).into_iter().collect())
}

/// Candidate variables a system template references, for a message that says what is wrong
/// rather than "undefined value".
pub(crate) fn candidate_vars_in(source: &str) -> Vec<&'static str> {
    let used = undeclared(source).unwrap_or_default();
    CANDIDATE_VARS
        .into_iter()
        .filter(|v| used.contains(*v))
        .collect()
}

pub(crate) fn system_rule_message(vars: &[&str]) -> String {
    let names = vars
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "uses {names}, which only the user template gets; the system message must be identical \
         for every candidate of a stage (providers cache it as a prefix), so it may use only \
         prompt, dimensions, flags and examples"
    )
}

/// Compiles both templates and renders the system message with the static variables only.
/// The error is `(which template, message)` so it can be cached and turned into a
/// [`PromptError::Template`] on every call.
pub(crate) fn compile(file: &PromptFile) -> Result<Compiled, (&'static str, String)> {
    let mut env = new_env();
    env.add_template_owned("system", file.template.system.clone())
        .map_err(|e| ("system", describe(&e)))?;
    env.add_template_owned("user", file.template.user.clone())
        .map_err(|e| ("user", describe(&e)))?;
    let static_ctx = static_context(file);
    let system = env
        .get_template("system")
        .and_then(|t| t.render(&static_ctx))
        .map_err(|e| {
            let vars = candidate_vars_in(&file.template.system);
            if vars.is_empty() {
                ("system", describe(&e))
            } else {
                ("system", system_rule_message(&vars))
            }
        })?;
    Ok(Compiled {
        env,
        static_ctx,
        system: system.into(),
    })
}

/// The per-request delimiter: the first 16 hex chars of sha256(prompt sha256 ‖ transcript ‖
/// question). Derived rather than random so rendering (and so the response cache key) is
/// deterministic, and unpredictable to the candidate, whose text would have to contain its
/// own hash to close the data block early.
pub fn boundary(prompt_sha256: &str, transcript: &str, question: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(prompt_sha256.as_bytes());
    h.update([0u8]);
    h.update(transcript.as_bytes());
    h.update([0u8]);
    if let Some(q) = question {
        h.update(q.as_bytes());
    }
    let mut hex = hex::encode(h.finalize());
    hex.truncate(16);
    hex
}

/// Renders the messages for one grading: the cached system message, then the user template
/// with the candidate's content. Templates are compiled once per [`PromptVersion`].
pub fn render(pv: &PromptVersion, input: &RenderInput) -> Result<Rendered, PromptError> {
    let compiled = pv.compiled()?;
    let boundary = boundary(&pv.sha256, &input.transcript, input.question.as_deref());
    let ctx = user_context(&compiled.static_ctx, input, &boundary);
    let user = compiled
        .env
        .get_template("user")
        .and_then(|t| t.render(ctx))
        .map_err(|e| PromptError::Template {
            key: pv.key(),
            which: "user",
            message: describe(&e),
        })?;
    Ok(Rendered {
        messages: vec![
            Message {
                role: Role::System,
                content: compiled.system.clone(),
            },
            Message {
                role: Role::User,
                content: user.into(),
            },
        ],
        boundary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_16_hex_and_depends_on_every_input() {
        let b = boundary("abc", "t", Some("q"));
        assert_eq!(b.len(), 16);
        assert!(b.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(b, boundary("abc", "t", Some("q")));
        assert_ne!(b, boundary("abd", "t", Some("q")));
        assert_ne!(b, boundary("abc", "u", Some("q")));
        assert_ne!(b, boundary("abc", "t", Some("r")));
    }

    #[test]
    fn undeclared_finds_candidate_vars() {
        let vars = candidate_vars_in("{% if x %}{{ transcript }}{% endif %}{{ prompt.id }}");
        assert_eq!(vars, ["transcript"]);
        assert!(candidate_vars_in("{{ prompt.id }}").is_empty());
    }
}
