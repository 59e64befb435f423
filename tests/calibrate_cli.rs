//! `grader calibrate`: the command's `run`/`render` called directly, and the binary end to
//! end. Expected figures for tests/data/calibration/ratings.csv were computed independently
//! in Python (scikit-learn 1.9.1 cohen_kappa_score with labels = the full scale on the AI vs
//! the median-halves-down human consensus; the `krippendorff` 0.9.0 package on the
//! raters x items matrix; the human ceiling on every ordered pair of humans per item).

use std::path::PathBuf;

use assert_cmd::Command;
use grader::cli::calibrate::{render, run, CalibrateArgs};
use serde_json::Value;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/calibration")
        .join(name)
}

fn args(file: PathBuf, json: bool) -> CalibrateArgs {
    CalibrateArgs {
        file,
        json,
        ai_rater: "ai".to_string(),
        scale: None,
        bootstrap: 200,
        seed: 42,
    }
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

fn check_sample_figures(v: &Value) {
    assert_eq!(v["ai_rater"], "ai");
    let depth = &v["dimensions"]["depth"];
    assert_eq!(depth["n"], 11);
    close(&depth["qwk"], 0.9767441860465116);
    close(&depth["kappa"], 0.8854166666666666);
    close(&depth["spearman"], 0.9857930616854663);
    close(&depth["kendall_tau_b"], 0.9684747092264969);
    close(&depth["alpha_ordinal"], 0.8677061185920152);
    close(&depth["alpha_interval"], 0.8620895522388059);
    assert_eq!(depth["human_ceiling"]["n"], 56);
    close(&depth["human_ceiling"]["qwk"], 0.8115813706392775);
    close(&depth["human_ceiling"]["kappa"], 0.14811849479583672);
    let rag = &v["dimensions"]["rag_maturity"];
    assert_eq!(rag["n"], 10);
    close(&rag["qwk"], 0.8305084745762712);
    close(&rag["kappa"], 0.4736842105263158);
    close(&rag["alpha_ordinal"], 0.8287592636863496);
    close(&rag["alpha_interval"], 0.826865671641791);
    close(&rag["human_ceiling"]["qwk"], 0.7613365155131264);
    assert_eq!(rag["scale"], serde_json::json!([1, 4]));
    for dim in ["depth", "rag_maturity"] {
        let ci = &v["dimensions"][dim]["ci"];
        for figure in [
            "qwk",
            "kappa_linear",
            "kappa",
            "mae",
            "rmse",
            "bias",
            "smd",
            "exact",
            "adjacent",
            "pearson",
        ] {
            let pair = ci[figure]
                .as_array()
                .unwrap_or_else(|| panic!("{dim}: no CI for {figure}"));
            assert_eq!(pair.len(), 2);
        }
    }
}

#[test]
fn render_json_matches_independent_figures() {
    for file in ["ratings.csv", "ratings.jsonl"] {
        let path = sample(file);
        let text = std::fs::read_to_string(&path).expect("sample exists");
        let out = render(&args(path, true), &text).expect("valid input");
        let v: Value = serde_json::from_str(&out).expect("JSON output");
        check_sample_figures(&v);
    }
}

#[test]
fn render_table_is_readable() {
    let path = sample("ratings.csv");
    let text = std::fs::read_to_string(&path).expect("sample exists");
    let out = render(&args(path, false), &text).expect("valid input");
    assert!(
        out.contains("== depth  (scale 1-5, 12 items, 3 human raters)"),
        "{out}"
    );
    assert!(out.contains("human ceiling"));
    assert!(out.contains("confusion (rows: human consensus, columns: AI)"));
    let qwk = out
        .lines()
        .find(|l| l.starts_with("qwk"))
        .expect("a qwk row");
    assert!(qwk.contains("0.977"), "{qwk}");
}

#[test]
fn render_options_and_errors() {
    let path = sample("ratings.csv");
    let text = std::fs::read_to_string(&path).expect("sample exists");
    // a renamed AI rater
    let renamed = text.replace(",ai,", ",judge,");
    let mut a = args(path.clone(), true);
    a.ai_rater = "judge".to_string();
    let v: Value = serde_json::from_str(&render(&a, &renamed).expect("valid")).expect("json");
    assert_eq!(v["ai_rater"], "judge");
    close(&v["dimensions"]["depth"]["qwk"], 0.9767441860465116);
    // the default rater name is then missing
    let e = render(&args(path.clone(), true), &renamed).expect_err("no ai");
    assert!(e.to_string().contains("pass --ai-rater"), "{e}");
    // --scale widens every dimension
    let mut a = args(path.clone(), true);
    a.scale = Some("0-5".to_string());
    let v: Value = serde_json::from_str(&render(&a, &text).expect("valid")).expect("json");
    assert_eq!(
        v["dimensions"]["rag_maturity"]["scale"],
        serde_json::json!([0, 5])
    );
    a.scale = Some("five".to_string());
    assert!(render(&a, &text).is_err());
    // no bootstrap: intervals are null
    let mut a = args(path, true);
    a.bootstrap = 0;
    let v: Value = serde_json::from_str(&render(&a, &text).expect("valid")).expect("json");
    assert!(v["dimensions"]["depth"]["ci"]["qwk"].is_null());
}

#[test]
fn run_reads_the_file_and_returns_zero() {
    assert_eq!(run(&args(sample("ratings.csv"), true)).expect("runs"), 0);
    assert_eq!(run(&args(sample("ratings.jsonl"), false)).expect("runs"), 0);
    let e = run(&args(sample("no-such-file.csv"), true)).expect_err("missing file");
    assert!(format!("{e:#}").contains("no-such-file.csv"), "{e:#}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "item_id,dimension,rater,score\n1,d,ai,3\n1,d,h1,x\n").expect("write");
    let e = run(&args(bad, true)).expect_err("bad score");
    assert!(
        format!("{e:#}").contains("line 3: `score` value \"x\""),
        "{e:#}"
    );
}

// ---------------------------------------------------------------- the binary

fn grader() -> Command {
    Command::cargo_bin("grader").expect("the grader binary builds")
}

#[test]
fn binary_calibrate_json() {
    let out = grader()
        .args([
            "calibrate",
            &sample("ratings.csv").to_string_lossy(),
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    check_sample_figures(&v);
}

#[test]
fn binary_calibrate_stdin_jsonl() {
    let text = std::fs::read_to_string(sample("ratings.jsonl")).expect("sample exists");
    let out = grader()
        .args([
            "calibrate",
            "-",
            "--json",
            "--bootstrap",
            "100",
            "--seed",
            "7",
        ])
        .write_stdin(text)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["bootstrap"]["resamples"], 100);
    assert_eq!(v["bootstrap"]["seed"], 7);
    check_sample_figures(&v);
}

#[test]
fn binary_calibrate_bad_row_exits_nonzero_with_the_line() {
    let out = grader()
        .args(["calibrate", "-"])
        .write_stdin("item_id,dimension,rater,score\n1,d,ai,3\n1,d,ai,4\n")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: duplicate rating"), "{err}");
}
