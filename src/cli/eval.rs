//! `grader eval GOLDEN... [--prompt ID@VERSION] [--baseline ID@VERSION] [--json F]
//! [--junit F] [--report F.md] [--offline] [--cache-db URL] [--concurrency N]`.
//!
//! Regression-tests judge prompts against golden sets graded by people (see
//! `crate::evals`). Exit codes: 0 every gate passed; 1 a gate failed or the candidate is
//! significantly worse than the baseline; 2 usage or input errors (bad golden file, unknown
//! prompt) and gradings that failed outright (the figures would cover a different set).
//!
//! With a model judge every validated judgment goes through the persistent response cache
//! (`--cache-db`, default the configured database), so rerunning an unchanged eval in CI
//! makes zero provider calls. The offline judge needs no cache and opens no database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};

use crate::cache::StoreCache;
use crate::config::Config;
use crate::domain::Stage;
use crate::evals::{
    check_against_prompt, collect_files, load_golden, render_junit, render_markdown,
    render_summary, run_eval, EvalError, EvalPlan, EvalSettings, GoldenError, ProgressMode,
};
use crate::ingest::Limits;
use crate::judge::pipeline::{Judge, JudgeSettings};
use crate::prompts::{PromptVersion, Registry};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Golden set files (JSONL), or directories: every `*.jsonl` directly inside.
    #[arg(required = true, value_name = "GOLDEN")]
    pub golden: Vec<PathBuf>,
    /// Prompt version under test, `ID@VERSION`, for the items of its stage (other stages use
    /// their default: the config's pin, else the latest published version).
    #[arg(long, value_name = "ID@VERSION")]
    pub prompt: Option<String>,
    /// Compare with this prompt version on the items of its stage (paired bootstrap).
    #[arg(long, value_name = "ID@VERSION")]
    pub baseline: Option<String>,
    /// Write the full report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write JUnit XML (one testcase per stage x dimension x gate).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the markdown report.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
    /// Use the offline pattern judge even when a model is configured.
    #[arg(long)]
    pub offline: bool,
    /// Database of the response cache (default: the configured `database_url`).
    #[arg(long, value_name = "URL")]
    pub cache_db: Option<String>,
    /// Gradings in flight at once (default: `eval.concurrency`, 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: Option<u32>,
    /// Gate: minimum QWK per dimension (default: `eval.min_qwk`, 0.70).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub min_qwk: Option<f64>,
    /// Gate: largest allowed gap below the human-human QWK (default 0.10).
    #[arg(long, value_name = "X")]
    pub max_gap_to_human: Option<f64>,
    /// Gate: largest allowed |SMD| (default 0.15).
    #[arg(long, value_name = "X")]
    pub max_abs_smd: Option<f64>,
    /// Bootstrap resamples for intervals and the baseline comparison (default 1000).
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap and the cross-validation folds (default 42).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Draw the progress line on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// The run's settings: config `[eval]` with the flags on top.
fn settings(cfg: &Config, args: &EvalArgs) -> anyhow::Result<EvalSettings> {
    let mut s = EvalSettings::from(&cfg.eval);
    if let Some(n) = args.concurrency {
        s.concurrency = n as usize;
    }
    if let Some(v) = args.min_qwk {
        s.gates.min_qwk = v;
    }
    if let Some(v) = args.max_gap_to_human {
        s.gates.max_gap_to_human = v;
    }
    if let Some(v) = args.max_abs_smd {
        s.gates.max_abs_smd = v;
    }
    if let Some(n) = args.bootstrap {
        s.bootstrap = n;
    }
    if let Some(n) = args.seed {
        s.seed = n;
    }
    for (flag, v) in [
        ("--min-qwk", s.gates.min_qwk),
        ("--max-gap-to-human", s.gates.max_gap_to_human),
        ("--max-abs-smd", s.gates.max_abs_smd),
    ] {
        if !v.is_finite() {
            return Err(anyhow!("{flag} must be a finite number"));
        }
    }
    Ok(s)
}

/// Resolves `--prompt` / `--baseline` and checks that the golden set has items of its stage
/// (evaluating a prompt on no items would pass every gate vacuously).
fn resolve<'a>(
    registry: &'a Registry,
    reference: Option<&str>,
    flag: &str,
    stages: &[Stage],
) -> anyhow::Result<Option<&'a PromptVersion>> {
    let Some(r) = reference else { return Ok(None) };
    let pv = registry.resolve(r).with_context(|| format!("{flag} {r}"))?;
    if !stages.contains(&pv.file.stage) {
        return Err(anyhow!(
            "{flag} {r} is a {} prompt, but the golden set has no {} items",
            pv.file.stage,
            pv.file.stage
        ));
    }
    Ok(Some(pv))
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn run(config: Option<&Path>, args: &EvalArgs) -> anyhow::Result<i32> {
    let cfg = Config::load(config)?;
    let settings = settings(&cfg, args)?;
    let registry = Registry::load(&cfg.prompts_dir)
        .with_context(|| format!("loading prompts from {}", cfg.prompts_dir.display()))?;
    let limits = Limits {
        max_chars: cfg.limits.max_chars,
        max_turns: cfg.limits.max_turns,
    };
    let files = collect_files(&args.golden)?;
    let items = load_golden(&files, &limits)?;
    let stages: Vec<Stage> = Stage::ALL
        .into_iter()
        .filter(|s| items.iter().any(|i| i.stage == *s))
        .collect();
    let prompt = resolve(&registry, args.prompt.as_deref(), "--prompt", &stages)?;
    let baseline = resolve(&registry, args.baseline.as_deref(), "--baseline", &stages)?;

    let plan = EvalPlan::new(files, &items, |stage| {
        let candidate = match prompt.filter(|p| p.file.stage == stage) {
            Some(p) => p,
            None => super::grade::select_prompt(&registry, &cfg, stage, None)
                .map_err(|e| EvalError::Plan(format!("{stage}: {e:#}")))?,
        };
        Ok((candidate, baseline.filter(|b| b.file.stage == stage)))
    })?;
    let mut problems = Vec::new();
    for s in &plan.stages {
        problems.extend(check_against_prompt(&items, s.candidate));
        if let Some(b) = s.baseline {
            problems.extend(check_against_prompt(&items, b));
        }
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        problems.dedup();
        return Err(GoldenError::Invalid(problems).into());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let judge = if args.offline {
        Judge::offline(JudgeSettings::from_config(&cfg, None))
    } else {
        Judge::from_config(&cfg)?
    };
    let judge = if judge.is_offline() {
        judge
    } else {
        let url = args.cache_db.as_deref().unwrap_or(&cfg.database_url);
        let store = runtime.block_on(crate::store::open(url)).with_context(|| {
            format!(
                "opening the response cache {}",
                crate::store::redact_url(url)
            )
        })?;
        judge.with_cache(Arc::new(StoreCache::new(store)))
    };
    let mode = if args.progress {
        ProgressMode::Always
    } else {
        ProgressMode::Auto
    };
    let report = runtime.block_on(run_eval(&judge, &plan, &settings, mode))?;

    if let Some(p) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        text.push('\n');
        write_file(p, &text)?;
    }
    if let Some(p) = &args.junit {
        write_file(p, &render_junit(&report))?;
    }
    if let Some(p) = &args.report {
        write_file(p, &render_markdown(&report))?;
    }
    print!("{}", render_summary(&report));
    if report.summary.errors > 0 {
        eprintln!(
            "error: {} grading(s) failed; the figures cover only the items that were graded (rerun: successful gradings are cached)",
            report.summary.errors
        );
    }
    Ok(report.exit_code())
}
