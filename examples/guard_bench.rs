//! Throughput of the guard on the shipped 11 KB system-design transcript: PII redaction alone
//! (with the candidate's name and email, so the per-submission name matcher is built each
//! time, as in production), injection detection alone, and `guard::protect` (both, plus the
//! turn-offset rebuild) — the work added to every grading before a prompt is rendered.
//!
//!     cargo run --release --example guard_bench [ITERATIONS]
//!
//! The transcript gets a few planted PII values (a name, an email, a phone number, a profile
//! URL) so the replacement path runs; the figures are MB/s of transcript text and
//! microseconds per submission (median of 5 rounds).

use std::time::Instant;

use grader::domain::{Candidate, Stage, Submission};
use grader::guard::{self, injection, Redactor};
use grader::ingest::{self, Limits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text =
        std::fs::read_to_string(root.join("examples/transcripts/system_design_strong.txt"))?;
    text.push_str(
        "Interviewer: Thanks, Priya. How can we reach you?\n\
         Candidate: I'm Priya Sharma, priya.sharma@example.com or +44 20 7946 0958; my work is on github.com/psharma.\n",
    );
    let transcript = ingest::parse(text.as_bytes(), None, &Limits::default())?;
    let candidate = Candidate {
        name: Some("Priya Sharma".into()),
        email: Some("priya.sharma@example.com".into()),
    };
    let submission = Submission {
        tenant: "bench".into(),
        stage: Stage::SystemDesign,
        question: Some("Design retrieval for 10,000 contracts.".into()),
        transcript,
        candidate: Some(candidate.clone()),
        external_id: None,
        metadata: serde_json::Value::Null,
    };
    let bytes = submission.transcript.text.len();
    println!(
        "transcript: {bytes} bytes, {} turns; {iterations} iterations x 5 rounds",
        submission.transcript.turns.len()
    );

    let measure = |name: &str, f: &dyn Fn()| {
        f(); // warm-up: compiles the static patterns once
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..iterations {
                f();
            }
            rounds.push(t.elapsed().as_secs_f64() / iterations as f64);
        }
        rounds.sort_by(f64::total_cmp);
        let per = rounds[2];
        println!(
            "{name:<34} {:>8.1} µs/submission  {:>7.1} MB/s",
            per * 1e6,
            bytes as f64 / per / 1e6
        );
    };

    measure("build Redactor (name matcher)", &|| {
        std::hint::black_box(Redactor::new(Some(&candidate)).expect("redactor"));
    });
    measure("redact text (Redactor::redact)", &|| {
        let mut r = Redactor::new(Some(&candidate)).expect("redactor");
        std::hint::black_box(r.redact(&submission.transcript.text));
    });
    measure("redact submission (rebuild turns)", &|| {
        std::hint::black_box(guard::redact_submission(&submission).expect("redact"));
    });
    measure("detect injection (candidate turns)", &|| {
        std::hint::black_box(injection::detect(&submission.transcript).expect("detect"));
    });
    measure("guard::protect (both)", &|| {
        std::hint::black_box(guard::protect(&submission).expect("protect"));
    });
    let g = guard::protect(&submission)?;
    println!(
        "redactions: {} {:?}; injection findings: {}",
        g.redaction.total,
        g.redaction.by_kind,
        g.findings.len()
    );
    Ok(())
}
