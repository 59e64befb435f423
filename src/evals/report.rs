//! Rendering an [`EvalReport`]: markdown (`--report`), JUnit XML (`--junit`) and the short
//! summary printed on stdout. JSON (`--json`) is the report serialized as is.
//!
//! JUnit: one `<testsuite>` per stage, one `<testcase>` per stage x dimension x gate
//! (`classname` = `stage.dimension`, `name` = the gate), a `<failure>` carrying the figures
//! for a failed gate and `<skipped>` for a skipped one. A stage whose gradings failed gets one
//! more testcase, `grading`, with an `<error>` listing them, so CI shows why figures are
//! missing. Every attribute and text is escaped, and characters XML 1.0 forbids are dropped.

use std::fmt::Write as _;

use super::analysis::{DimensionEval, EvalReport, StageReport};
use super::gates::GateStatus;
use crate::judge::pipeline::OFFLINE_NOTICE;

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.3}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:+.3}"))
}

fn ci(v: Option<[f64; 2]>) -> String {
    v.map_or_else(String::new, |[lo, hi]| format!(" [{lo:.2}, {hi:.2}]"))
}

/// A table cell: no pipes or line breaks from user data (ids, reasons) can break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn mark(status: GateStatus) -> &'static str {
    match status {
        GateStatus::Pass => "✅",
        GateStatus::Fail => "❌",
        GateStatus::Skipped => "➖",
    }
}

fn short_sha(s: &str) -> &str {
    &s[..s.len().min(12)]
}

fn gates_cell(d: &DimensionEval) -> String {
    d.gates
        .iter()
        .map(|g| format!("{} {}", mark(g.status), g.gate.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The markdown report: verdict first, then per stage the figures, gates, baseline,
/// calibration effect, flags and the items that were not scored.
pub fn render_markdown(r: &EvalReport) -> String {
    let mut o = String::new();
    let s = &r.summary;
    let g = &r.settings.gates;
    let _ = writeln!(o, "# grader eval report\n");
    let _ = writeln!(
        o,
        "**Result: {}** — {} gate(s) passed, {} failed, {} skipped; {} item(s), {} unscored, {} grading error(s){}.\n",
        if s.passed { "PASS" } else { "FAIL" },
        s.gates_passed,
        s.gates_failed,
        s.gates_skipped,
        s.items,
        s.unscored,
        s.errors,
        if s.regressions > 0 {
            format!("; significantly worse than the baseline on {} dimension(s)", s.regressions)
        } else {
            String::new()
        }
    );
    let _ = writeln!(o, "- Judge: `{}`", r.judge);
    if r.offline {
        let _ = writeln!(o, "  - {OFFLINE_NOTICE}");
    }
    let _ = writeln!(
        o,
        "- Golden set: {}",
        r.golden
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "- Reference: the human consensus per item and dimension (median of the graders, halves rounded down); flags: those a strict majority of graders raised."
    );
    let _ = writeln!(
        o,
        "- Intervals: 95% percentile bootstrap over items, {} resamples, seed {}.",
        r.settings.bootstrap, r.settings.seed
    );
    let _ = writeln!(
        o,
        "- Gates per dimension: QWK ≥ {:.2}; QWK ≥ human–human QWK − {:.2} (skipped without a human–human figure); |SMD| ≤ {:.2}; with a baseline, not significantly worse (upper end of the 95% CI of the paired QWK difference ≥ 0).",
        g.min_qwk, g.max_gap_to_human, g.max_abs_smd
    );
    let _ = writeln!(
        o,
        "- Unscored items are counted separately and never enter the figures as low scores.\n"
    );

    for st in &r.stages {
        stage_markdown(&mut o, st, r.settings.folds);
    }

    let _ = writeln!(o, "## Notes\n");
    let _ = writeln!(
        o,
        "- The calibration map (isotonic regression from the AI's raw score to the human consensus) is fitted here per stage × dimension and its effect measured by {}-fold cross-validation over items (seed {}), so the effect is never measured on the items it was fitted on. Storing maps per stage × dimension × prompt version in the database and applying them to new grade reports is a later step.",
        r.settings.folds, r.settings.seed
    );
    let _ = writeln!(
        o,
        "- Every figure is of an AI-generated, advisory assessment; people make hiring decisions."
    );
    o
}

fn stage_markdown(o: &mut String, st: &StageReport, folds: usize) {
    let _ = writeln!(
        o,
        "## {} — prompt `{}@{}` (sha256 `{}`)\n",
        st.stage,
        st.prompt.id,
        st.prompt.version,
        short_sha(&st.prompt.sha256)
    );
    let _ = writeln!(
        o,
        "{} item(s): {} scored, {} unscored, {} grading error(s); {} answered from the cache.\n",
        st.items,
        st.scored,
        st.unscored.len(),
        st.errors.len(),
        st.cached
    );
    if !st.dimensions.is_empty() {
        let _ = writeln!(
            o,
            "| dimension | n | QWK [95% CI] | human–human QWK (items) | SMD | MAE | exact | adjacent | unscored | gates |"
        );
        let _ = writeln!(o, "|---|---:|---|---|---:|---:|---:|---:|---:|---|");
        for d in &st.dimensions {
            let m = &d.agreement.metrics;
            let h = &d.agreement.human_ceiling;
            let _ = writeln!(
                o,
                "| `{}` | {} | {}{} | {} ({}) | {} | {} | {} | {} | {} | {} |",
                d.dimension,
                m.n,
                num(m.qwk),
                ci(d.agreement.ci.qwk),
                num(h.metrics.qwk),
                h.items,
                signed(m.smd),
                num(m.mae),
                num(m.exact),
                num(m.adjacent),
                d.unscored,
                gates_cell(d)
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "Gates:\n");
        for d in &st.dimensions {
            for g in &d.gates {
                let _ = writeln!(
                    o,
                    "- {} `{}` {}: {}",
                    mark(g.status),
                    d.dimension,
                    g.gate.as_str(),
                    g.detail
                );
            }
        }
        let _ = writeln!(o);
    }
    if !st.ungraded_dimensions.is_empty() {
        let _ = writeln!(
            o,
            "No human grades (not measured, not gated): {}.\n",
            st.ungraded_dimensions
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if let Some(b) = &st.baseline {
        let _ = writeln!(
            o,
            "### Against the baseline `{}@{}` (paired bootstrap over items)\n",
            b.id, b.version
        );
        let _ = writeln!(
            o,
            "| dimension | paired n | candidate QWK | baseline QWK | difference [95% CI] | share of resamples ≤ 0 | verdict |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---|---:|---|");
        for d in &st.dimensions {
            let Some(bc) = &d.baseline else { continue };
            match (&bc.paired, &bc.skipped) {
                (Some(p), _) => {
                    let verdict = if p.significantly_worse {
                        "❌ significantly worse"
                    } else if p.ci.is_some_and(|[lo, _]| lo > 0.0) {
                        "significantly better"
                    } else {
                        "no significant difference"
                    };
                    let _ = writeln!(
                        o,
                        "| `{}` | {} | {} | {} | {}{} | {} | {} |",
                        d.dimension,
                        p.n,
                        num(p.candidate_qwk),
                        num(p.baseline_qwk),
                        signed(p.diff),
                        ci(p.ci),
                        num(p.p_not_better),
                        verdict
                    );
                }
                (None, reason) => {
                    let _ = writeln!(
                        o,
                        "| `{}` | – | – | – | – | – | {} |",
                        d.dimension,
                        cell(reason.as_deref().unwrap_or("not compared"))
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            "\nBaseline: {} unscored, {} grading error(s).\n",
            st.baseline_unscored.len(),
            st.baseline_errors.len()
        );
    }

    if !st.dimensions.is_empty() {
        let _ = writeln!(
            o,
            "### Calibration map (isotonic), measured on held-out folds ({folds}-fold cross-validation)\n"
        );
        let _ = writeln!(
            o,
            "| dimension | n | QWK raw → calibrated | MAE raw → calibrated | SMD raw → calibrated | fitted map (raw → human) |"
        );
        let _ = writeln!(o, "|---|---:|---|---|---|---|");
        for d in &st.dimensions {
            let c = &d.calibration;
            let map = c.map.as_ref().map_or_else(
                || "–".to_string(),
                |m| {
                    m.xs.iter()
                        .zip(&m.ys)
                        .map(|(x, y)| format!("{x}→{y:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            match &c.skipped {
                Some(why) => {
                    let _ = writeln!(
                        o,
                        "| `{}` | {} | {} | – | – | {} |",
                        d.dimension,
                        c.n,
                        cell(why),
                        map
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "| `{}` | {} | {} → {} | {} → {} | {} → {} | {} |",
                        d.dimension,
                        c.n,
                        num(c.raw.qwk),
                        num(c.calibrated.qwk),
                        num(c.raw.mae),
                        num(c.calibrated.mae),
                        signed(c.raw.smd),
                        signed(c.calibrated.smd),
                        map
                    );
                }
            }
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(
        o,
        "### Flags against the graders' majority ({} scored item(s))\n",
        st.flag_items
    );
    if st.flags.per_flag.is_empty() {
        let _ = writeln!(
            o,
            "Neither the AI nor a majority of graders raised a flag.\n"
        );
    } else {
        let _ = writeln!(o, "| flag | TP | FP | FN | precision | recall | F1 |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
        for (id, f) in st
            .flags
            .per_flag
            .iter()
            .map(|(k, v)| (format!("`{k}`"), v))
            .chain(std::iter::once((
                "**all (micro)**".to_string(),
                &st.flags.micro,
            )))
        {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                id,
                f.tp,
                f.fp,
                f.fn_,
                num(f.precision),
                num(f.recall),
                num(f.f1)
            );
        }
        let _ = writeln!(o);
    }

    for (title, list) in [
        (
            "Unscored items (counted apart, not as low scores)",
            &st.unscored,
        ),
        ("Grading errors", &st.errors),
        ("Baseline: unscored items", &st.baseline_unscored),
        ("Baseline: grading errors", &st.baseline_errors),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(o, "### {title}\n");
        for f in list {
            let _ = writeln!(o, "- `{}`: {}", f.id, cell(&f.reason));
        }
        let _ = writeln!(o);
    }
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 forbids (most
/// C0 controls), which would otherwise make the whole file unreadable to a CI server.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The figures behind one dimension's gates, as failure text.
fn figures_text(d: &DimensionEval) -> String {
    let m = &d.agreement.metrics;
    format!(
        "n={} qwk={} ci={} human_qwk={} smd={} mae={} exact={} adjacent={} unscored={} errors={}",
        m.n,
        num(m.qwk),
        ci(d.agreement.ci.qwk).trim(),
        num(d.agreement.human_ceiling.metrics.qwk),
        signed(m.smd),
        num(m.mae),
        num(m.exact),
        num(m.adjacent),
        d.unscored,
        d.errors
    )
}

/// JUnit XML (see the module docs for the layout).
pub fn render_junit(r: &EvalReport) -> String {
    let mut suites = String::new();
    let (mut t_all, mut f_all, mut s_all, mut e_all) = (0, 0, 0, 0);
    for st in &r.stages {
        let (mut tests, mut failures, mut skipped, mut errors) = (0, 0, 0, 0);
        let mut cases = String::new();
        for d in &st.dimensions {
            for g in &d.gates {
                tests += 1;
                let _ = write!(
                    cases,
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    xml_escape(&format!("{}.{}", st.stage, d.dimension)),
                    g.gate.as_str()
                );
                match g.status {
                    GateStatus::Pass => cases.push_str("/>\n"),
                    GateStatus::Fail => {
                        failures += 1;
                        let _ = write!(
                            cases,
                            ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                            g.gate.as_str(),
                            xml_escape(&g.detail),
                            xml_escape(&figures_text(d))
                        );
                    }
                    GateStatus::Skipped => {
                        skipped += 1;
                        let _ = write!(
                            cases,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                            xml_escape(&g.detail)
                        );
                    }
                }
            }
        }
        let failed: Vec<String> = st
            .errors
            .iter()
            .map(|f| format!("{}: {}", f.id, f.reason))
            .chain(
                st.baseline_errors
                    .iter()
                    .map(|f| format!("{} (baseline): {}", f.id, f.reason)),
            )
            .collect();
        if !failed.is_empty() {
            tests += 1;
            errors += 1;
            let _ = write!(
                cases,
                "    <testcase classname=\"{}\" name=\"grading\">\n      <error type=\"grading\" message=\"{} grading(s) failed\">{}</error>\n    </testcase>\n",
                xml_escape(st.stage.as_str()),
                failed.len(),
                xml_escape(&failed.join("\n"))
            );
        }
        let _ = write!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n",
            xml_escape(&format!(
                "grader eval {} ({}@{})",
                st.stage, st.prompt.id, st.prompt.version
            ))
        );
        t_all += tests;
        f_all += failures;
        s_all += skipped;
        e_all += errors;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"grader eval\" tests=\"{t_all}\" failures=\"{f_all}\" errors=\"{e_all}\" skipped=\"{s_all}\">\n{suites}</testsuites>\n"
    )
}

/// The few lines printed on stdout: one per stage and dimension, then the verdict.
pub fn render_summary(r: &EvalReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "grader eval: judge {}{}",
        r.judge,
        if r.offline {
            " (offline pattern judge, no language model)"
        } else {
            ""
        }
    );
    for st in &r.stages {
        let _ = writeln!(
            o,
            "\n{} ({}@{}): {} items, {} scored, {} unscored, {} errors, {} cached",
            st.stage,
            st.prompt.id,
            st.prompt.version,
            st.items,
            st.scored,
            st.unscored.len(),
            st.errors.len(),
            st.cached
        );
        let w = st
            .dimensions
            .iter()
            .map(|d| d.dimension.len())
            .max()
            .unwrap_or(9)
            .max(9);
        let _ = writeln!(
            o,
            "  {:<w$} {:>4} {:>7} {:>15} {:>7} {:>7}  gates",
            "dimension", "n", "qwk", "95% ci", "human", "smd"
        );
        for d in &st.dimensions {
            let m = &d.agreement.metrics;
            let gates: Vec<String> = d
                .gates
                .iter()
                .map(|g| format!("{}:{}", g.gate.as_str(), g.status.as_str()))
                .collect();
            let _ = writeln!(
                o,
                "  {:<w$} {:>4} {:>7} {:>15} {:>7} {:>7}  {}",
                d.dimension,
                m.n,
                num(m.qwk),
                ci(d.agreement.ci.qwk).trim(),
                num(d.agreement.human_ceiling.metrics.qwk),
                signed(m.smd),
                gates.join(" ")
            );
        }
    }
    let s = &r.summary;
    let _ = writeln!(
        o,
        "\n{}: {} gates passed, {} failed, {} skipped; {} regression(s); {} unscored; {} grading error(s)",
        if s.passed { "PASS" } else { "FAIL" },
        s.gates_passed,
        s.gates_failed,
        s.gates_skipped,
        s.regressions,
        s.unscored,
        s.errors
    );
    o
}
