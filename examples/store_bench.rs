//! Throughput of the durable write behind every 202: `Store::enqueue` (submission + job in one
//! committed transaction) on a fresh database, with 32 concurrent callers as a busy HTTP
//! server would have.
//!
//! ```text
//! cargo run --release --example store_bench -- sqlite 20000
//! cargo run --release --example store_bench -- postgres 20000 [CONCURRENCY]
//! ```
//! PostgreSQL: a database `grader_bench_<uuid>` is created on the server named by
//! `GRADER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader::domain::{Format, Speaker, Stage, Submission, Transcript, Turn};
use grader::store::{self, NewSubmission};
use sha2::{Digest, Sha256};
use sqlx::Connection;

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A realistic body: a ~40-turn interview of about 6 KB.
fn transcript() -> Transcript {
    let mut text = String::new();
    let mut turns = Vec::new();
    for i in 0..40 {
        let (speaker, line) = if i % 2 == 0 {
            (
                Speaker::Interviewer,
                format!("Question {i}: how would you evaluate the retrieval step of this system?"),
            )
        } else {
            (
                Speaker::Candidate,
                format!(
                    "Answer {i}: I would build a golden set, measure recall@k and MRR, chunk by \
                     section with overlap, and track faithfulness with an LLM judge plus spot checks."
                ),
            )
        };
        let prefix = format!("{}: ", speaker.label());
        let start = text.chars().count() + prefix.chars().count();
        text.push_str(&prefix);
        text.push_str(&line);
        let end = text.chars().count();
        text.push('\n');
        turns.push(Turn {
            speaker,
            text: line,
            start,
            end,
            start_ms: None,
            end_ms: None,
        });
    }
    Transcript {
        format: Format::Speaker,
        text,
        turns,
    }
}

fn usage() -> ! {
    eprintln!("usage: store_bench sqlite|postgres N [CONCURRENCY]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().map(String::as_str).unwrap_or_else(|| usage());
    let n: usize = args
        .get(1)
        .map(|s| s.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(10_000);
    let concurrency: usize = args
        .get(2)
        .map(|s| s.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(32);

    let _dir;
    let mut pg_cleanup = None;
    let url = match backend {
        "sqlite" => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            _dir = dir;
            url
        }
        "postgres" => {
            let admin =
                std::env::var("GRADER_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.into());
            let name = format!("grader_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await?;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            let url = format!("{base}/{name}");
            pg_cleanup = Some((conn, name));
            url
        }
        _ => usage(),
    };

    let result = run(&url, n, concurrency).await;

    if let Some((mut conn, name)) = pg_cleanup {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
    }
    let (elapsed, mut latencies) = result?;
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    println!(
        "{backend}: {n} enqueues (submission + job, committed) with concurrency {concurrency} \
         in {:.2} s = {:.0} submissions/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}

async fn run(
    url: &str,
    n: usize,
    concurrency: usize,
) -> Result<(Duration, Vec<Duration>), Box<dyn std::error::Error + Send + Sync>> {
    let store = store::open(url).await?;
    let tenant = store.create_tenant("bench").await?;
    let body = Submission {
        tenant: tenant.name.clone(),
        stage: Stage::SystemDesign,
        question: Some("Design a RAG system for support tickets.".into()),
        transcript: transcript(),
        candidate: None,
        external_id: None,
        metadata: serde_json::Value::Null,
    };
    let input_sha256 = hex::encode(Sha256::digest(serde_json::to_vec(&body)?));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, next, body) = (store.clone(), next.clone(), body.clone());
        let (tenant_id, sha) = (tenant.id.clone(), input_sha256.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let (_, created) = store
                    .enqueue(NewSubmission {
                        tenant_id: tenant_id.clone(),
                        submission: body.clone(),
                        source: "greenhouse".into(),
                        delivery_id: Some(format!("delivery-{i}")),
                        prompt: None,
                        input_sha256: sha.clone(),
                    })
                    .await?;
                lat.push(t.elapsed());
                assert!(created, "every delivery id is new");
            }
            Ok::<_, store::StoreError>(lat)
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok((start.elapsed(), latencies))
}
