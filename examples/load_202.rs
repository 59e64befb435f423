//! Load harness for the durable 202 paths: N concurrent HTTP clients over loopback against
//! the real router (in this process, on 127.0.0.1:0), a bounded number of requests, then
//! requests per second and latency percentiles. Every 202 is answered only after the store
//! committed the submission and its job; at the end the harness counts the stored rows to
//! prove it. Workers are off (0) so grading does not compete for the two cores: this measures
//! accepting work.
//!
//! ```text
//! cargo run --release --example load_202 -- [--db sqlite|postgres://...] [--route webhook|submissions]
//!                                           [--concurrency 64] [--requests 20000]
//!                                           [--transcript FILE]
//! ```
//!
//! The default transcript is `examples/transcripts/system_design_strong.txt` (45 speaker-
//! labelled lines, 11 KB): the server parses and validates it before answering, as it must
//! to refuse bad input with nothing stored.
//!
//! `--db sqlite` (default) uses a new file in a temporary directory; a PostgreSQL URL must
//! name an existing database (a fresh one: `createdb grader_load`). `--route webhook` posts
//! Standard Webhooks deliveries (signed, one new `webhook-id` each) to
//! `/v1/webhooks/{tenant}/standard`; `submissions` posts to `/v1/submissions` with a bearer
//! key.
//!
//! Besides req/s it prints the CPU time per request of this process (HTTP clients and server
//! together) and, for a PostgreSQL server on this machine, of the database's backends (read
//! from `/proc`): figures that hold up on a machine busy with other work, where req/s does not.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::percentile;
use grader::config::Config;
use grader::judge::pipeline::{Judge, JudgeSettings};
use grader::prompts::Registry;
use grader::service::App;
use grader::store::{self, Role};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Args {
    db: String,
    transcript: Option<String>,
    route: String,
    concurrency: usize,
    requests: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        db: "sqlite".into(),
        transcript: None,
        route: "webhook".into(),
        concurrency: 64,
        requests: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => a.db = value()?,
            "--transcript" => a.transcript = Some(value()?),
            "--route" => a.route = value()?,
            "--concurrency" => a.concurrency = value()?.parse().map_err(|e| format!("{e}"))?,
            "--requests" => a.requests = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !matches!(a.route.as_str(), "webhook" | "submissions") {
        return Err("--route is webhook or submissions".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = if a.db == "sqlite" {
        format!("sqlite://{}", dir.path().join("load.db").display())
    } else {
        a.db.clone()
    };
    let store = store::open(&url).await.expect("open the database");
    let mut cfg = Config {
        database_url: url.clone(),
        prompts_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        ..Default::default()
    };
    cfg.service.workers = 0;
    let registry = Registry::load(&cfg.prompts_dir).expect("prompts");
    let judge = Judge::offline(JudgeSettings::from_config(&cfg, None));
    let app = Arc::new(App::new(
        cfg,
        store.clone(),
        Arc::new(registry),
        Arc::new(judge),
        "load".into(),
    ));
    let tenant_name = format!("load-{}", uuid::Uuid::new_v4().simple());
    let tenant = store.create_tenant(&tenant_name).await.expect("tenant");
    let key = grader::cli::admin::generate_key();
    store
        .create_api_key(
            &tenant.id,
            Role::Ingest,
            &grader::http::auth::key_hash(&key),
            &key[..8],
        )
        .await
        .expect("key");
    store
        .set_webhook_secret(&tenant.id, "standard", SECRET)
        .await
        .expect("secret");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(grader::http::serve(
        app,
        listener,
        grader::cli::serve::wait_for(rx),
    ));

    let transcript_path = a
        .transcript
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/transcripts/system_design_strong.txt")
        });
    let transcript = std::fs::read_to_string(&transcript_path).expect("read the transcript");
    // What the server must spend per request just to validate the transcript, for reading
    // the figures: the parse runs inside every 202.
    let limits = grader::ingest::Limits::default();
    let runs = 200;
    let t0 = Instant::now();
    for _ in 0..runs {
        grader::ingest::parse(transcript.as_bytes(), None, &limits).expect("the transcript parses");
    }
    let parse_us = t0.elapsed().as_secs_f64() * 1e6 / f64::from(runs);
    eprintln!(
        "transcript {} ({} bytes): ingest::parse takes {parse_us:.0} µs per request",
        transcript_path.display(),
        transcript.len()
    );
    let body = serde_json::json!({"stage": "system_design", "transcript": transcript})
        .to_string()
        .into_bytes();
    let target = match a.route.as_str() {
        "webhook" => format!("http://{addr}/v1/webhooks/{tenant_name}/standard"),
        _ => format!("http://{addr}/v1/submissions"),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()
        .expect("client");

    let send = {
        let client = client.clone();
        let target = target.clone();
        let key = key.clone();
        let body = body.clone();
        let webhook = a.route == "webhook";
        move |n: usize| {
            let mut req = client
                .post(&target)
                .header("content-type", "application/json")
                .body(body.clone());
            if webhook {
                let id = format!("msg_load_{n}");
                let ts = chrono::Utc::now().timestamp();
                req = req
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header(
                        "webhook-signature",
                        grader::ingest::ats::sign_standard(SECRET, &id, ts, &body),
                    );
            } else {
                req = req.bearer_auth(&key);
            }
            req.send()
        }
    };

    // Warm-up: connections, caches, the database's first pages.
    let warmup = a.requests.min(500);
    for n in 0..warmup {
        let r = send(usize::MAX - n).await.expect("warm-up request");
        assert_eq!(
            r.status(),
            202,
            "warm-up: {}",
            r.text().await.unwrap_or_default()
        );
    }

    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let pg_db = (!url.starts_with("sqlite")).then(|| database_name(&url));
    let cpu_before = (self_cpu_ticks(), pg_db.as_deref().map(backend_cpu_ticks));
    let started = Instant::now();
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let next = next.clone();
            let errors = errors.clone();
            let send = send.clone();
            let total = a.requests;
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let t0 = Instant::now();
                    match send(n).await {
                        Ok(r) if r.status() == 202 => {
                            let _ = r.bytes().await;
                            lat.push(t0.elapsed());
                        }
                        Ok(r) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!(
                                    "HTTP {}: {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                );
                            }
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("request failed: {e}");
                            }
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(a.requests);
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    let cpu_after = (self_cpu_ticks(), pg_db.as_deref().map(backend_cpu_ticks));
    lat.sort();
    let ok = lat.len();
    let stored = store
        .list_submissions(&tenant.id, None, u32::MAX, 0)
        .await
        .expect("count")
        .len();
    let _ = tx.send(true);
    let _ = server.await;

    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "{backend} {route}: {ok} x 202 in {:.2}s = {:.0} req/s (concurrency {c}, errors {e}); \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; stored {stored} (incl. {warmup} warm-up)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        route = a.route,
        c = a.concurrency,
        e = errors.load(Ordering::Relaxed),
    );
    // CPU per request is far less sensitive than req/s to what else the machine runs.
    let per_request = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_SEC / a.requests.max(1) as f64;
    let harness = cpu_after.0.saturating_sub(cpu_before.0);
    let backends = match (cpu_before.1, cpu_after.1) {
        (Some(b), Some(a)) => format!(
            ", PostgreSQL backends of this database {:.0} µs",
            per_request(a.saturating_sub(b))
        ),
        _ => String::new(),
    };
    println!(
        "cpu per request: this process (clients + server) {:.0} µs{backends}",
        per_request(harness)
    );
    assert_eq!(stored, ok + warmup, "every 202 is a stored submission");
}

/// `/proc` reports CPU times in USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name (field
/// 2) may hold spaces, so fields are counted after its closing parenthesis.
fn stat_ticks(stat: &str) -> u64 {
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    field(11) + field(12)
}

/// CPU used by this process so far (all threads), in ticks; 0 where `/proc` is missing.
fn self_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .map(|s| stat_ticks(&s))
        .unwrap_or(0)
}

/// CPU used so far by the local PostgreSQL backends serving database `db` (their process
/// title names it), in ticks. Only meaningful when the server runs on this machine.
fn backend_cpu_ticks(db: &str) -> u64 {
    let needle = format!(" {db} ");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let title = String::from_utf8_lossy(&c);
                title.starts_with("postgres:") && title.contains(&needle)
            })
        })
        .map(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .map(|s| stat_ticks(&s))
                .unwrap_or(0)
        })
        .sum()
}

/// The database a `postgres://` URL names (the path, without its query).
fn database_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    path.split('?').next().unwrap_or("").to_string()
}
