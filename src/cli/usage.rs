//! `grader usage [--json] [--ledger PATH | --db URL] [--tenant ID] [--since DATE]
//! [--until DATE]`: tokens and cost summed per prompt version and model, from the usage ledger
//! every grading is recorded in.
//!
//! Which ledger: `--ledger PATH` (a JSON-lines file), else `--db URL` (the store's `usage`
//! table, where `grader serve` records), else `budgets.ledger_path` from the config when set
//! (where `grader grade` records), else the config's `database_url`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use chrono::NaiveDate;
use serde::Serialize;

use crate::budget::{FileLedger, StoreLedger, UsageFilter, UsageLedger, UsageSummaryRow};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Print JSON: `{"rows": [...], "total": {...}}`.
    #[arg(long)]
    pub json: bool,
    /// The ledger file (default: `budgets.ledger_path` from the config).
    #[arg(long, value_name = "PATH", conflicts_with = "db")]
    pub ledger: Option<PathBuf>,
    /// The database whose usage table to read (what `grader serve` records); the default
    /// when neither `--ledger` nor `budgets.ledger_path` is given is `database_url`.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let filter = UsageFilter {
        tenant: args.tenant.clone(),
        since: args.since,
        until: args.until,
    };
    let file = match (&args.ledger, &args.db) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(_)) => None,
        (None, None) => cfg.budgets.ledger_path.clone(),
    };
    let rows = match file {
        Some(path) => {
            if !path.exists() {
                return Err(anyhow!("no usage ledger at {}", path.display()));
            }
            let ledger =
                FileLedger::open(&path).with_context(|| format!("reading {}", path.display()))?;
            runtime.block_on(ledger.summary(&filter))?
        }
        None => {
            let url = args.db.clone().unwrap_or_else(|| cfg.database_url.clone());
            // A report does not create a database: a missing SQLite file has no usage.
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
            {
                if !Path::new(path).exists() {
                    return Err(anyhow!("no database at {path} (see --db or --ledger)"));
                }
            }
            runtime.block_on(async {
                let store = crate::store::open(&url).await.with_context(|| {
                    format!("opening the database {}", crate::store::redact_url(&url))
                })?;
                let rows = StoreLedger::new(store).summary(&filter).await?;
                anyhow::Ok(rows)
            })?
        }
    };
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
