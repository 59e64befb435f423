//! `grader eval` end to end: the real binary, the shipped prompts, the golden fixtures in
//! tests/data/golden, and for model gradings the stand-in OpenAI-compatible server with a
//! fresh SQLite response cache in a tempdir.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use grader::calibration::human_consensus;
use serde_json::{json, Value};
use support::fixtures::{grader_cmd, root, run};
use support::{Scripted, StandIn};

const VALID: &str = "tests/data/golden/valid";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Item id -> dimension -> human consensus, read from the fixtures.
fn consensus_table() -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for f in ["written_answer.jsonl", "system_design.jsonl"] {
        let text = std::fs::read_to_string(root().join(VALID).join(f)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            let mut per_dim: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for g in v["grades"].as_array().unwrap() {
                for (d, s) in g["scores"].as_object().unwrap() {
                    per_dim
                        .entry(d.clone())
                        .or_default()
                        .push(s.as_f64().unwrap());
                }
            }
            out.insert(
                v["id"].as_str().unwrap().to_string(),
                per_dim
                    .into_iter()
                    .map(|(d, s)| (d, human_consensus(&s).unwrap()))
                    .collect(),
            );
        }
    }
    out
}

/// A judgment for the item named in the request's data block: `score(consensus)` on graded
/// dimensions, 1 elsewhere; every dimension id comes from the strict schema's enum.
fn judgment(
    request: &Value,
    table: &BTreeMap<String, BTreeMap<String, f64>>,
    score: fn(Option<f64>) -> i64,
) -> Value {
    let schema = &request["response_format"]["json_schema"]["schema"];
    let dims = schema["properties"]["scores"]["items"]["properties"]["dimension"]["enum"]
        .as_array()
        .expect("dimension enum in the strict schema")
        .clone();
    let user = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let item = table
        .iter()
        .find(|(id, _)| user.contains(&format!("Item {id}.")));
    json!({
        "scores": dims.iter().map(|d| {
            let c = item.and_then(|(_, t)| t.get(d.as_str().unwrap_or_default()).copied());
            json!({"dimension": d, "score": score(c), "rationale": "scripted", "evidence": []})
        }).collect::<Vec<_>>(),
        "flags": [],
        "summary": "scripted judgment"
    })
}

fn consensus_score(c: Option<f64>) -> i64 {
    c.map_or(1, |v| v as i64)
}

fn minimum_score(_: Option<f64>) -> i64 {
    1
}

fn model_eval(server: &StandIn, db: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = grader_cmd();
    cmd.env("OPENAI_BASE_URL", &server.base_url)
        .env("GRADER_MODEL", "stand-in-judge-1")
        .args(["eval", VALID, "--bootstrap", "200", "--cache-db"])
        .arg(format!("sqlite://{}", db.display()))
        .args(extra);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_nothing_changed_makes_zero_provider_calls() {
    let server = StandIn::start().await;
    let table = consensus_table();
    server.set_default(Scripted::dynamic(move |req| {
        Scripted::reply_json(&judgment(req, &table, consensus_score))
    }));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.db");
    let json1 = dir.path().join("first.json");
    let json2 = dir.path().join("second.json");

    let mut cmd = model_eval(&server, &db, &["--json"]);
    cmd.arg(&json1);
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let first_calls = server.calls();
    assert_eq!(first_calls, 18, "one call per item (1 sample each)");

    let mut cmd = model_eval(&server, &db, &["--json"]);
    cmd.arg(&json2);
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(server.calls(), first_calls, "the rerun made provider calls");

    let a: Value = serde_json::from_str(&std::fs::read_to_string(&json1).unwrap()).unwrap();
    let b: Value = serde_json::from_str(&std::fs::read_to_string(&json2).unwrap()).unwrap();
    assert_eq!(a["judge"], "stand-in-judge-1");
    assert_eq!(b["stages"][0]["cached"], 6);
    assert_eq!(b["stages"][1]["cached"], 12);
    assert_eq!(a["stages"][0]["cached"], 0);
    // same figures from the replayed judgments
    assert_eq!(a["stages"][1]["dimensions"], b["stages"][1]["dimensions"]);
    assert_eq!(a["summary"], b["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_the_gates() {
    let server = StandIn::start().await;
    let table = consensus_table();
    server.set_default(Scripted::dynamic(move |req| {
        Scripted::reply_json(&judgment(req, &table, minimum_score))
    }));
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("out/junit.xml");
    let report = dir.path().join("report.md");
    let mut cmd = model_eval(
        &server,
        &dir.path().join("c.db"),
        &["--concurrency", "2", "--junit"],
    );
    cmd.arg(&junit).arg("--report").arg(&report);
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("FAIL"), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.starts_with("<?xml") && xml.contains("<failure "),
        "{xml}"
    );
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("**Result: FAIL**"), "{md}");

    // the same judgments pass once the thresholds are relaxed (flags override the config)
    let mut cmd = model_eval(
        &server,
        &dir.path().join("c.db"),
        &[
            "--min-qwk",
            "-1",
            "--max-gap-to-human",
            "10",
            "--max-abs-smd",
            "100",
        ],
    );
    cmd.arg("--progress");
    let calls = server.calls();
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(server.calls(), calls, "cached");
    assert!(
        stderr(&out).contains("eval: 18/18 graded (18 cached"),
        "{}",
        stderr(&out)
    );
}

/// A copy of the shipped prompts plus `written_answer@v2` (same rubric, new identity).
fn prompts_with_v2(dir: &std::path::Path) -> PathBuf {
    let dst = dir.join("prompts");
    for entry in std::fs::read_dir(root().join("prompts")).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(entry.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else {
            std::fs::create_dir_all(&dst).unwrap();
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let v1 = std::fs::read_to_string(dst.join("written_answer/v1.toml")).unwrap();
    let v2 = v1.replacen("version = \"v1\"", "version = \"v2\"", 1);
    assert_ne!(v1, v2);
    std::fs::write(dst.join("written_answer/v2.toml"), v2).unwrap();
    dst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_baseline_a_significant_regression_exits_1_and_parity_exits_0() {
    let server = StandIn::start().await;
    let table = consensus_table();
    // v2 turns the scale upside down; v1 reproduces the consensus. The request names its
    // prompt version in `prompt_cache_key`.
    server.set_default(Scripted::dynamic(move |req| {
        let v2 = req["prompt_cache_key"]
            .as_str()
            .unwrap_or_default()
            .ends_with("@v2");
        let score: fn(Option<f64>) -> i64 = if v2 {
            |c| c.map_or(1, |v| 5 - v as i64 + 1).clamp(1, 4)
        } else {
            consensus_score
        };
        Scripted::reply_json(&judgment(req, &table, score))
    }));
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_with_v2(dir.path());
    let json_path = dir.path().join("r.json");
    let mut cmd = model_eval(
        &server,
        &dir.path().join("c.db"),
        &[
            "--prompt",
            "written_answer@v2",
            "--baseline",
            "written_answer@v1",
            "--json",
        ],
    );
    cmd.arg(&json_path).env("GRADER_PROMPTS_DIR", &prompts);
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        server.calls(),
        6 + 12 + 12,
        "the baseline's stage is graded twice"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let wa = &r["stages"][1];
    assert_eq!(wa["prompt"]["version"], "v2");
    assert_eq!(wa["baseline"]["version"], "v1");
    let p = &wa["dimensions"][0]["baseline"]["paired"];
    assert_eq!(p["significantly_worse"], true, "{p}");
    assert!(r["summary"]["regressions"].as_u64().unwrap() >= 1);

    // parity: the baseline against itself is never a regression
    let mut cmd = model_eval(
        &server,
        &dir.path().join("c.db"),
        &[
            "--prompt",
            "written_answer@v1",
            "--baseline",
            "written_answer@v1",
            "--json",
        ],
    );
    cmd.arg(&json_path).env("GRADER_PROMPTS_DIR", &prompts);
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let p = &r["stages"][1]["dimensions"][0]["baseline"]["paired"];
    assert_eq!(p["diff"], 0.0);
    assert_eq!(r["summary"]["regressions"], 0);
}

#[test]
fn the_offline_judge_runs_without_a_database_and_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let (j, x, m) = (
        dir.path().join("e.json"),
        dir.path().join("e.xml"),
        dir.path().join("e.md"),
    );
    let out = grader_cmd()
        .current_dir(root())
        .args(["eval", VALID, "--offline", "--bootstrap", "100", "--json"])
        .arg(&j)
        .arg("--junit")
        .arg(&x)
        .arg("--report")
        .arg(&m)
        .env(
            "GRADER_DATABASE_URL",
            "postgres://must-not-be-used.invalid/db",
        )
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{code:?}: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("offline pattern judge"),
        "{}",
        stdout(&out)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(r["judge"], "offline");
    assert_eq!(r["offline"], true);
    assert_eq!(r["summary"]["items"], 18);
    assert_eq!(r["summary"]["exit_code"].as_i64(), code.map(i64::from));
    assert!(std::fs::read_to_string(&x).unwrap().contains("<testsuites"));
    let md = std::fs::read_to_string(&m).unwrap();
    assert!(md.contains("offline pattern judge"), "{md}");
}

#[test]
fn input_and_usage_errors_exit_2() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["eval", "tests/data/golden/invalid/out_of_scale.jsonl", "--offline"],
            "out_of_scale.jsonl:2: item `os-2`, rater `r1`: score 5 for `clarity` is outside the scale 1-4",
        ),
        (
            vec!["eval", "tests/data/golden/invalid/unknown_stage.jsonl", "--offline"],
            "unknown_stage.jsonl:3:",
        ),
        (
            vec!["eval", "tests/data/golden/invalid/no_grades.jsonl", "--offline"],
            "no_grades.jsonl:1: item `ng-1` has no `grades`",
        ),
        (
            vec!["eval", "tests/data/golden/missing.jsonl", "--offline"],
            "cannot read tests/data/golden/missing.jsonl",
        ),
        (
            vec!["eval", VALID, "--offline", "--prompt", "written_answer@v9"],
            "no prompt version `written_answer@v9`",
        ),
        (
            vec![
                "eval",
                "tests/data/golden/valid/system_design.jsonl",
                "--offline",
                "--baseline",
                "written_answer@v1",
            ],
            "the golden set has no written_answer items",
        ),
        (vec!["eval"], "GOLDEN"),
        (vec!["eval", VALID, "--concurrency", "0"], "concurrency"),
    ];
    for (args, needle) in cases {
        let out = grader_cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: expected {needle:?} in:\n{}",
            stderr(&out)
        );
    }
}
