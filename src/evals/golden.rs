//! Golden sets: reading the JSONL files and checking them against the prompts that will be
//! evaluated.
//!
//! Two phases, because the second needs to know which prompt version each stage uses:
//! - [`load_golden`] reads the files and checks what holds whatever the prompt: valid JSON,
//!   a known stage, exactly one of `answer` / `transcript` (parsed by `ingest` with the
//!   configured limits), at least one grade, finite scores, unique item ids and rater names;
//! - [`check_against_prompt`] checks each grade against the rubric of a prompt version:
//!   every dimension exists, every score is on its scale, every flag id is defined.
//!
//! Every problem is reported (not only the first), each as `file:line: message`, because the
//! reader is a person fixing a hand-written file. Blank lines are skipped; unknown keys are
//! allowed (authors keep notes beside the grades).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::{Stage, Submission};
use crate::ingest::{self, Limits};
use crate::prompts::PromptVersion;

/// One problem in a golden file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    /// 1-based line of the item (0 when the problem is about the file as a whole).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        }
    }
}

/// How many problems an error message lists before summarising the rest.
const SHOWN_PROBLEMS: usize = 25;

fn list_problems(problems: &[Problem]) -> String {
    let mut s = format!(
        "{} problem{} in the golden set:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    if problems.len() > SHOWN_PROBLEMS {
        s.push_str(&format!(
            "\n  ... and {} more",
            problems.len() - SHOWN_PROBLEMS
        ));
    }
    s
}

/// Why a golden set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// A path given on the command line cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A directory was given but holds no `*.jsonl` file.
    #[error("{}: no *.jsonl files in this directory", .0.display())]
    NoFiles(PathBuf),
    /// The files hold no items at all.
    #[error("the golden set is empty: no items in {0}")]
    Empty(String),
    /// Problems in the items themselves, each with its `file:line`.
    #[error("{}", list_problems(.0))]
    Invalid(Vec<Problem>),
}

/// One human grader's grade of one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoldenGrade {
    pub rater: String,
    /// Score per dimension id; a dimension the rater left out (or set to `null`) is absent.
    pub scores: BTreeMap<String, f64>,
    pub flags: BTreeSet<String>,
}

/// One golden item, with the submission the judge will see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoldenItem {
    pub id: String,
    pub stage: Stage,
    pub grades: Vec<GoldenGrade>,
    /// Ready for `Judge::grade`: the question and the parsed answer or transcript.
    pub submission: Submission,
    pub path: PathBuf,
    pub line: usize,
}

impl GoldenItem {
    /// The human scores on `dimension`, one per grader who scored it.
    pub fn human_scores(&self, dimension: &str) -> Vec<(String, f64)> {
        self.grades
            .iter()
            .filter_map(|g| g.scores.get(dimension).map(|s| (g.rater.clone(), *s)))
            .collect()
    }

    fn problem(&self, message: String) -> Problem {
        Problem {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }
}

/// The JSON shape of a line. Unknown keys are ignored on purpose (notes, tags, difficulty).
#[derive(Debug, Deserialize)]
struct RawItem {
    id: serde_json::Value,
    stage: String,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    transcript: Option<String>,
    /// Transcript format (`text`, `speaker`, `vtt`, `srt`, `json`); default: detected.
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    grades: Option<Vec<RawGrade>>,
}

#[derive(Debug, Deserialize)]
struct RawGrade {
    rater: String,
    #[serde(default)]
    scores: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    flags: Vec<String>,
}

/// The files named by `paths`: a file as given, a directory as every `*.jsonl` directly in
/// it (sorted, so reports list files in a stable order).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, GoldenError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|error| GoldenError::Io {
            path: p.clone(),
            error,
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|error| GoldenError::Io {
                path: p.clone(),
                error,
            })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for e in entries {
                let e = e.map_err(|error| GoldenError::Io {
                    path: p.clone(),
                    error,
                })?;
                let path = e.path();
                if path.extension().is_some_and(|x| x == "jsonl") && path.is_file() {
                    files.push(path);
                }
            }
            if files.is_empty() {
                return Err(GoldenError::NoFiles(p.clone()));
            }
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    out.dedup();
    Ok(out)
}

/// Parses one file's text. Returns the good items and the problems; the caller decides
/// (problems anywhere make the whole set unusable, see [`load_golden`]).
pub fn parse_golden(path: &Path, text: &str, limits: &Limits) -> (Vec<GoldenItem>, Vec<Problem>) {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw_line) in text.lines().enumerate() {
        let line = i + 1;
        if raw_line.trim().is_empty() {
            continue;
        }
        let problem = |message: String| Problem {
            path: path.to_path_buf(),
            line,
            message,
        };
        let raw: RawItem = match serde_json::from_str(raw_line) {
            Ok(r) => r,
            Err(e) => {
                problems.push(problem(format!(
                    "not a golden item: {}",
                    strip_position(&e)
                )));
                continue;
            }
        };
        match item_from_raw(raw, path, line, limits) {
            Ok(item) => items.push(item),
            Err(messages) => problems.extend(messages.into_iter().map(problem)),
        }
    }
    (items, problems)
}

/// serde_json appends "at line 1 column N"; on a single JSONL line the column is all that
/// helps, so keep it as `column N`.
fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(pos) => format!("{} (column {})", &msg[..pos], e.column()),
        None => msg,
    }
}

fn item_from_raw(
    raw: RawItem,
    path: &Path,
    line: usize,
    limits: &Limits,
) -> Result<GoldenItem, Vec<String>> {
    let mut messages = Vec::new();
    let id = match &raw.id {
        serde_json::Value::String(s) if !s.trim().is_empty() => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            messages.push("`id` must be a non-empty string".to_string());
            String::new()
        }
    };
    let label = if id.is_empty() {
        "item".to_string()
    } else {
        format!("item `{id}`")
    };
    let stage = match raw.stage.parse::<Stage>() {
        Ok(s) => Some(s),
        Err(e) => {
            messages.push(format!("{label}: {e}"));
            None
        }
    };
    let grades = match raw.grades {
        None => {
            messages.push(format!(
                "{label} has no `grades`: every golden item needs at least one human grade"
            ));
            Vec::new()
        }
        Some(g) if g.is_empty() => {
            messages.push(format!(
                "{label} has an empty `grades` list: every golden item needs at least one human grade"
            ));
            Vec::new()
        }
        Some(g) => g,
    };
    let mut seen_raters = BTreeSet::new();
    let mut out_grades = Vec::new();
    for g in grades {
        let rater = g.rater.trim().to_string();
        if rater.is_empty() {
            messages.push(format!("{label}: a grade has an empty `rater`"));
            continue;
        }
        if rater == super::AI_RATER {
            messages.push(format!(
                "{label}: the rater name `{rater}` is reserved for the judge under test"
            ));
        }
        if !seen_raters.insert(rater.clone()) {
            messages.push(format!("{label}: rater `{rater}` graded this item twice"));
        }
        let mut scores = BTreeMap::new();
        for (dim, v) in g.scores {
            match v {
                None => {}
                Some(v) if v.is_finite() => {
                    scores.insert(dim, v);
                }
                Some(v) => messages.push(format!(
                    "{label}, rater `{rater}`: score {v} for `{dim}` is not a finite number"
                )),
            }
        }
        if scores.is_empty() {
            messages.push(format!("{label}, rater `{rater}`: the grade has no scores"));
        }
        out_grades.push(GoldenGrade {
            rater,
            scores,
            flags: g.flags.into_iter().map(|f| f.trim().to_string()).collect(),
        });
    }
    let submission = stage.and_then(|stage| {
        let format = match raw
            .format
            .as_deref()
            .map(ingest::format_from_name)
            .transpose()
        {
            Ok(f) => f,
            Err(e) => {
                messages.push(format!("{label}: {e}"));
                return None;
            }
        };
        let transcript = match (&raw.answer, &raw.transcript) {
            (Some(_), Some(_)) => {
                messages.push(format!(
                    "{label} has both `answer` and `transcript`; give exactly one"
                ));
                return None;
            }
            (None, None) => {
                messages.push(format!("{label} has neither `answer` nor `transcript`"));
                return None;
            }
            (Some(answer), None) => ingest::written_answer(answer, limits),
            (None, Some(t)) => ingest::parse(t.as_bytes(), format, limits),
        };
        match transcript {
            Ok(transcript) => Some(Submission {
                tenant: "eval".into(),
                stage,
                question: raw.question.clone().filter(|q| !q.trim().is_empty()),
                transcript,
                candidate: None,
                external_id: Some(id.clone()),
                metadata: serde_json::Value::Null,
            }),
            Err(e) => {
                messages.push(format!("{label}: {e}"));
                None
            }
        }
    });
    match (messages.is_empty(), stage, submission) {
        (true, Some(stage), Some(submission)) => Ok(GoldenItem {
            id,
            stage,
            grades: out_grades,
            submission,
            path: path.to_path_buf(),
            line,
        }),
        _ => Err(messages),
    }
}

/// Reads every file `paths` names (see [`collect_files`]) and returns all items, or every
/// problem found. Item ids must be unique across the whole set: reports and the cache of
/// per-item results are keyed by them.
pub fn load_golden(paths: &[PathBuf], limits: &Limits) -> Result<Vec<GoldenItem>, GoldenError> {
    let files = collect_files(paths)?;
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|error| GoldenError::Io {
            path: f.clone(),
            error,
        })?;
        let (mut it, mut pr) = parse_golden(f, &text, limits);
        items.append(&mut it);
        problems.append(&mut pr);
    }
    let mut first: HashMap<&str, &GoldenItem> = HashMap::new();
    for it in &items {
        if let Some(prev) = first.get(it.id.as_str()) {
            problems.push(it.problem(format!(
                "duplicate item id `{}` (first at {}:{})",
                it.id,
                prev.path.display(),
                prev.line
            )));
        } else {
            first.insert(&it.id, it);
        }
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        return Err(GoldenError::Invalid(problems));
    }
    if items.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(GoldenError::Empty(names.join(", ")));
    }
    Ok(items)
}

/// Problems of the items of `prompt`'s stage against its rubric: unknown dimensions, scores
/// outside the dimension's scale, unknown flag ids. Items of other stages are not looked at.
pub fn check_against_prompt(items: &[GoldenItem], prompt: &PromptVersion) -> Vec<Problem> {
    let file = &prompt.file;
    let key = prompt.key();
    let dims: BTreeMap<&str, (u8, u8)> = file
        .dimensions
        .iter()
        .map(|d| (d.id.as_str(), (d.scale.min, d.scale.max)))
        .collect();
    let flags: BTreeSet<&str> = file.flags.iter().map(|f| f.id.as_str()).collect();
    let dim_list = || dims.keys().copied().collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    for it in items.iter().filter(|it| it.stage == file.stage) {
        for g in &it.grades {
            for (dim, &score) in &g.scores {
                match dims.get(dim.as_str()) {
                    None => problems.push(it.problem(format!(
                        "item `{}`, rater `{}`: unknown dimension `{dim}` for {key} (dimensions: {})",
                        it.id,
                        g.rater,
                        dim_list()
                    ))),
                    Some(&(min, max)) if score < f64::from(min) || score > f64::from(max) => {
                        problems.push(it.problem(format!(
                            "item `{}`, rater `{}`: score {score} for `{dim}` is outside the scale {min}-{max} of {key}",
                            it.id, g.rater
                        )))
                    }
                    Some(_) => {}
                }
            }
            for f in &g.flags {
                if !flags.contains(f.as_str()) {
                    problems.push(it.problem(format!(
                        "item `{}`, rater `{}`: unknown flag `{f}` for {key}",
                        it.id, g.rater
                    )));
                }
            }
        }
    }
    problems
}
