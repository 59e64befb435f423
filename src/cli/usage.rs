//! `grader usage [--json] [--ledger PATH] [--tenant ID] [--since DATE] [--until DATE]`: tokens
//! and cost summed per prompt version and model, from the usage ledger every grading is
//! recorded in (`budgets.ledger_path`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use chrono::NaiveDate;
use serde::Serialize;

use crate::budget::{FileLedger, UsageFilter, UsageLedger, UsageSummaryRow};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Print JSON: `{"rows": [...], "total": {...}}`.
    #[arg(long)]
    pub json: bool,
    /// The ledger file (default: `budgets.ledger_path` from the config).
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// Only this tenant's gradings.
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// From this UTC day on (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<NaiveDate>,
    /// Up to and including this UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub until: Option<NaiveDate>,
}

#[derive(Debug, Serialize)]
struct UsageReport {
    rows: Vec<UsageSummaryRow>,
    total: UsageSummaryRow,
}

pub fn run(config: Option<&Path>, args: &UsageArgs) -> anyhow::Result<i32> {
    let cfg = Config::load(config)?;
    let path = args
        .ledger
        .clone()
        .or(cfg.budgets.ledger_path.clone())
        .ok_or_else(|| {
            anyhow!("no usage ledger: set budgets.ledger_path in the config or pass --ledger PATH")
        })?;
    if !path.exists() {
        return Err(anyhow!("no usage ledger at {}", path.display()));
    }
    let ledger = FileLedger::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")?;
    let rows = runtime.block_on(ledger.summary(&UsageFilter {
        tenant: args.tenant.clone(),
        since: args.since,
        until: args.until,
    }))?;
    let mut total = UsageSummaryRow {
        prompt: "total".into(),
        model: String::new(),
        ..UsageSummaryRow::default()
    };
    for r in &rows {
        total.gradings += r.gradings;
        total.samples += r.samples;
        total.cached_samples += r.cached_samples;
        total.prompt_tokens += r.prompt_tokens;
        total.completion_tokens += r.completion_tokens;
        total.cached_tokens += r.cached_tokens;
        total.cost_usd += r.cost_usd;
    }
    let report = UsageReport { rows, total };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

fn render(r: &UsageReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<28} {:<24} {:>8} {:>8} {:>7} {:>12} {:>11} {:>11} {:>11}",
        "prompt",
        "model",
        "gradings",
        "samples",
        "cached",
        "prompt tok",
        "compl tok",
        "cached tok",
        "cost USD"
    );
    for row in r.rows.iter().chain(std::iter::once(&r.total)) {
        let _ = writeln!(
            o,
            "{:<28} {:<24} {:>8} {:>8} {:>7} {:>12} {:>11} {:>11} {:>11.4}",
            row.prompt,
            row.model,
            row.gradings,
            row.samples,
            row.cached_samples,
            row.prompt_tokens,
            row.completion_tokens,
            row.cached_tokens,
            row.cost_usd
        );
    }
    o
}
