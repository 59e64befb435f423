//! `grader::evals` with scripted judges: golden-set loading errors, gates on constructed data,
//! unscored items, bounded concurrency, the paired bootstrap, the calibration map's
//! cross-validated effect, and the report formats (JUnit well-formedness and counts).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use grader::calibration::{human_consensus, pava, IsotonicMap};
use grader::domain::Stage;
use grader::evals::{
    check_against_prompt, collect_files, load_golden, paired_qwk_bootstrap, render_junit,
    render_markdown, run_eval, AiGrade, EvalPlan, EvalReport, EvalSettings, GateKind, GateStatus,
    GoldenError, GoldenItem, ItemJudge, ProgressMode,
};
use grader::ingest::Limits;
use grader::judge::pipeline::JudgeError;
use grader::prompts::{PromptVersion, Registry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(p)
}

fn registry() -> Registry {
    Registry::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))).unwrap()
}

fn valid_items() -> Vec<GoldenItem> {
    load_golden(&[data("valid")], &Limits::default()).unwrap()
}

/// A second version of a shipped prompt (same rubric, different identity) for baselines.
fn v2_of(pv: &PromptVersion) -> PromptVersion {
    let text = pv
        .source
        .replacen("version = \"v1\"", "version = \"v2\"", 1);
    assert_ne!(text, pv.source, "the shipped prompt declares version v1");
    PromptVersion::from_bytes("prompts/x/v2.toml", text.as_bytes()).unwrap()
}

fn consensus(item: &GoldenItem, dim: &str) -> Option<f64> {
    let s: Vec<f64> = item.human_scores(dim).iter().map(|(_, s)| *s).collect();
    human_consensus(&s)
}

/// A judge answering from a closure; it also tracks the most gradings in flight at once.
struct Scripted<F> {
    f: F,
    delay: Option<Duration>,
    in_flight: Cell<usize>,
    max_in_flight: Cell<usize>,
    calls: Cell<usize>,
}

fn scripted<F>(f: F) -> Scripted<F>
where
    F: Fn(&GoldenItem, &PromptVersion) -> Result<AiGrade, JudgeError>,
{
    Scripted {
        f,
        delay: None,
        in_flight: Cell::new(0),
        max_in_flight: Cell::new(0),
        calls: Cell::new(0),
    }
}

#[async_trait(?Send)]
impl<F> ItemJudge for Scripted<F>
where
    F: Fn(&GoldenItem, &PromptVersion) -> Result<AiGrade, JudgeError>,
{
    fn model(&self) -> String {
        "scripted".into()
    }
    async fn judge(
        &self,
        item: &GoldenItem,
        prompt: &PromptVersion,
    ) -> Result<AiGrade, JudgeError> {
        self.calls.set(self.calls.get() + 1);
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight
            .set(self.max_in_flight.get().max(self.in_flight.get()));
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        self.in_flight.set(self.in_flight.get() - 1);
        (self.f)(item, prompt)
    }
}

/// Scores every dimension with `score(item, dimension, (min, max))`; ungraded dimensions get
/// the minimum. Flags: the graders' majority flags.
fn grade_with(
    item: &GoldenItem,
    prompt: &PromptVersion,
    score: impl Fn(&GoldenItem, &str, (u8, u8)) -> f64,
) -> AiGrade {
    let sets: Vec<_> = item.grades.iter().map(|g| g.flags.clone()).collect();
    AiGrade {
        scores: prompt
            .file
            .dimensions
            .iter()
            .map(|d| (d.id.clone(), score(item, &d.id, (d.scale.min, d.scale.max))))
            .collect(),
        flags: grader::calibration::human_flag_consensus(&sets),
        unscored: None,
        cached: false,
    }
}

fn reproduce_consensus(item: &GoldenItem, prompt: &PromptVersion) -> AiGrade {
    grade_with(item, prompt, |it, d, (min, _)| {
        consensus(it, d).unwrap_or(f64::from(min))
    })
}

fn always_minimum(item: &GoldenItem, prompt: &PromptVersion) -> AiGrade {
    grade_with(item, prompt, |_, _, (min, _)| f64::from(min))
}

fn plan<'a>(
    items: &'a [GoldenItem],
    reg: &'a Registry,
    baseline: Option<&'a PromptVersion>,
    candidate: Option<&'a PromptVersion>,
) -> EvalPlan<'a> {
    EvalPlan::new(vec![data("valid")], items, |stage| {
        let default = reg.for_stage(stage).unwrap();
        let cand = candidate
            .filter(|c| c.file.stage == stage)
            .unwrap_or(default);
        Ok((cand, baseline.filter(|b| b.file.stage == stage)))
    })
    .unwrap()
}

fn settings() -> EvalSettings {
    EvalSettings {
        bootstrap: 200,
        ..EvalSettings::default()
    }
}

fn run<J: ItemJudge>(judge: &J, plan: &EvalPlan<'_>, settings: &EvalSettings) -> EvalReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run_eval(judge, plan, settings, ProgressMode::Never))
        .unwrap()
}

// ---------------------------------------------------------------- loading

#[test]
fn a_directory_loads_every_jsonl_in_it_with_parsed_submissions() {
    let items = valid_items();
    assert_eq!(items.len(), 18);
    let wa = items.iter().find(|i| i.id == "wa-05").unwrap();
    assert_eq!(wa.stage, Stage::WrittenAnswer);
    assert!(wa
        .submission
        .question
        .as_deref()
        .unwrap()
        .contains("hallucinations"));
    assert_eq!(wa.grades.len(), 2);
    assert!(wa.line > 0 && wa.path.ends_with("written_answer.jsonl"));
    let sd = items.iter().find(|i| i.id == "sd-02").unwrap();
    assert_eq!(
        sd.submission.transcript.turns.len(),
        2,
        "speaker-labelled transcript"
    );
    let reg = registry();
    for stage in [Stage::WrittenAnswer, Stage::SystemDesign] {
        let problems = check_against_prompt(&items, reg.for_stage(stage).unwrap());
        assert!(problems.is_empty(), "{problems:?}");
    }
}

fn load_err(name: &str) -> String {
    match load_golden(&[data(&format!("invalid/{name}"))], &Limits::default()) {
        Err(e) => e.to_string(),
        Ok(items) => {
            let pv = registry();
            let pv = pv.for_stage(Stage::WrittenAnswer).unwrap();
            let problems = check_against_prompt(&items, pv);
            assert!(!problems.is_empty(), "{name} should have problems");
            GoldenError::Invalid(problems).to_string()
        }
    }
}

#[test]
fn loading_errors_name_the_file_and_line() {
    let cases = [
        ("bad_json.jsonl", ":2:", "not a golden item"),
        ("unknown_stage.jsonl", ":3:", "unknown stage `architecture`"),
        ("no_grades.jsonl", ":1:", "has no `grades`"),
        (
            "out_of_scale.jsonl",
            ":2:",
            "score 5 for `clarity` is outside the scale 1-4 of written_answer@v1",
        ),
        (
            "unknown_dimension.jsonl",
            ":1:",
            "unknown dimension `charisma`",
        ),
        ("unknown_flag.jsonl", ":1:", "unknown flag `nice_shoes`"),
        (
            "duplicate_id.jsonl",
            ":2:",
            "duplicate item id `dup` (first at",
        ),
        (
            "both_contents.jsonl",
            ":1:",
            "both `answer` and `transcript`",
        ),
    ];
    for (file, line, needle) in cases {
        let msg = load_err(file);
        assert!(
            msg.contains(&format!("{file}{line}")),
            "{file}: expected {file}{line} in:\n{msg}"
        );
        assert!(
            msg.contains(needle),
            "{file}: expected {needle:?} in:\n{msg}"
        );
    }
    // every problem in a file is reported, not only the first
    let msg = load_err("no_grades.jsonl");
    assert!(msg.contains("2 problems"), "{msg}");
    assert!(msg.contains("empty `grades` list"), "{msg}");
}

#[test]
fn missing_paths_and_empty_directories_are_errors() {
    let err = collect_files(&[data("nope.jsonl")]).unwrap_err();
    assert!(matches!(err, GoldenError::Io { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = collect_files(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.to_string().contains("no *.jsonl files"), "{err}");
    std::fs::write(dir.path().join("empty.jsonl"), "\n\n").unwrap();
    let err = load_golden(&[dir.path().to_path_buf()], &Limits::default()).unwrap_err();
    assert!(matches!(err, GoldenError::Empty(_)), "{err}");
}

// ---------------------------------------------------------------- gates

#[test]
fn a_judge_that_reproduces_the_consensus_passes_every_gate() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| Ok(reproduce_consensus(i, p)));
    let r = run(&judge, &plan, &settings());
    assert_eq!(r.exit_code(), 0, "{:#?}", r.summary);
    assert!(r.summary.passed);
    assert_eq!(r.summary.gates_failed, 0);
    assert_eq!(r.stages.len(), 2);
    for st in &r.stages {
        for d in &st.dimensions {
            assert_eq!(d.agreement.metrics.qwk, Some(1.0), "{}", d.dimension);
            assert_eq!(d.agreement.metrics.smd, Some(0.0));
            assert!(
                d.agreement.human_ceiling.items > 0,
                "fixtures have two graders"
            );
            let kinds: Vec<_> = d.gates.iter().map(|g| (g.gate, g.status)).collect();
            assert_eq!(
                kinds,
                vec![
                    (GateKind::MinQwk, GateStatus::Pass),
                    (GateKind::GapToHuman, GateStatus::Pass),
                    (GateKind::AbsSmd, GateStatus::Pass)
                ]
            );
        }
        // flags reproduce the majority flags exactly
        assert_eq!(st.flags.micro.fp, 0);
        assert_eq!(st.flags.micro.fn_, 0);
    }
    let sd = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::SystemDesign)
        .unwrap();
    assert_eq!(
        sd.dimensions.len(),
        3,
        "only graded dimensions are measured"
    );
    assert!(sd
        .ungraded_dimensions
        .contains(&"cost_estimation".to_string()));
    assert_eq!(judge.calls.get(), 18);
}

#[test]
fn a_judge_that_always_gives_the_minimum_fails() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| Ok(always_minimum(i, p)));
    let r = run(&judge, &plan, &settings());
    assert_eq!(r.exit_code(), 1);
    assert!(!r.summary.passed);
    for st in &r.stages {
        for d in &st.dimensions {
            let g = &d.gates[0];
            assert_eq!(g.gate, GateKind::MinQwk);
            assert_eq!(g.status, GateStatus::Fail, "{}: {}", d.dimension, g.detail);
            assert_eq!(
                d.gates
                    .iter()
                    .find(|g| g.gate == GateKind::AbsSmd)
                    .unwrap()
                    .status,
                GateStatus::Fail
            );
        }
    }
    // a constant AI agrees no better than chance: QWK 0, not undefined
    let wa = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::WrittenAnswer)
        .unwrap();
    assert!(wa
        .dimensions
        .iter()
        .all(|d| d.agreement.metrics.qwk == Some(0.0)));
    // thresholds are the run's: with every gate relaxed the same judge passes
    let relaxed = EvalSettings {
        gates: grader::evals::Gates {
            min_qwk: -1.0,
            max_gap_to_human: 10.0,
            max_abs_smd: 100.0,
        },
        ..settings()
    };
    let r = run(&judge, &plan, &relaxed);
    assert_eq!(r.exit_code(), 0, "{:#?}", r.summary);
}

#[test]
fn unscored_items_are_counted_apart_not_as_low_scores() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| {
        if i.id == "wa-05" || i.id == "wa-10" {
            Ok(AiGrade {
                unscored: Some("invalid output after 1 repair".into()),
                ..AiGrade::default()
            })
        } else {
            Ok(reproduce_consensus(i, p))
        }
    });
    let r = run(&judge, &plan, &settings());
    let wa = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::WrittenAnswer)
        .unwrap();
    assert_eq!(wa.unscored.len(), 2);
    assert_eq!(wa.scored, 10);
    for d in &wa.dimensions {
        assert_eq!(d.unscored, 2, "{}", d.dimension);
        assert_eq!(d.graded_items, 12);
        assert_eq!(d.agreement.metrics.n, 10);
        assert_eq!(d.agreement.metrics.qwk, Some(1.0), "not dragged down");
    }
    assert_eq!(r.summary.unscored, 2);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(wa.flag_items, 10, "flags only over scored items");
    let md = render_markdown(&r);
    assert!(
        md.contains("wa-05") && md.contains("Unscored items"),
        "{md}"
    );
}

#[test]
fn failed_gradings_exit_2_and_are_listed() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| {
        if i.id == "sd-03" {
            Err(JudgeError::Setup("provider <down> & out".into()))
        } else {
            Ok(reproduce_consensus(i, p))
        }
    });
    let r = run(&judge, &plan, &settings());
    assert_eq!(r.summary.errors, 1);
    assert_eq!(r.exit_code(), 2);
    let sd = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::SystemDesign)
        .unwrap();
    assert_eq!(sd.errors[0].id, "sd-03");
    assert!(sd
        .dimensions
        .iter()
        .all(|d| d.errors == 1 && d.unscored == 0));
    let xml = render_junit(&r);
    check_well_formed(&xml);
    assert!(xml.contains("name=\"grading\""));
    assert!(xml.contains("provider &lt;down&gt; &amp; out"), "{xml}");
}

#[test]
fn concurrency_is_bounded() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    let mut judge = scripted(|i: &GoldenItem, p: &PromptVersion| Ok(reproduce_consensus(i, p)));
    judge.delay = Some(Duration::from_millis(5));
    let s = EvalSettings {
        concurrency: 3,
        ..settings()
    };
    let r = run(&judge, &plan, &s);
    assert_eq!(judge.max_in_flight.get(), 3);
    assert_eq!(r.exit_code(), 0);
    let s1 = EvalSettings {
        concurrency: 1,
        ..settings()
    };
    judge.max_in_flight.set(0);
    let r1 = run(&judge, &plan, &s1);
    assert_eq!(judge.max_in_flight.get(), 1);
    // results are in item order whatever the completion order: same report
    assert_eq!(
        serde_json::to_value(&r.stages).unwrap(),
        serde_json::to_value(&r1.stages).unwrap()
    );
}

// ---------------------------------------------------------------- baseline

#[test]
fn paired_bootstrap_on_identical_scores_finds_no_difference() {
    let human: Vec<f64> = (0..40).map(|i| f64::from(1 + i % 5)).collect();
    let ai: Vec<f64> = human
        .iter()
        .enumerate()
        .map(|(i, h)| if i % 4 == 0 { (h + 1.0).min(5.0) } else { *h })
        .collect();
    let c = paired_qwk_bootstrap(&ai, &ai, &human, (1, 5), 500, 7).unwrap();
    assert_eq!(c.diff, Some(0.0));
    assert_eq!(c.ci, Some([0.0, 0.0]));
    assert!(!c.significantly_worse);
    assert_eq!(c.resamples_used, 500);
}

#[test]
fn paired_bootstrap_detects_a_clearly_worse_candidate() {
    let mut rng = StdRng::seed_from_u64(1);
    let human: Vec<f64> = (0..60).map(|i| f64::from(1 + i % 5)).collect();
    let baseline = human.clone();
    let candidate: Vec<f64> = human
        .iter()
        .map(|h| (h + f64::from(rng.random_range(-2i32..=2))).clamp(1.0, 5.0))
        .collect();
    let c = paired_qwk_bootstrap(&candidate, &baseline, &human, (1, 5), 1000, 42).unwrap();
    let [lo, hi] = c.ci.unwrap();
    assert!(c.diff.unwrap() < 0.0 && lo <= c.diff.unwrap() && c.diff.unwrap() <= hi);
    assert!(hi < 0.0, "upper bound {hi}");
    assert!(c.significantly_worse);
    assert!(c.p_not_better.unwrap() > 0.99);
    // the other way round it is significantly better, not worse
    let r = paired_qwk_bootstrap(&baseline, &candidate, &human, (1, 5), 1000, 42).unwrap();
    assert!(!r.significantly_worse);
    assert!(r.ci.unwrap()[0] > 0.0);
    assert!(r.p_not_better.unwrap() < 0.01);
    // deterministic given the seed
    assert_eq!(
        c,
        paired_qwk_bootstrap(&candidate, &baseline, &human, (1, 5), 1000, 42).unwrap()
    );
}

#[test]
fn eval_against_a_baseline_fails_a_significant_regression_only() {
    let items = valid_items();
    let reg = registry();
    let v1 = reg.for_stage(Stage::WrittenAnswer).unwrap();
    let v2 = v2_of(v1);
    // same behaviour for both versions: no regression
    let plan_same = plan(&items, &reg, Some(v1), Some(&v2));
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| Ok(reproduce_consensus(i, p)));
    let r = run(&judge, &plan_same, &settings());
    assert_eq!(r.summary.regressions, 0);
    assert_eq!(r.exit_code(), 0, "{:#?}", r.summary);
    assert_eq!(
        judge.calls.get(),
        18 + 12,
        "the baseline stage is graded twice"
    );
    let wa = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::WrittenAnswer)
        .unwrap();
    assert_eq!(wa.baseline.as_ref().unwrap().version, "v1");
    assert_eq!(wa.prompt.version, "v2");
    for d in &wa.dimensions {
        let g = d
            .gates
            .iter()
            .find(|g| g.gate == GateKind::Baseline)
            .unwrap();
        assert_eq!(g.status, GateStatus::Pass, "{}", g.detail);
    }
    // the system_design stage has no baseline, so no baseline gate there
    let sd = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::SystemDesign)
        .unwrap();
    assert!(sd.dimensions.iter().all(|d| d.baseline.is_none()));

    // v2 scrambles the order of the items: significantly worse than v1 on QWK
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| {
        if p.file.version == "v2" {
            Ok(grade_with(i, p, |it, d, (min, max)| {
                consensus(it, d).map_or(f64::from(min), |c| f64::from(max) + f64::from(min) - c)
            }))
        } else {
            Ok(reproduce_consensus(i, p))
        }
    });
    let r = run(&judge, &plan_same, &settings());
    assert!(r.summary.regressions >= 3, "{:#?}", r.summary);
    assert_eq!(r.exit_code(), 1);
    let wa = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::WrittenAnswer)
        .unwrap();
    let d = &wa.dimensions[0];
    let p = d.baseline.as_ref().unwrap().paired.unwrap();
    assert!(p.significantly_worse && p.ci.unwrap()[1] < 0.0);
    assert_eq!(p.baseline_qwk, Some(1.0));
    let md = render_markdown(&r);
    assert!(md.contains("significantly worse"), "{md}");
}

// ---------------------------------------------------------------- calibration map

#[test]
fn isotonic_fit_matches_hand_computed_pava() {
    let y = [1.0, 3.0, 2.0, 4.0, 3.0, 5.0];
    assert_eq!(
        pava(&y, &[1.0; 6]).unwrap(),
        vec![1.0, 2.5, 2.5, 3.5, 3.5, 5.0]
    );
    let m = IsotonicMap::fit(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &y).unwrap();
    assert_eq!(m.apply(2.5), 2.5);
    assert_eq!(m.apply(3.5), 3.0, "halfway between 2.5 and 3.5");
    assert_eq!(m.apply(-3.0), 1.0);
    assert_eq!(m.apply(60.0), 5.0);
}

#[test]
fn the_calibration_effect_is_measured_on_held_out_folds() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    // One point too lenient wherever there is room: a monotone map can undo it.
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| {
        Ok(grade_with(i, p, |it, d, (min, max)| {
            consensus(it, d).map_or(f64::from(min), |c| (c + 1.0).min(f64::from(max)))
        }))
    });
    let r = run(&judge, &plan, &settings());
    let wa = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::WrittenAnswer)
        .unwrap();
    for d in &wa.dimensions {
        let c = &d.calibration;
        assert_eq!(c.folds, 5);
        assert_eq!(c.n, 12);
        assert!(c.map.is_some());
        assert!(
            c.calibrated.mae.unwrap() < c.raw.mae.unwrap(),
            "{}: {c:?}",
            d.dimension
        );
        assert!(c.raw.smd.unwrap() > 0.0, "lenient");
        // the fitted map moves scores down
        let m = c.map.as_ref().unwrap();
        assert!(m.xs.iter().zip(&m.ys).all(|(x, y)| y <= x));
    }
}

// ---------------------------------------------------------------- reports

/// A small XML well-formedness check: one root, balanced and properly nested tags, quoted
/// attributes, no raw `<` or bare `&` in text or attribute values, only the five predefined
/// entities.
fn check_well_formed(xml: &str) {
    let rest = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    let check_text = |t: &str| {
        assert!(!t.contains('<'), "raw < in {t:?}");
        let mut s = t;
        while let Some(i) = s.find('&') {
            let after = &s[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| after.starts_with(e)),
                "bare & in {t:?}"
            );
            s = &after[1..];
        }
    };
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut s = rest;
    while !s.is_empty() {
        if let Some(tail) = s.strip_prefix('<') {
            let end = tail.find('>').expect("unterminated tag");
            let tag = &tail[..end];
            s = &tail[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched </{name}>"
                );
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            );
            let mut attrs = tag[name_end..].trim();
            while !attrs.is_empty() {
                let eq = attrs.find("=\"").expect("attribute without =\"");
                assert!(attrs[..eq]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'));
                let val_end = attrs[eq + 2..].find('"').expect("unterminated attribute") + eq + 2;
                check_text(&attrs[eq + 2..val_end]);
                attrs = attrs[val_end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_string());
            }
        } else {
            let end = s.find('<').unwrap_or(s.len());
            let text = &s[..end];
            if stack.is_empty() {
                assert!(text.trim().is_empty(), "text outside the root: {text:?}");
            }
            check_text(text);
            s = &s[end..];
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1);
}

fn attr(xml: &str, element: &str, name: &str) -> usize {
    let start = xml.find(&format!("<{element} ")).unwrap();
    let tag = &xml[start..start + xml[start..].find('>').unwrap()];
    let key = format!("{name}=\"");
    let v = &tag[tag.find(&key).unwrap() + key.len()..];
    v[..v.find('"').unwrap()].parse().unwrap()
}

#[test]
fn junit_is_well_formed_with_one_testcase_per_stage_dimension_gate() {
    let items = valid_items();
    let reg = registry();
    let v1 = reg.for_stage(Stage::WrittenAnswer).unwrap();
    let v2 = v2_of(v1);
    let plan = plan(&items, &reg, Some(v1), Some(&v2));
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| Ok(always_minimum(i, p)));
    let r = run(&judge, &plan, &settings());
    let xml = render_junit(&r);
    check_well_formed(&xml);
    let gates: usize = r
        .stages
        .iter()
        .flat_map(|s| &s.dimensions)
        .map(|d| d.gates.len())
        .sum();
    // written_answer: 4 dims x (3 + baseline); system_design: 3 graded dims x 3
    assert_eq!(gates, 4 * 4 + 3 * 3);
    assert_eq!(xml.matches("<testcase ").count(), gates);
    assert_eq!(attr(&xml, "testsuites", "tests"), gates);
    assert_eq!(
        attr(&xml, "testsuites", "failures"),
        xml.matches("<failure ").count()
    );
    assert_eq!(attr(&xml, "testsuites", "failures"), r.summary.gates_failed);
    assert_eq!(
        attr(&xml, "testsuites", "skipped"),
        xml.matches("<skipped ").count()
    );
    assert_eq!(attr(&xml, "testsuites", "skipped"), r.summary.gates_skipped);
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    assert!(xml.contains("classname=\"written_answer.clarity\" name=\"min_qwk\""));
    assert!(
        xml.contains("QWK 0.000 &lt; 0.700"),
        "failure carries the figures"
    );
    assert!(xml.contains("human_qwk="), "and the figures behind it");
}

#[test]
fn json_round_trips_and_markdown_has_every_section() {
    let items = valid_items();
    let reg = registry();
    let plan = plan(&items, &reg, None, None);
    let judge = scripted(|i: &GoldenItem, p: &PromptVersion| Ok(reproduce_consensus(i, p)));
    let r = run(&judge, &plan, &settings());
    let text = serde_json::to_string(&r).unwrap();
    let back: EvalReport = serde_json::from_str(&text).unwrap();
    // (floats are compared through the summary: JSON float parsing may differ in the last ulp)
    assert_eq!(back.summary, r.summary);
    assert_eq!(back.stages.len(), r.stages.len());
    assert_eq!(back.stages[1].item_results, r.stages[1].item_results);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let d = &v["stages"][0]["dimensions"][0];
    for key in [
        "qwk",
        "ci",
        "human_ceiling",
        "confusion",
        "per_grader",
        "alpha_ordinal",
    ] {
        assert!(!d["agreement"][key].is_null(), "agreement.{key} in {d}");
    }
    assert_eq!(v["summary"]["exit_code"], 0);
    let md = render_markdown(&r);
    for needle in [
        "# grader eval report",
        "**Result: PASS**",
        "## system_design",
        "## written_answer",
        "human–human QWK",
        "### Calibration map (isotonic)",
        "### Flags against the graders' majority",
        "later step",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
}

#[test]
fn xml_escaping_drops_forbidden_characters() {
    assert_eq!(
        grader::evals::report::xml_escape("a<b>&\"c'\u{1}\td"),
        "a&lt;b&gt;&amp;&quot;c&apos;\td"
    );
}
