//! The `grader` command line: argument parsing and dispatch. Each subcommand lives in its own
//! file and returns an exit code, so `main` stays a one-liner and tests can call `run` directly.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod admin;
pub mod bias;
pub mod cache;
pub mod calibrate;
pub mod eval;
pub mod grade;
pub mod prompts;
pub mod serve;
pub mod usage;

#[derive(Debug, Parser)]
#[command(
    name = "grader",
    version,
    about = "Grades LLM-engineer interview transcripts and written answers with versioned LLM judges"
)]
pub struct Cli {
    /// Config file (default: $GRADER_CONFIG, else ./grader.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Grade one transcript or written answer.
    Grade(grade::GradeArgs),
    /// List, show, diff, lint and publish judge prompt versions.
    Prompts {
        /// Prompts directory (default: `prompts_dir` from the config, `prompts`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(subcommand)]
        cmd: prompts::PromptsCmd,
    },
    /// Agreement metrics between the AI judge and human graders from long-form ratings.
    Calibrate(calibrate::CalibrateArgs),
    /// Regression-test judge prompts against golden sets graded by people; exit 1 on a
    /// failed gate or a significant regression against --baseline.
    Eval(eval::EvalArgs),
    /// Run the HTTP service and its grading workers.
    Serve(serve::ServeArgs),
    /// Manage tenants, API keys, webhook secrets and tenant settings.
    Admin {
        #[command(subcommand)]
        cmd: admin::AdminCmd,
    },
    /// Manage the persistent response cache (purge a prompt version's answers).
    Cache {
        #[command(subcommand)]
        cmd: cache::CacheCmd,
    },
    /// Tokens and cost per prompt version and model, from the usage ledger.
    Usage(usage::UsageArgs),
    /// Bias audit (NYC LL144 / four-fifths rule) of AI scores against demographic
    /// categories from a separate file; plus a length-bias check.
    BiasAudit(bias::BiasArgs),
}

/// Parses the process arguments, runs the command, and maps errors to exit code 2 with a
/// one-line `error:` message (the full chain of causes, never a panic backtrace).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRADER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Grade(args) => grade::run(cli.config.as_deref(), args),
        Command::Prompts { dir, cmd } => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => crate::config::Config::load(cli.config.as_deref())?.prompts_dir,
            };
            prompts::run(cmd, &dir)
        }
        Command::Calibrate(args) => calibrate::run(args),
        Command::Eval(args) => eval::run(cli.config.as_deref(), args),
        Command::Serve(args) => serve::run(cli.config.as_deref(), args),
        Command::Admin { cmd } => admin::run(cli.config.as_deref(), cmd),
        Command::Cache { cmd } => cache::run(cli.config.as_deref(), cmd),
        Command::Usage(args) => usage::run(cli.config.as_deref(), args),
        Command::BiasAudit(args) => bias::run(args),
    }
}
