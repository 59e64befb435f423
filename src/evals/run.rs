//! Running the judge over golden items: bounded concurrency, a progress line, and the
//! orchestration of a whole eval ([`run_eval`]).
//!
//! The judge is behind [`ItemJudge`] so the eval logic is tested with scripted judges (one
//! that reproduces the human consensus, one that always gives the scale minimum) without a
//! model; `Judge` implements it by grading the item's submission.
//!
//! Concurrency: at most `concurrency` gradings are in flight at once, all polled from the
//! calling task (`buffer_unordered`), so a provider sees a bounded number of parallel
//! requests and nothing needs to be `Send`. Results are put back in item order, so reports
//! do not depend on which call finished first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::analysis::{analyze_stage, EvalReport, EvalSettings, StageGrades, Summary};
use super::golden::GoldenItem;
use super::EvalError;
use crate::domain::{GradeReport, ReportStatus, Stage};
use crate::judge::pipeline::{Judge, JudgeError};
use crate::prompts::PromptVersion;

/// What the eval needs from one grading.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AiGrade {
    /// Scores of the dimensions the judge could score (an unscored dimension is absent).
    pub scores: BTreeMap<String, f64>,
    /// Flag ids raised.
    pub flags: BTreeSet<String>,
    /// `Some(reason)` when the whole grading is unscored (invalid output after repairs).
    pub unscored: Option<String>,
    /// Answered entirely from the response cache (no provider call).
    pub cached: bool,
}

impl From<&GradeReport> for AiGrade {
    fn from(r: &GradeReport) -> Self {
        let unscored = (r.status == ReportStatus::Unscored).then(|| {
            r.unscored_reason
                .clone()
                .unwrap_or_else(|| "unscored".to_string())
        });
        AiGrade {
            scores: r
                .scores
                .iter()
                .filter_map(|s| s.score.map(|v| (s.dimension.clone(), v)))
                .collect(),
            flags: r.flags.iter().map(|f| f.id.clone()).collect(),
            unscored,
            cached: r.judge.cached,
        }
    }
}

/// The judge under test, as the eval sees it.
#[async_trait(?Send)]
pub trait ItemJudge {
    /// The model id reports carry (`offline` for the offline judge).
    fn model(&self) -> String;
    /// Whether this is the offline pattern judge (reports label it).
    fn offline(&self) -> bool {
        false
    }
    /// Grades one golden item with one prompt version.
    async fn judge(&self, item: &GoldenItem, prompt: &PromptVersion)
        -> Result<AiGrade, JudgeError>;
}

#[async_trait(?Send)]
impl ItemJudge for Judge {
    fn model(&self) -> String {
        self.model_name().to_string()
    }
    fn offline(&self) -> bool {
        self.is_offline()
    }
    async fn judge(
        &self,
        item: &GoldenItem,
        prompt: &PromptVersion,
    ) -> Result<AiGrade, JudgeError> {
        let report = self.grade(&item.submission, prompt).await?;
        Ok(AiGrade::from(&report))
    }
}

/// When the progress line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Only when stderr is a terminal.
    Auto,
    /// Always (`--progress`); on a non-terminal a plain line at most once a second.
    Always,
    Never,
}

/// The progress line on stderr: `eval: 37/120 graded (12 cached, 1 unscored, 0 failed) 8.1s`.
/// Hand-rolled (no progress-bar dependency): on a terminal it redraws in place with `\r`; in
/// a CI log (forced with `--progress`) it prints a plain line at most once a second.
pub struct Progress {
    enabled: bool,
    terminal: bool,
    total: usize,
    done: usize,
    cached: usize,
    unscored: usize,
    failed: usize,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(mode: ProgressMode, total: usize) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            enabled: match mode {
                ProgressMode::Auto => terminal,
                ProgressMode::Always => true,
                ProgressMode::Never => false,
            },
            terminal,
            total,
            done: 0,
            cached: 0,
            unscored: 0,
            failed: 0,
            started: Instant::now(),
            last: None,
        }
    }

    fn line(&self) -> String {
        format!(
            "eval: {}/{} graded ({} cached, {} unscored, {} failed) {:.1}s",
            self.done,
            self.total,
            self.cached,
            self.unscored,
            self.failed,
            self.started.elapsed().as_secs_f64()
        )
    }

    /// Counts one finished grading and redraws.
    pub fn tick(&mut self, result: &Result<AiGrade, JudgeError>) {
        self.done += 1;
        match result {
            Ok(g) => {
                self.cached += usize::from(g.cached);
                self.unscored += usize::from(g.unscored.is_some());
            }
            Err(_) => self.failed += 1,
        }
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{}", self.line());
            let _ = err.flush();
        } else if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            || self.done == self.total
        {
            self.last = Some(Instant::now());
            let _ = writeln!(err, "{}", self.line());
        }
    }

    /// Ends the in-place line so later output starts on a fresh line.
    pub fn finish(&mut self) {
        if self.enabled && self.terminal && self.done > 0 {
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

/// Grades every `(item, prompt)` with at most `concurrency` in flight; results in input
/// order. A failed grading (provider down, input too long) is an `Err` in its slot: the other
/// items still finish, so their results are cached for the rerun.
pub async fn grade_all(
    judge: &dyn ItemJudge,
    tasks: &[(&GoldenItem, &PromptVersion)],
    concurrency: usize,
    progress: &mut Progress,
) -> Vec<Result<AiGrade, JudgeError>> {
    let mut slots: Vec<Option<Result<AiGrade, JudgeError>>> =
        std::iter::repeat_with(|| None).take(tasks.len()).collect();
    let mut stream = futures::stream::iter(
        tasks
            .iter()
            .enumerate()
            .map(|(i, (item, prompt))| async move { (i, judge.judge(item, prompt).await) }),
    )
    .buffer_unordered(concurrency.max(1));
    while let Some((i, result)) = stream.next().await {
        progress.tick(&result);
        slots[i] = Some(result);
    }
    progress.finish();
    slots
        .into_iter()
        .map(|s| {
            // Every index is yielded exactly once by the stream; a missing one would be a
            // bug in the stream, reported as a failed grading rather than a panic.
            s.unwrap_or_else(|| Err(JudgeError::Setup("grading did not complete".into())))
        })
        .collect()
}

/// One stage of an eval: its items and the prompt versions they are graded with.
#[derive(Debug, Clone)]
pub struct StagePlan<'a> {
    pub stage: Stage,
    pub candidate: &'a PromptVersion,
    pub baseline: Option<&'a PromptVersion>,
    pub items: Vec<&'a GoldenItem>,
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalPlan<'a> {
    /// The golden files, for the report.
    pub files: Vec<PathBuf>,
    pub stages: Vec<StagePlan<'a>>,
}

impl<'a> EvalPlan<'a> {
    /// Groups `items` by stage (in [`Stage::ALL`] order) with `prompts(stage)` giving the
    /// candidate and the optional baseline of each stage present.
    pub fn new(
        files: Vec<PathBuf>,
        items: &'a [GoldenItem],
        mut prompts: impl FnMut(
            Stage,
        )
            -> Result<(&'a PromptVersion, Option<&'a PromptVersion>), EvalError>,
    ) -> Result<EvalPlan<'a>, EvalError> {
        let mut stages = Vec::new();
        for stage in Stage::ALL {
            let its: Vec<&GoldenItem> = items.iter().filter(|i| i.stage == stage).collect();
            if its.is_empty() {
                continue;
            }
            let (candidate, baseline) = prompts(stage)?;
            stages.push(StagePlan {
                stage,
                candidate,
                baseline,
                items: its,
            });
        }
        Ok(EvalPlan { files, stages })
    }
}

/// Runs a whole eval: grades every item with the candidate (and the baseline where given),
/// then measures, gates and summarises.
pub async fn run_eval(
    judge: &dyn ItemJudge,
    plan: &EvalPlan<'_>,
    settings: &EvalSettings,
    progress: ProgressMode,
) -> Result<EvalReport, EvalError> {
    let mut tasks: Vec<(&GoldenItem, &PromptVersion)> = Vec::new();
    for s in &plan.stages {
        tasks.extend(s.items.iter().map(|i| (*i, s.candidate)));
        if let Some(b) = s.baseline {
            tasks.extend(s.items.iter().map(|i| (*i, b)));
        }
    }
    let mut bar = Progress::new(progress, tasks.len());
    let mut results = grade_all(judge, &tasks, settings.concurrency, &mut bar)
        .await
        .into_iter();
    let mut stages = Vec::new();
    for s in &plan.stages {
        let candidate: Vec<_> = results.by_ref().take(s.items.len()).collect();
        let baseline = s
            .baseline
            .map(|_| results.by_ref().take(s.items.len()).collect::<Vec<_>>());
        let grades = StageGrades {
            candidate,
            baseline,
        };
        stages.push(analyze_stage(s, &grades, settings)?);
    }
    let summary = Summary::of(&stages);
    Ok(EvalReport {
        judge: judge.model(),
        offline: judge.offline(),
        golden: plan.files.iter().map(|f| f.display().to_string()).collect(),
        settings: settings.clone(),
        stages,
        summary,
    })
}
