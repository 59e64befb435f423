//! `grader bias-audit --scores FILE --demographics FILE [--field overall|<dimension>] [--json]`:
//! a NYC LL144-style bias audit (see [`crate::fairness`]) of AI scores from a file.
//!
//! Scores: CSV with a header or JSONL, `item_id,ai_score[,human_score,length_words]`, and
//! optionally a `dimension` column, in which case only the rows whose dimension is `--field`
//! are audited (default `overall`). Demographics: CSV `item_id,<field1>,<field2>,...`; an
//! empty cell is `unknown`. A scored item without a demographics row is audited with every
//! field `unknown`; demographics rows without a score are ignored (and counted).
//!
//! The demographics are read here and nowhere else: nothing in this command calls a model.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::calibration::input::csv_records;
use crate::fairness::{bias_audit, render_table, AuditOptions, AuditRow, BiasAudit};

#[derive(Debug, Clone, clap::Args)]
pub struct BiasArgs {
    /// AI scores: CSV or JSONL with item_id, ai_score and optionally human_score,
    /// length_words, dimension.
    #[arg(long, value_name = "FILE")]
    pub scores: PathBuf,
    /// Demographic categories: CSV with item_id and one column per field.
    #[arg(long, value_name = "FILE")]
    pub demographics: PathBuf,
    /// Which score to audit when the scores file has a `dimension` column.
    #[arg(long, default_value = "overall", value_name = "overall|DIMENSION")]
    pub field: String,
    /// Print the audit as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The JSON output: the audit plus how the input files were matched.
#[derive(Debug, Serialize)]
pub struct BiasOutput {
    pub field: String,
    /// Scored items without a demographics row (audited as unknown).
    pub without_demographics: usize,
    /// Demographics rows without a score (ignored).
    pub without_scores: usize,
    pub audit: BiasAudit,
}

/// One scores row as read.
struct ScoreRow {
    item_id: String,
    dimension: Option<String>,
    ai: f64,
    human: Option<f64>,
    length: Option<f64>,
}

fn number(line: usize, field: &str, raw: &str) -> anyhow::Result<Option<f64>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let v: f64 = raw
        .parse()
        .map_err(|_| anyhow!("line {line}: `{field}` value {raw:?} is not a number"))?;
    if !v.is_finite() {
        bail!("line {line}: `{field}` value {raw:?} is not a finite number");
    }
    Ok(Some(v))
}

/// Parses the scores file (CSV with a header, or JSONL when the first character is `{`).
fn parse_scores(text: &str) -> anyhow::Result<Vec<ScoreRow>> {
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| anyhow!("line {line_no}: not a JSON object: {e}"))?;
            let get_num = |k: &str| -> anyhow::Result<Option<f64>> {
                match v.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(serde_json::Value::Number(n)) => Ok(n.as_f64()),
                    Some(serde_json::Value::String(s)) => number(line_no, k, s),
                    Some(other) => bail!("line {line_no}: `{k}` is {other}, not a number"),
                }
            };
            let item_id = match v.get("item_id") {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => bail!("line {line_no}: missing `item_id`"),
            };
            let ai = get_num("ai_score")?
                .ok_or_else(|| anyhow!("line {line_no}: missing `ai_score`"))?;
            out.push(ScoreRow {
                item_id,
                dimension: v
                    .get("dimension")
                    .and_then(|d| d.as_str())
                    .map(|d| d.trim().to_string()),
                ai,
                human: get_num("human_score")?,
                length: get_num("length_words")?,
            });
        }
        return Ok(out);
    }
    let records = csv_records(text).map_err(|e| anyhow!("{e}"))?;
    let mut it = records.into_iter();
    let (hline, header) = it
        .next()
        .ok_or_else(|| anyhow!("the scores file is empty"))?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let item = col("item_id")
        .ok_or_else(|| anyhow!("line {hline}: the header has no `item_id` column"))?;
    let ai = col("ai_score")
        .ok_or_else(|| anyhow!("line {hline}: the header has no `ai_score` column"))?;
    let (human, length, dim) = (col("human_score"), col("length_words"), col("dimension"));
    let cell = |rec: &[String], i: Option<usize>| -> String {
        i.and_then(|i| rec.get(i)).cloned().unwrap_or_default()
    };
    for (line, rec) in it {
        let item_id = cell(&rec, Some(item)).trim().to_string();
        if item_id.is_empty() {
            bail!("line {line}: missing `item_id`");
        }
        let ai = number(line, "ai_score", &cell(&rec, Some(ai)))?
            .ok_or_else(|| anyhow!("line {line}: missing `ai_score`"))?;
        out.push(ScoreRow {
            item_id,
            dimension: dim.map(|_| cell(&rec, dim).trim().to_string()),
            ai,
            human: number(line, "human_score", &cell(&rec, human))?,
            length: number(line, "length_words", &cell(&rec, length))?,
        });
    }
    Ok(out)
}

/// Parses the demographics CSV: item id -> field -> category, and the field order.
#[allow(clippy::type_complexity)]
fn parse_demographics(
    text: &str,
) -> anyhow::Result<(Vec<String>, HashMap<String, BTreeMap<String, String>>)> {
    let records = csv_records(text).map_err(|e| anyhow!("{e}"))?;
    let mut it = records.into_iter();
    let (hline, header) = it
        .next()
        .ok_or_else(|| anyhow!("the demographics file is empty"))?;
    let item = header
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case("item_id"))
        .ok_or_else(|| anyhow!("line {hline}: the header has no `item_id` column"))?;
    let fields: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter(|(i, h)| *i != item && !h.trim().is_empty())
        .map(|(i, h)| (i, h.trim().to_string()))
        .collect();
    if fields.is_empty() {
        bail!("line {hline}: the header names no demographic field besides `item_id`");
    }
    let mut out = HashMap::new();
    for (line, rec) in it {
        let id = rec.get(item).map(|s| s.trim()).unwrap_or_default();
        if id.is_empty() {
            bail!("line {line}: missing `item_id`");
        }
        let cats: BTreeMap<String, String> = fields
            .iter()
            .map(|(i, f)| (f.clone(), rec.get(*i).cloned().unwrap_or_default()))
            .collect();
        if out.insert(id.to_string(), cats).is_some() {
            bail!("line {line}: item {id} appears twice in the demographics");
        }
    }
    Ok((fields.into_iter().map(|(_, f)| f).collect(), out))
}

/// Computes the audit from the two files' text.
pub fn audit_texts(scores: &str, demographics: &str, field: &str) -> anyhow::Result<BiasOutput> {
    let score_rows = parse_scores(scores).context("reading the scores")?;
    let (fields, demo) = parse_demographics(demographics).context("reading the demographics")?;
    let has_dimension = score_rows.iter().any(|r| r.dimension.is_some());
    let selected: Vec<&ScoreRow> = score_rows
        .iter()
        .filter(|r| !has_dimension || r.dimension.as_deref() == Some(field))
        .collect();
    if selected.is_empty() {
        bail!("no score rows for {field:?} in the scores file");
    }
    let mut without_demographics = 0;
    let rows: Vec<AuditRow> = selected
        .iter()
        .map(|r| {
            let categories = demo.get(&r.item_id).cloned().unwrap_or_else(|| {
                without_demographics += 1;
                BTreeMap::new()
            });
            AuditRow {
                item_id: r.item_id.clone(),
                ai_score: r.ai,
                human_score: r.human,
                length_words: r.length,
                categories,
            }
        })
        .collect();
    let scored: std::collections::HashSet<&str> = rows.iter().map(|r| r.item_id.as_str()).collect();
    let without_scores = demo.keys().filter(|k| !scored.contains(k.as_str())).count();
    let opts = AuditOptions {
        fields: Some(fields),
        ..Default::default()
    };
    let audit = bias_audit(&rows, &opts)?;
    Ok(BiasOutput {
        field: field.to_string(),
        without_demographics,
        without_scores,
        audit,
    })
}

/// The text or JSON the command prints.
pub fn render(out: &BiasOutput, json: bool) -> anyhow::Result<String> {
    if json {
        let mut s = serde_json::to_string_pretty(out)?;
        s.push('\n');
        return Ok(s);
    }
    let mut s = format!("Score audited: {}\n", out.field);
    if out.without_demographics > 0 {
        s.push_str(&format!(
            "{} scored item(s) had no demographics row: counted as unknown.\n",
            out.without_demographics
        ));
    }
    if out.without_scores > 0 {
        s.push_str(&format!(
            "{} demographics row(s) had no score: ignored.\n",
            out.without_scores
        ));
    }
    s.push_str(&render_table(&out.audit));
    Ok(s)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs the command; exit 0 (an audit with flags is a finding, not a failure).
pub fn run(args: &BiasArgs) -> anyhow::Result<i32> {
    let out = audit_texts(
        &read(&args.scores)?,
        &read(&args.demographics)?,
        &args.field,
    )?;
    let text = render(&out, args.json)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("writing the audit")?;
    stdout.flush().context("writing the audit")?;
    Ok(0)
}
