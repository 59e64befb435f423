//! `grader calibrate FILE [--json]`: agreement between the AI judge and human graders.
//!
//! Reads long-form ratings (CSV with a header, or JSONL) with `item_id,dimension,rater,score`
//! and optional `scale_min,scale_max`; the rater named by `--ai-rater` (default `ai`) is the
//! judge, every other rater a human. Prints, per dimension, the AI against the human
//! consensus with bootstrap intervals, Krippendorff's alpha over all raters, the human
//! ceiling, the confusion matrix and per-grader agreement (see `crate::calibration`).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::calibration::{
    calibration_report, parse_ratings, parse_scale, render_table, CalibrationError,
};

#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// Ratings file (CSV or JSONL), or `-` for standard input.
    pub file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The rater whose scores are the AI judge's; every other rater is a human.
    #[arg(long, default_value = "ai", value_name = "NAME")]
    pub ai_rater: String,
    /// Score scale for every dimension, `MIN-MAX` (default: the file's scale_min/scale_max
    /// columns, else the observed range per dimension).
    #[arg(long, value_name = "MIN-MAX")]
    pub scale: Option<String>,
    /// Bootstrap resamples for the 95% intervals (0 disables them).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap, so reruns give identical intervals.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Computes the report for `text` and renders it (JSON or the aligned table).
pub fn render(args: &CalibrateArgs, text: &str) -> Result<String, CalibrationError> {
    let scale = args.scale.as_deref().map(parse_scale).transpose()?;
    let input = parse_ratings(text)?;
    let report = calibration_report(&input, &args.ai_rater, scale, args.bootstrap, args.seed)?;
    if args.json {
        // The report holds only strings, integers, finite floats and nulls, so this cannot
        // fail; map the impossible error instead of unwrapping anyway.
        let mut s = serde_json::to_string_pretty(&report).map_err(|e| CalibrationError::Json {
            line: 0,
            message: e.to_string(),
        })?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(render_table(&report))
    }
}

/// Runs the command: reads the file (or stdin), writes the report to stdout, returns 0.
/// Unreadable or malformed input is an error (the CLI maps it to exit code 2).
pub fn run(args: &CalibrateArgs) -> anyhow::Result<i32> {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading ratings from standard input")?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let out =
        render(args, &text).with_context(|| format!("calibrating {}", args.file.display()))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .context("writing the report")?;
    stdout.flush().context("writing the report")?;
    Ok(0)
}
