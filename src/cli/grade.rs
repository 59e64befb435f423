//! `grader grade --stage STAGE [--prompt ID@VERSION] FILE|- [--json] [--dry-run] [--no-cache]
//! [--cache-db URL]`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use crate::config::Config;
use crate::domain::{
    FlagKind, GradeReport, LayerLevel, Recommendation, ReportStatus, Stage, Submission,
};
use crate::ingest::{self, Limits};
use crate::judge::pipeline::{DryRun, GradeOptions, GradeOutcome, Judge};
use crate::prompts::{self, PromptVersion, Registry};

#[derive(Debug, clap::Args)]
pub struct GradeArgs {
    /// Interview stage: portfolio_review, system_design, hands_on, deep_dive,
    /// production_readiness or written_answer.
    #[arg(long)]
    pub stage: String,
    /// Judge prompt version, `ID@VERSION` (default: the stage's latest published version).
    #[arg(long, value_name = "ID@VERSION")]
    pub prompt: Option<String>,
    /// Input format: text, speaker, vtt, srt or json (default: detected).
    #[arg(long)]
    pub format: Option<String>,
    /// The question that was asked (for written answers).
    #[arg(long, conflicts_with = "question_file")]
    pub question: Option<String>,
    /// Read the question from a file.
    #[arg(long, value_name = "FILE")]
    pub question_file: Option<PathBuf>,
    /// Use the offline judge even when a model is configured.
    #[arg(long)]
    pub offline: bool,
    /// Print the GradeReport as JSON.
    #[arg(long)]
    pub json: bool,
    /// Call no model: print the prompt tokens and the worst-case cost per tier.
    #[arg(long)]
    pub dry_run: bool,
    /// Neither read nor write the response cache (the report says `cache: bypass`).
    #[arg(long)]
    pub no_cache: bool,
    /// Keep model answers in this database's response cache (`sqlite://PATH` or
    /// `postgres://...`), so grading the same input again costs nothing. Default: no
    /// persistent cache for a one-off grading.
    #[arg(long, value_name = "URL")]
    pub cache_db: Option<String>,
    /// Transcript or answer file, or `-` for standard input.
    pub input: PathBuf,
}

pub fn run(config: Option<&Path>, args: &GradeArgs) -> anyhow::Result<i32> {
    let cfg = Config::load(config)?;
    let stage: Stage = args.stage.parse()?;
    let registry = Registry::load(&cfg.prompts_dir)
        .with_context(|| format!("loading prompts from {}", cfg.prompts_dir.display()))?;
    let prompt = select_prompt(&registry, &cfg, stage, args.prompt.as_deref())?;
    let bytes = read_input(&args.input)?;
    let question = match (&args.question, &args.question_file) {
        (Some(q), _) => Some(q.clone()),
        (None, Some(p)) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading question file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let limits = Limits {
        max_chars: cfg.limits.max_chars,
        max_turns: cfg.limits.max_turns,
    };
    let format = args
        .format
        .as_deref()
        .map(ingest::format_from_name)
        .transpose()?;
    let transcript = if stage == Stage::WrittenAnswer && format.is_none() {
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| anyhow!("input is not valid UTF-8 at byte {}", e.valid_up_to()))?;
        ingest::written_answer(text, &limits)?
    } else {
        ingest::parse(&bytes, format, &limits)?
    };
    let submission = Submission {
        tenant: "local".into(),
        stage,
        question,
        transcript,
        candidate: None,
        external_id: None,
        metadata: serde_json::Value::Null,
    };
    let judge = if args.offline {
        Judge::offline(crate::judge::pipeline::JudgeSettings::from_config(
            &cfg, None,
        ))
    } else {
        Judge::from_config(&cfg)?
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let judge = match (
        &args.cache_db,
        judge.is_offline() || args.no_cache || args.dry_run,
    ) {
        (Some(url), false) => {
            let store = runtime.block_on(crate::store::open(url)).with_context(|| {
                format!(
                    "opening the response cache {}",
                    crate::store::redact_url(url)
                )
            })?;
            judge.with_cache(std::sync::Arc::new(crate::cache::StoreCache::new(store)))
        }
        _ => judge,
    };
    let opts = GradeOptions {
        bypass_cache: args.no_cache,
        dry_run: args.dry_run,
    };
    match runtime.block_on(judge.grade_with(&submission, prompt, &opts))? {
        GradeOutcome::Report(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_text(&report));
            }
        }
        GradeOutcome::DryRun(run) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", render_dry_run(&run));
            }
        }
    }
    Ok(0)
}

/// The dry run for a terminal: tokens, the stable prefix, and the worst case per tier.
pub fn render_dry_run(r: &DryRun) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Dry run: no model was called. Stage {}, prompt {}@{}",
        r.stage, r.prompt.id, r.prompt.version
    );
    let _ = writeln!(
        o,
        "Prompt: {} tokens; static system prefix {} tokens ({:.0}% of the prompt, cacheable by the provider)",
        r.prompt_tokens,
        r.system_tokens,
        r.stable_prefix_share * 100.0
    );
    if r.tiers.is_empty() {
        let _ = writeln!(
            o,
            "Judge: offline (no model configured): no tokens are sent and nothing is spent."
        );
        return o;
    }
    if !r.starts_strong_because.is_empty() {
        let _ = writeln!(
            o,
            "Starts with the strong tier: {}",
            r.starts_strong_because.join("; ")
        );
    }
    for t in &r.tiers {
        let used = match t.used.as_str() {
            "first" => "graded first",
            "on_escalation" => "only on escalation",
            _ => "graded directly",
        };
        let fallbacks = if t.fallbacks.is_empty() {
            String::new()
        } else {
            format!(", fallbacks {}", t.fallbacks.join(", "))
        };
        let _ = writeln!(
            o,
            "  {:<8} {} ({}{fallbacks}): {} sample{} x {} prompt tokens + up to {} output tokens = up to ${:.4} ({used}){}",
            t.tier,
            t.model,
            t.model_id,
            t.samples,
            if t.samples == 1 { "" } else { "s" },
            t.prompt_tokens,
            t.max_output_tokens,
            t.max_cost_usd,
            if t.fits_context { "" } else { "; DOES NOT FIT the context window" }
        );
    }
    let _ = writeln!(
        o,
        "Worst case: ${:.4}; ${:.4} if it escalates.",
        r.max_cost_usd, r.max_cost_usd_if_escalated
    );
    if let Some(b) = &r.budget_exhausted {
        let _ = writeln!(
            o,
            "Budget: {b}: the grading would be done by the offline judge."
        );
    }
    let _ = writeln!(o, "{}", r.notice);
    o
}

/// `--prompt` wins, then the stage's pin in the config, then the latest published version.
pub fn select_prompt<'a>(
    registry: &'a Registry,
    cfg: &Config,
    stage: Stage,
    explicit: Option<&str>,
) -> anyhow::Result<&'a PromptVersion> {
    let pinned = cfg
        .stages
        .get(stage.as_str())
        .and_then(|s| s.prompt.as_deref());
    match explicit.or(pinned) {
        Some(r) => {
            let (id, version) = prompts::parse_ref(r)?;
            let pv = match version.as_deref() {
                Some(v) => registry.get(&id, v),
                None => registry.latest(&id),
            }
            .ok_or_else(|| anyhow!("no prompt version `{r}` in the prompts directory"))?;
            if pv.file.stage != stage {
                return Err(anyhow!(
                    "prompt `{r}` is for stage {}, not {stage}",
                    pv.file.stage
                ));
            }
            Ok(pv)
        }
        None => registry
            .for_stage(stage)
            .ok_or_else(|| anyhow!("no judge prompt for stage {stage} in the prompts directory")),
    }
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

fn recommendation_label(r: Recommendation) -> &'static str {
    match r {
        Recommendation::StrongHire => "strong hire",
        Recommendation::Hire => "hire",
        Recommendation::LeanNoHire => "lean no hire",
        Recommendation::NoHire => "no hire",
        Recommendation::InsufficientEvidence => "insufficient evidence",
    }
}

fn fmt_ms(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The human-readable report: what a recruiter reads in a terminal.
pub fn render_text(r: &GradeReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Grade report {}  stage {}  prompt {}@{} (sha256 {})",
        r.id,
        r.stage,
        r.prompt.id,
        r.prompt.version,
        &r.prompt.sha256[..r.prompt.sha256.len().min(12)]
    );
    let _ = writeln!(
        o,
        "Judge: {} (tier {}{}, {} sample{}, {} repair{}, cache {})",
        r.judge.model,
        r.judge.tier,
        if r.judge.escalated { ", escalated" } else { "" },
        r.judge.samples,
        if r.judge.samples == 1 { "" } else { "s" },
        r.judge.repairs,
        if r.judge.repairs == 1 { "" } else { "s" },
        match r.judge.cache {
            crate::domain::CacheStatus::Hit => "hit",
            crate::domain::CacheStatus::Miss => "miss",
            crate::domain::CacheStatus::Coalesced => "coalesced",
            crate::domain::CacheStatus::Bypass => "bypass",
        },
    );
    let _ = writeln!(o, "{}", r.notice);
    let _ = writeln!(o);
    match r.status {
        ReportStatus::Unscored => {
            let _ = writeln!(
                o,
                "UNSCORED: {}",
                r.unscored_reason.as_deref().unwrap_or("no valid judgment")
            );
        }
        ReportStatus::Scored => {
            let _ = writeln!(
                o,
                "Recommendation (advisory): {}   overall {:.2}",
                recommendation_label(r.recommendation),
                r.overall.unwrap_or(0.0)
            );
        }
    }
    if let Some(level) = r.rag_maturity {
        let _ = writeln!(o, "RAG maturity: level {level} of 4");
    }
    if r.needs_review {
        let _ = writeln!(o, "Needs human review:");
        for reason in &r.review_reasons {
            let _ = writeln!(o, "  - {reason}");
        }
    }
    let _ = writeln!(o, "\nScores");
    for s in &r.scores {
        let score = s
            .score
            .map(|v| format!("{v}/{}", s.scale.max))
            .unwrap_or_else(|| "unscored".into());
        let _ = writeln!(
            o,
            "  {:<28} {:>8}  (scale {}-{}, confidence {:.2})",
            s.dimension, score, s.scale.min, s.scale.max, s.confidence
        );
        if !s.rationale.is_empty() {
            let _ = writeln!(o, "      {}", s.rationale);
        }
        for e in &s.evidence {
            let at = e
                .start_ms
                .map(|ms| format!(" [{}]", fmt_ms(ms)))
                .unwrap_or_default();
            let _ = writeln!(o, "      > \"{}\"{at}", e.quote);
        }
    }
    let _ = writeln!(o, "\nFlags");
    if r.flags.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for f in &r.flags {
        let kind = match f.kind {
            FlagKind::Red => "RED  ",
            FlagKind::Green => "GREEN",
        };
        let _ = writeln!(o, "  {kind} {:?} {}", f.severity, f.label);
        for e in &f.evidence {
            let _ = writeln!(o, "      > \"{}\"", e.quote);
        }
    }
    let layers: Vec<String> = r
        .skill_profile
        .layers
        .iter()
        .filter(|(_, l)| **l != LayerLevel::NotAssessed)
        .map(|(k, l)| {
            format!(
                "{} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                serde_json::to_value(l)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .collect();
    let bar = match r.skill_profile.meets_bar {
        Some(true) => "meets the bar (competent in >= 4 layers, excellent in >= 2)",
        Some(false) => "below the bar (competent in >= 4 layers, excellent in >= 2)",
        None => "bar not assessable from this stage alone (< 4 layers assessed)",
    };
    let _ = writeln!(o, "\nSkill profile: {}; {bar}", layers.join(", "));
    let _ = writeln!(
        o,
        "Usage: {} prompt tokens ({} cached), {} completion tokens, ${:.4}",
        r.usage.prompt_tokens, r.usage.cached_tokens, r.usage.completion_tokens, r.usage.cost_usd
    );
    o
}
