//! `grader prompts list|show|diff|lint|lock`: inspecting and publishing judge prompt versions.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use crate::prompts::{self, LintSeverity, PromptError, PromptVersion, Registry};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PromptsCmd {
    /// List every prompt version: id, version, stage, sha256, published, dimensions, flags.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one version's rubric (`id` = latest version, or `id@version`).
    Show {
        reference: String,
        /// Print the prompt file and its identity as JSON.
        #[arg(long)]
        json: bool,
        /// Print the rendered system message instead of the rubric.
        #[arg(long)]
        render: bool,
    },
    /// What changed between two versions: a rubric summary, then a unified diff.
    /// `B` may be a bare version label (`v2`) meaning the same prompt as `A`.
    Diff { a: String, b: String },
    /// Check every version; exits 1 when a published version changed or a rubric or
    /// template is broken.
    Lint,
    /// Publish every version not yet in the lock file (refused while lint has errors).
    Lock,
}

/// Runs one `prompts` subcommand against the prompts directory `dir` and returns the exit
/// code (0 ok, 1 lint errors); errors that stop the command (unreadable directory, unknown
/// reference) are returned for `main` to print.
pub fn run(cmd: &PromptsCmd, dir: &Path) -> anyhow::Result<i32> {
    let reg =
        Registry::load(dir).with_context(|| format!("loading prompts from {}", dir.display()))?;
    let out = match cmd {
        PromptsCmd::List { json } => list(&reg, *json)?,
        PromptsCmd::Show {
            reference,
            json,
            render,
        } => show(reg.resolve(reference)?, *json, *render)?,
        PromptsCmd::Diff { a, b } => {
            let va = reg.resolve(a)?;
            let vb = resolve_relative(&reg, va, b)?;
            prompts::diff(va, vb)
        }
        PromptsCmd::Lint => return Ok(lint(&reg)),
        PromptsCmd::Lock => return lock(&reg, dir),
    };
    print!("{out}");
    Ok(0)
}

/// `B` of `diff A B`: a full reference, or a bare version label of A's prompt.
fn resolve_relative<'r>(
    reg: &'r Registry,
    a: &PromptVersion,
    b: &str,
) -> Result<&'r PromptVersion, PromptError> {
    if !b.contains('@') && reg.latest(b).is_none() {
        if let Some(v) = reg.get(&a.file.id, b.trim()) {
            return Ok(v);
        }
    }
    reg.resolve(b)
}

fn list(reg: &Registry, as_json: bool) -> anyhow::Result<String> {
    if as_json {
        let rows: Vec<_> = reg
            .list()
            .iter()
            .map(|v| {
                json!({
                    "id": v.file.id,
                    "version": v.file.version,
                    "stage": v.file.stage,
                    "sha256": v.sha256,
                    "published": v.published,
                    "dimensions": v.file.dimensions.len(),
                    "flags": v.file.flags.len(),
                    "path": v.path,
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let mut rows = vec![[
        "ID".to_string(),
        "VERSION".to_string(),
        "STAGE".to_string(),
        "SHA256".to_string(),
        "PUBLISHED".to_string(),
        "DIMS".to_string(),
        "FLAGS".to_string(),
    ]];
    for v in reg.list() {
        rows.push([
            v.file.id.clone(),
            v.file.version.clone(),
            v.file.stage.to_string(),
            v.sha256.chars().take(12).collect(),
            if v.published { "yes" } else { "no" }.to_string(),
            v.file.dimensions.len().to_string(),
            v.file.flags.len().to_string(),
        ]);
    }
    if reg.list().is_empty() {
        return Ok(format!(
            "no prompt versions in {}\n",
            reg.dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        ));
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    Ok(out)
}

fn show(v: &PromptVersion, as_json: bool, render: bool) -> anyhow::Result<String> {
    if render {
        let mut s = v.system_message()?.to_string();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        return Ok(s);
    }
    if as_json {
        let doc = json!({
            "key": v.key(),
            "sha256": v.sha256,
            "published": v.published,
            "path": v.path,
            "prompt": v.file,
            "output_schema": prompts::output_schema(&v.file),
        });
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    let f = &v.file;
    let mut out = String::new();
    let _ = writeln!(out, "{} — {}", v.key(), f.title);
    let _ = writeln!(out, "stage:     {}", f.stage);
    let _ = writeln!(out, "sha256:    {}", v.sha256);
    let _ = writeln!(out, "published: {}", if v.published { "yes" } else { "no" });
    let _ = writeln!(out, "file:      {}", v.path.display());
    let _ = writeln!(out, "\n{}\n", f.description.trim());
    let _ = writeln!(out, "Dimensions ({}):", f.dimensions.len());
    for d in &f.dimensions {
        let mut tags = vec![format!("scale {}-{}", d.scale.min, d.scale.max)];
        if let Some(layer) = d.layer {
            tags.push(format!(
                "layer {}",
                serde_json::to_value(layer)
                    .ok()
                    .and_then(|x| x.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        }
        if d.weight != 1.0 {
            tags.push(format!("weight {}", d.weight));
        }
        if d.rag_maturity {
            tags.push("RAG maturity".to_string());
        }
        let _ = writeln!(out, "\n  {} — {} ({})", d.id, d.name, tags.join(", "));
        let _ = writeln!(out, "    {}", d.description.trim());
        for level in d.scale.levels() {
            let anchor = d.anchor(level).unwrap_or("(missing)");
            let _ = writeln!(out, "    {level}: {}", anchor.trim());
        }
    }
    let _ = writeln!(out, "\nFlags ({}):", f.flags.len());
    for flag in &f.flags {
        let kind = serde_json::to_value(flag.kind).unwrap_or_default();
        let sev = serde_json::to_value(flag.severity).unwrap_or_default();
        let _ = writeln!(
            out,
            "  [{} {}] {} — {}",
            kind.as_str().unwrap_or_default(),
            sev.as_str().unwrap_or_default(),
            flag.id,
            flag.label
        );
        let _ = writeln!(out, "    {}", flag.description.trim());
    }
    let _ = writeln!(out, "\nExamples: {}", f.examples.len());
    Ok(out)
}

fn lint(reg: &Registry) -> i32 {
    let issues = prompts::lint(reg);
    for issue in &issues {
        println!("{issue}");
    }
    let errors = issues
        .iter()
        .filter(|i| i.severity == LintSeverity::Error)
        .count();
    if errors > 0 {
        println!(
            "{errors} error(s) in {} prompt version(s)",
            reg.list().len()
        );
        1
    } else {
        println!(
            "ok: {} prompt versions, all published versions match the lock",
            reg.list().len()
        );
        0
    }
}

/// Publishing freezes a version forever, so a version that fails lint is never published.
fn lock(reg: &Registry, dir: &Path) -> anyhow::Result<i32> {
    let errors: Vec<_> = prompts::lint(reg)
        .into_iter()
        .filter(|i| i.severity == LintSeverity::Error)
        .collect();
    if !errors.is_empty() {
        for issue in &errors {
            println!("{issue}");
        }
        println!("refusing to lock: fix the lint errors above first");
        return Ok(1);
    }
    let added = prompts::lock(dir, reg)?;
    if added.is_empty() {
        println!("nothing to publish: every version is in the lock");
    }
    for key in &added {
        println!("published {key}");
    }
    Ok(0)
}
