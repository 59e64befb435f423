//! `grader grade` end to end: the real binary, the shipped prompts and sample transcripts, and
//! for model gradings the stand-in OpenAI-compatible server on loopback.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::fixtures::{grader_cmd, judgment_for_request, root, run, STRONG};
use support::{Scripted, StandIn};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn offline_grading_of_the_shipped_sample_prints_a_labelled_report() {
    let out = grader_cmd()
        .args(["grade", "--stage", "system_design", STRONG])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Judge: offline",
        "offline pattern judge",
        "Recommendation (advisory)",
        "Scores",
        "Flags",
        "Needs human review",
        "RAG maturity",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn offline_json_report_has_the_contract_fields() {
    let out = grader_cmd()
        .args(["grade", "--stage", "system_design", "--json", STRONG])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["judge"]["model"], "offline");
    assert_eq!(r["needs_review"], true);
    assert_eq!(r["prompt"]["id"], "system_design");
    assert_eq!(r["prompt"]["sha256"].as_str().unwrap().len(), 64);
    for key in [
        "id",
        "stage",
        "scores",
        "flags",
        "skill_profile",
        "rag_maturity",
        "recommendation",
        "review_reasons",
        "usage",
        "guard",
        "transcript",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}");
    }
    // Evidence offsets index the returned normalized transcript.
    let text: Vec<char> = r["transcript"]["text"].as_str().unwrap().chars().collect();
    let mut checked = 0;
    for s in r["scores"].as_array().unwrap() {
        for e in s["evidence"].as_array().unwrap() {
            let (a, b) = (
                e["start"].as_u64().unwrap() as usize,
                e["end"].as_u64().unwrap() as usize,
            );
            let at: String = text[a..b].iter().collect();
            assert_eq!(at, e["quote"].as_str().unwrap());
            checked += 1;
        }
    }
    assert!(checked > 0, "the strong sample should yield evidence");
}

#[test]
fn the_strong_sample_outscores_the_weak_one() {
    let overall = |file: &str| -> f64 {
        let out = grader_cmd()
            .args(["grade", "--stage", "system_design", "--json", file])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        r["overall"].as_f64().unwrap()
    };
    let strong = overall(STRONG);
    let weak = overall("examples/transcripts/system_design_weak.txt");
    assert!(strong > weak + 0.2, "strong {strong} vs weak {weak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_openai_base_url_the_report_comes_from_that_model() {
    let server = StandIn::start().await;
    server.set_default(Scripted::dynamic(|req| {
        Scripted::reply_with_usage(judgment_for_request(req, 3).to_string(), 2500, 300, 2048)
    }));
    let mut cmd = grader_cmd();
    cmd.env("OPENAI_BASE_URL", &server.base_url)
        .env("GRADER_MODEL", "stand-in-judge-1")
        .args(["grade", "--stage", "system_design", "--json", STRONG]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(server.calls(), 1);
    let req = &server.requests()[0];
    assert_eq!(req["model"], "stand-in-judge-1");
    assert_eq!(req["response_format"]["json_schema"]["strict"], true);
    let messages = req["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    // The static rubric comes first; the candidate's words only in the last (user) message.
    let marker = "layout-aware parsing with OCR";
    assert!(!messages[0]["content"].as_str().unwrap().contains(marker));
    assert!(messages[1]["content"].as_str().unwrap().contains(marker));
    assert_ne!(r["judge"]["model"], "offline");
    assert_eq!(r["status"], "scored");
    assert_eq!(r["usage"]["prompt_tokens"], 2500);
    assert_eq!(r["usage"]["cached_tokens"], 2048);
    assert!(r["scores"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["score"] == 3.0 && s["evidence"].as_array().unwrap().len() == 1));
    assert!(!r["notice"].as_str().unwrap().contains("offline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured_then_graded() {
    let server = StandIn::start().await;
    server.push(Scripted::rate_limited("1"));
    server.set_default(Scripted::dynamic(|req| {
        Scripted::reply(judgment_for_request(req, 3).to_string())
    }));
    let mut cmd = grader_cmd();
    cmd.env("OPENAI_BASE_URL", &server.base_url).args([
        "grade",
        "--stage",
        "system_design",
        "--json",
        STRONG,
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = server.recorded();
    assert_eq!(rec.len(), 2);
    let waited = rec[1].at.duration_since(rec[0].at);
    assert!(waited.as_millis() >= 950, "retried after only {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_exhaust_the_bounded_retries_with_a_clear_error() {
    let server = StandIn::start().await;
    server.set_default(Scripted::error(503, "upstream overloaded"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grader.toml");
    std::fs::write(
        &config,
        format!(
            "prompts_dir = {:?}\n[judge]\nretry_base_ms = 10\nretry_max_ms = 20\n[[models]]\nname = \"cheap\"\nmodel = \"m\"\nbase_url = {:?}\nmax_retries = 2\n",
            root().join("prompts"),
            server.base_url
        ),
    )
    .unwrap();
    let mut cmd = grader_cmd();
    cmd.arg("--config")
        .arg(&config)
        .args(["grade", "--stage", "system_design", STRONG]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert!(err.contains("503"), "{err}");
    assert_eq!(server.calls(), 3);
    assert!(stdout(&out).is_empty(), "no report on failure");
}

#[test]
fn bad_input_gets_a_clear_error_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "  \n\n").unwrap();
    let binary = dir.path().join("blob.bin");
    std::fs::write(&binary, [0u8, 159, 146, 150, 0, 1, 2, 3]).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["grade", "--stage", "system_design", empty.to_str().unwrap()],
            "empty",
        ),
        (
            vec![
                "grade",
                "--stage",
                "system_design",
                binary.to_str().unwrap(),
            ],
            "binary",
        ),
        (
            vec!["grade", "--stage", "system-dezign", STRONG],
            "unknown stage",
        ),
        (
            vec!["grade", "--stage", "system_design", "no/such/file.txt"],
            "no/such/file.txt",
        ),
        (
            vec![
                "grade",
                "--stage",
                "system_design",
                "--prompt",
                "system_design@v99",
                STRONG,
            ],
            "system_design@v99",
        ),
        (
            vec![
                "grade",
                "--stage",
                "hands_on",
                "--prompt",
                "system_design@v1",
                STRONG,
            ],
            "not hands_on",
        ),
        (
            vec![
                "grade",
                "--stage",
                "system_design",
                "--format",
                "docx",
                STRONG,
            ],
            "docx",
        ),
    ];
    for (args, needle) in cases {
        let out = grader_cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.to_lowercase().contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn oversized_input_is_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "Candidate: ".to_string() + &"word ".repeat(50)).unwrap();
    let out = grader_cmd()
        .env("GRADER_MAX_CHARS", "100")
        .args(["grade", "--stage", "system_design"])
        .arg(&big)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("100"), "{err}");
}

#[test]
fn a_written_answer_is_graded_with_its_question() {
    let q = Path::new("examples/transcripts/written_answer_question.txt");
    let a = "examples/transcripts/written_answer_answer.txt";
    let out = grader_cmd()
        .args([
            "grade",
            "--stage",
            "written_answer",
            "--json",
            "--question-file",
        ])
        .arg(q)
        .arg(a)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["stage"], "written_answer");
    assert_eq!(r["transcript"]["format"], "written_answer");
    assert_eq!(r["transcript"]["turns"][0]["speaker"], "candidate");
}

#[test]
fn a_transcript_on_standard_input_is_graded() {
    use std::io::Write;
    let mut child = grader_cmd()
        .args(["grade", "--stage", "hands_on", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Interviewer: Build a RAG pipeline.\nCandidate: I chunk by section, embed, and re-rank with a cross-encoder.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["stage"], "hands_on");
    assert_eq!(r["transcript"]["turns"].as_array().unwrap().len(), 2);
}
