//! `grader prompts lint` and `grader prompts lock`: the checks that keep published prompt
//! versions immutable and every rubric complete enough to grade with, and the only writer of
//! the lock file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use regex::RegexBuilder;
use serde::Serialize;

use super::registry::{parse_lock, LOCK_FILE};
use super::render::{
    candidate_vars_in, describe, new_env, static_context, system_rule_message, undeclared,
    user_context, RenderInput, CANDIDATE_VARS, STATIC_VARS,
};
use super::{parse_ref, PromptError, PromptFile, PromptVersion, Registry};
use crate::domain::{Dimension, FlagDef, Matcher, Scale};
use crate::judge::Judgment;

/// Errors fail `grader prompts lint` (and CI); warnings are printed but pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LintSeverity {
    Error,
    Warning,
}

/// One finding about one prompt version (`prompt` is its `id@version` key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintIssue {
    pub severity: LintSeverity,
    pub prompt: String,
    pub message: String,
}

impl fmt::Display for LintIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            LintSeverity::Error => "error",
            LintSeverity::Warning => "warning",
        };
        // Messages that already start with the version key read better without a prefix.
        if self.message.starts_with(&self.prompt) {
            write!(f, "{sev}: {}", self.message)
        } else {
            write!(f, "{sev}: {}: {}", self.prompt, self.message)
        }
    }
}

/// The header written at the top of a new lock file.
const LOCK_HEADER: &str = "\
# Published judge prompt versions: \"id@version\" = sha256 of the prompt file's exact bytes.
# Written by `grader prompts lock`. A published version is immutable: never edit or delete an
# entry; to change a prompt, copy its file to a new version and lock that.
";

/// Sample candidate variables for linting the user template.
const SAMPLE_QUESTION: &str = "Design a retrieval-augmented support assistant.";
const SAMPLE_TRANSCRIPT: &str =
    "Interviewer: How would you evaluate it?\nCandidate: A golden regression set run in CI.\n";
const SAMPLE_BOUNDARY: &str = "0123456789abcdef";

struct Sink<'a> {
    issues: &'a mut Vec<LintIssue>,
    prompt: String,
}

impl Sink<'_> {
    fn error(&mut self, message: impl Into<String>) {
        self.push(LintSeverity::Error, message.into());
    }
    fn warning(&mut self, message: impl Into<String>) {
        self.push(LintSeverity::Warning, message.into());
    }
    fn push(&mut self, severity: LintSeverity, message: String) {
        self.issues.push(LintIssue {
            severity,
            prompt: self.prompt.clone(),
            message,
        });
    }
}

/// Lints every version of the registry and the lock. Issues come grouped per version in
/// registry order, then lock entries whose file is gone.
pub fn lint(reg: &Registry) -> Vec<LintIssue> {
    let mut issues = Vec::new();
    let lock = reg.lock_entries();
    for v in reg.list() {
        let mut sink = Sink {
            issues: &mut issues,
            prompt: v.key(),
        };
        match lock.get(&v.key()) {
            Some(locked) if *locked != v.sha256 => sink.error(format!(
                "{} changed since it was published (lock sha256 {}…, now {}…); published \
                 versions are immutable — copy it to a new version",
                v.key(),
                short(locked),
                short(&v.sha256)
            )),
            Some(_) => {}
            None => sink.warning("unpublished: run `grader prompts lock` to publish"),
        }
        lint_version(v, &mut sink);
    }
    for key in lock.keys() {
        let (id, version) = match parse_ref(key) {
            Ok((id, Some(version))) => (id, version),
            _ => continue,
        };
        if reg.get(&id, &version).is_none() {
            issues.push(LintIssue {
                severity: LintSeverity::Error,
                prompt: key.clone(),
                message: format!(
                    "{key} is in the lock but its file is missing; published versions must stay \
                     (reports and cache keys refer to them) — restore the file"
                ),
            });
        }
    }
    issues
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn lint_version(v: &PromptVersion, sink: &mut Sink<'_>) {
    let pf = &v.file;
    lint_location(v, sink);
    for (field, value) in [("title", &pf.title), ("description", &pf.description)] {
        if value.trim().is_empty() {
            sink.error(format!("prompt {field} is empty"));
        }
    }
    lint_dimensions(&pf.dimensions, sink);
    lint_flags(&pf.flags, sink);
    lint_templates(pf, sink);
    lint_examples(pf, sink);
}

/// The file must sit at `<stage>/<version>.toml` with `id` = directory = stage, so the path a
/// reviewer sees and the identity a report records agree.
fn lint_location(v: &PromptVersion, sink: &mut Sink<'_>) {
    let pf = &v.file;
    let path = v.path.display();
    for (field, value) in [("id", &pf.id), ("version", &pf.version)] {
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            sink.error(format!(
                "{field} `{value}` must be non-empty and use only letters, digits, `_`, `-`, `.`"
            ));
        }
    }
    if let Some(stem) = v.path.file_stem().and_then(|s| s.to_str()) {
        if stem != pf.version {
            sink.error(format!(
                "version `{}` does not match the file name ({path}); name the file {}.toml",
                pf.version, pf.version
            ));
        }
    }
    let dir = v
        .path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    if let Some(dir) = dir {
        if pf.stage.as_str() != dir {
            sink.error(format!(
                "stage `{}` does not match its directory `{dir}/` ({path})",
                pf.stage
            ));
        }
        if pf.id != dir {
            sink.error(format!(
                "id `{}` does not match its directory `{dir}/` ({path})",
                pf.id
            ));
        }
    }
}

fn scale_ok(s: Scale) -> bool {
    s.min == 1 && (s.max == 4 || s.max == 5)
}

fn lint_dimensions(dims: &[Dimension], sink: &mut Sink<'_>) {
    if dims.is_empty() {
        sink.error("rubric has no dimensions");
    }
    let mut seen = BTreeSet::new();
    for d in dims {
        let at = format!("dimension `{}`", d.id);
        if d.id.trim().is_empty() {
            sink.error("a dimension has an empty id");
        } else if !seen.insert(d.id.as_str()) {
            sink.error(format!("duplicate dimension id `{}`", d.id));
        }
        for (field, value) in [("name", &d.name), ("description", &d.description)] {
            if value.trim().is_empty() {
                sink.error(format!("{at}: {field} is empty"));
            }
        }
        if !d.weight.is_finite() || d.weight < 0.0 {
            sink.error(format!(
                "{at}: weight {} must be a non-negative number",
                d.weight
            ));
        }
        let scale = d.scale;
        if !scale_ok(scale) {
            sink.error(format!(
                "{at}: scale {}-{} is not 1-4 or 1-5",
                scale.min, scale.max
            ));
        }
        if d.rag_maturity && (scale.min, scale.max) != (1, 4) {
            sink.error(format!(
                "{at}: rag_maturity needs a 1-4 scale (the four RAG maturity levels), not {}-{}",
                scale.min, scale.max
            ));
        }
        // Anchors: one non-empty description per level, nothing outside the scale. Only
        // meaningful on a sane scale; a broken scale is already an error above.
        if scale.min <= scale.max && scale.max <= 10 {
            for level in scale.levels() {
                match d.anchor(level) {
                    None => sink.error(format!("{at}: no anchor for level {level}")),
                    Some(text) if text.trim().is_empty() => {
                        sink.error(format!("{at}: anchor for level {level} is empty"))
                    }
                    Some(_) => {}
                }
            }
        }
        for key in d.anchors.keys() {
            let inside = key.parse::<u8>().is_ok_and(|l| scale.contains(l));
            if !inside {
                sink.error(format!(
                    "{at}: anchor key `{key}` is outside the scale {}-{}",
                    scale.min, scale.max
                ));
            }
        }
        for ind in &d.offline {
            if !scale.contains(ind.level) {
                sink.error(format!(
                    "{at}: offline level {} is outside the scale {}-{}",
                    ind.level, scale.min, scale.max
                ));
            }
            if ind.min_hits == 0 || ind.min_hits > ind.patterns.len() {
                sink.error(format!(
                    "{at}: offline level {} needs {} hits from {} patterns, which can never \
                     (or always) be met",
                    ind.level,
                    ind.min_hits,
                    ind.patterns.len()
                ));
            }
            for p in &ind.patterns {
                check_regex(p, &format!("{at}: offline level {}", ind.level), sink);
            }
        }
        if d.offline.is_empty() {
            sink.warning(format!(
                "{at}: no offline indicators; the offline judge will always score it {}",
                scale.min
            ));
        }
    }
    let rag: Vec<&str> = dims
        .iter()
        .filter(|d| d.rag_maturity)
        .map(|d| d.id.as_str())
        .collect();
    if rag.len() > 1 {
        sink.error(format!(
            "more than one rag_maturity dimension ({}); the RAG maturity level must come from one",
            rag.join(", ")
        ));
    }
}

fn lint_flags(flags: &[FlagDef], sink: &mut Sink<'_>) {
    let mut seen = BTreeSet::new();
    for f in flags {
        let at = format!("flag `{}`", f.id);
        if f.id.trim().is_empty() {
            sink.error("a flag has an empty id");
        } else if !seen.insert(f.id.as_str()) {
            sink.error(format!("duplicate flag id `{}`", f.id));
        }
        for (field, value) in [("label", &f.label), ("description", &f.description)] {
            if value.trim().is_empty() {
                sink.error(format!("{at}: {field} is empty"));
            }
        }
        let Matcher { any, all, none } = &f.offline;
        for (part, patterns) in [("any", any), ("all", all), ("none", none)] {
            for p in patterns {
                check_regex(p, &format!("{at}: offline.{part}"), sink);
            }
        }
        if any.is_empty() && all.is_empty() {
            sink.warning(format!(
                "{at}: no offline `any`/`all` patterns; the offline judge can never raise it"
            ));
        }
    }
}

/// Offline patterns are compiled exactly as the offline judge compiles them.
fn check_regex(pattern: &str, at: &str, sink: &mut Sink<'_>) {
    if let Err(e) = RegexBuilder::new(pattern).case_insensitive(true).build() {
        let text = e.to_string();
        let last = text.lines().last().unwrap_or_default().trim();
        let detail = last.strip_prefix("error:").unwrap_or(last).trim();
        sink.error(format!(
            "{at}: pattern `{pattern}` is not a valid regex: {detail}"
        ));
    }
}

fn names(vars: &BTreeSet<String>) -> String {
    vars.iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Template checks: syntax; variables outside the contract (found statically, so a typo in a
/// branch the sample does not take is still caught); the system-template rule; a strict
/// render with sample values (with and without a question); and that the candidate content
/// lands between two boundary markers.
fn lint_templates(pf: &PromptFile, sink: &mut Sink<'_>) {
    let env = new_env();
    let globals: BTreeSet<String> = env.globals().map(|(k, _)| k.to_string()).collect();
    let static_ctx = static_context(pf);
    let undefined = |source: &str, allowed: &[&str]| -> BTreeSet<String> {
        undeclared(source)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !allowed.contains(&v.as_str()) && !globals.contains(v))
            .collect()
    };

    match env.template_from_str(&pf.template.system) {
        Err(e) => sink.error(format!("system template: syntax error: {}", describe(&e))),
        Ok(tmpl) => {
            let forbidden = candidate_vars_in(&pf.template.system);
            let unknown: BTreeSet<String> = undefined(&pf.template.system, &STATIC_VARS)
                .into_iter()
                .filter(|v| !CANDIDATE_VARS.contains(&v.as_str()))
                .collect();
            if !forbidden.is_empty() {
                sink.error(format!(
                    "system template {}",
                    system_rule_message(&forbidden)
                ));
            }
            if !unknown.is_empty() {
                sink.error(format!(
                    "system template uses undefined variable(s) {}; it gets only prompt, \
                     dimensions, flags and examples",
                    names(&unknown)
                ));
            }
            if forbidden.is_empty() && unknown.is_empty() {
                if let Err(e) = tmpl.render(&static_ctx) {
                    sink.error(format!(
                        "system template fails to render with the rubric: {}",
                        describe(&e)
                    ));
                }
            }
        }
    }

    let user_source = &pf.template.user;
    match env.template_from_str(user_source) {
        Err(e) => sink.error(format!("user template: syntax error: {}", describe(&e))),
        Ok(tmpl) => {
            let mut allowed = STATIC_VARS.to_vec();
            allowed.extend(CANDIDATE_VARS);
            let unknown = undefined(user_source, &allowed);
            if !unknown.is_empty() {
                sink.error(format!(
                    "user template uses undefined variable(s) {}; available: {}",
                    names(&unknown),
                    allowed.join(", ")
                ));
                return;
            }
            let used = undeclared(user_source).unwrap_or_default();
            for (var, why) in [
                (
                    "transcript",
                    "the candidate content would never reach the judge",
                ),
                (
                    "boundary",
                    "the candidate content must sit in a boundary-delimited data block",
                ),
            ] {
                if !used.contains(var) {
                    sink.error(format!("user template never uses `{var}`; {why}"));
                }
            }
            for question in [Some(SAMPLE_QUESTION), None] {
                let input = RenderInput {
                    question: question.map(str::to_string),
                    transcript: SAMPLE_TRANSCRIPT.to_string(),
                    format: "speaker".to_string(),
                };
                let ctx = user_context(&static_ctx, &input, SAMPLE_BOUNDARY);
                let with = if question.is_some() {
                    "with"
                } else {
                    "without"
                };
                match tmpl.render(ctx) {
                    Err(e) => {
                        sink.error(format!(
                            "user template fails to render {with} a question: {}",
                            describe(&e)
                        ));
                        break;
                    }
                    Ok(out) if used.contains("transcript") && used.contains("boundary") => {
                        if !delimited(&out, SAMPLE_TRANSCRIPT.trim(), SAMPLE_BOUNDARY) {
                            sink.error(
                                "user template must put `transcript` between two occurrences \
                                 of `boundary` (open and close the candidate's data block)",
                            );
                            break;
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}

/// True when `content` occurs in `out` with `boundary` both somewhere before and after it.
fn delimited(out: &str, content: &str, boundary: &str) -> bool {
    match out.find(content) {
        Some(pos) => out[..pos].contains(boundary) && out[pos + content.len()..].contains(boundary),
        None => false,
    }
}

fn lint_examples(pf: &PromptFile, sink: &mut Sink<'_>) {
    let dims: BTreeMap<&str, &Dimension> =
        pf.dimensions.iter().map(|d| (d.id.as_str(), d)).collect();
    let flags: BTreeSet<&str> = pf.flags.iter().map(|f| f.id.as_str()).collect();
    for (i, ex) in pf.examples.iter().enumerate() {
        let at = format!("example {}", i + 1);
        if ex.input.trim().is_empty() {
            sink.error(format!("{at}: input is empty"));
        }
        let judgment: Judgment = match serde_json::from_str(&ex.output) {
            Ok(j) => j,
            Err(e) => {
                sink.error(format!("{at}: output is not a valid judgment: {e}"));
                continue;
            }
        };
        let mut scored = BTreeSet::new();
        for s in &judgment.scores {
            match dims.get(s.dimension.as_str()) {
                None => sink.error(format!(
                    "{at}: output scores unknown dimension `{}`",
                    s.dimension
                )),
                Some(d) => {
                    scored.insert(d.id.as_str());
                    let in_range = u8::try_from(s.score).is_ok_and(|v| d.scale.contains(v));
                    if !in_range {
                        sink.error(format!(
                            "{at}: output score {} for `{}` is outside its scale {}-{}",
                            s.score, s.dimension, d.scale.min, d.scale.max
                        ));
                    }
                }
            }
        }
        for f in &judgment.flags {
            if !flags.contains(f.id.as_str()) {
                sink.error(format!("{at}: output raises unknown flag `{}`", f.id));
            }
        }
        let missing: Vec<&str> = dims
            .keys()
            .copied()
            .filter(|d| !scored.contains(d))
            .collect();
        if !missing.is_empty() {
            sink.warning(format!(
                "{at}: output does not score {} (the judge must score every dimension)",
                missing.join(", ")
            ));
        }
    }
}

/// Publishes every version not yet in `dir/prompts.lock` by appending its sha256, and returns
/// the newly published keys. Existing entries are never rewritten: new lines are appended to
/// the file as it is (comments included); only if the existing file's layout makes appending
/// impossible is it regenerated, and then every existing entry keeps its value. The lock is
/// re-read here, not taken from `reg`, so an entry added since `reg` was loaded is kept too.
pub fn lock(dir: &Path, reg: &Registry) -> Result<Vec<String>, PromptError> {
    let path = dir.join(LOCK_FILE);
    let existing_text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(PromptError::Io { path, error }),
    };
    let existing = match &existing_text {
        Some(t) => parse_lock(&path, t)?,
        None => BTreeMap::new(),
    };
    let mut added: Vec<(String, String)> = Vec::new();
    for v in reg.list() {
        let key = v.key();
        if existing.contains_key(&key) {
            continue;
        }
        match parse_ref(&key) {
            Ok((_, Some(_))) => added.push((key, v.sha256.clone())),
            _ => return Err(PromptError::BadReference(key)),
        }
    }
    if added.is_empty() {
        return Ok(Vec::new());
    }

    let mut text = existing_text.unwrap_or_else(|| LOCK_HEADER.to_string());
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.lines().any(|l| l.trim() == "[versions]") {
        text.push_str("[versions]\n");
    }
    for (key, sha) in &added {
        text.push_str(&format!("\"{key}\" = \"{sha}\"\n"));
    }
    let mut expected = existing.clone();
    expected.extend(added.iter().cloned());
    if parse_lock(&path, &text).ok().as_ref() != Some(&expected) {
        // E.g. an inline `versions = { ... }` table: write the canonical layout instead.
        text = format!("{LOCK_HEADER}[versions]\n");
        for (key, sha) in &expected {
            text.push_str(&format!("\"{key}\" = \"{sha}\"\n"));
        }
    }

    let tmp = dir.join(format!("{LOCK_FILE}.tmp"));
    let write_err = |error| PromptError::Write {
        path: path.clone(),
        error,
    };
    std::fs::write(&tmp, &text).map_err(write_err)?;
    std::fs::rename(&tmp, &path).map_err(write_err)?;
    Ok(added.into_iter().map(|(k, _)| k).collect())
}
