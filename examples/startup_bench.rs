//! Start-up time of `grader serve`: from spawning the process to the first `GET /readyz`
//! answering 200, on SQLite (a new file each run, so every run migrates) and on PostgreSQL
//! (a new database each run). The median and max over RUNS runs.
//!
//! ```text
//! cargo build --release && cargo run --release --example startup_bench [RUNS=10] [PG_ADMIN_URL]
//! ```
//!
//! It runs `target/release/grader` (build it first) with the repository's prompts and no
//! model configured; PG_ADMIN_URL defaults to `postgres://postgres@127.0.0.1:5432/postgres`.
//! `/readyz` is polled every millisecond on a fresh connection.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::root;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `GET /readyz`; true on 200.
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

/// Spawns `grader serve` on `db_url` and returns the time to the first ready answer.
fn once(bin: &PathBuf, db_url: &str, cwd: &std::path::Path) -> Duration {
    let port = free_port();
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("serve")
        .current_dir(cwd)
        .env("GRADER_ADDR", format!("127.0.0.1:{port}"))
        .env("GRADER_DATABASE_URL", db_url)
        .env("GRADER_PROMPTS_DIR", root().join("prompts"))
        .env_remove("GRADER_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn grader serve");
    let elapsed = loop {
        if ready(port) {
            break t0.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("grader serve exited early: {status}");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "not ready in 30 s");
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn psql(admin: &str, sql: &str) {
    let ok = Command::new("psql")
        .args([admin, "-qc", sql])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "psql {sql}");
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "| {label} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        times.len(),
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10)
        .max(1);
    let admin = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let bin = root().join("target/release/grader");
    assert!(bin.exists(), "build it first: cargo build --release");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("| database | runs | min | median | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let (mut fresh, mut again) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let url = format!("sqlite://{}", dir.path().join(format!("s{i}.db")).display());
        fresh.push(once(&bin, &url, dir.path()));
        again.push(once(&bin, &url, dir.path()));
    }
    report("SQLite, new file (migrations applied)", fresh);
    report("SQLite, existing database", again);
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let server = base
        .rsplit_once('/')
        .map(|(s, _)| s.to_string())
        .unwrap_or(base);
    let (mut fresh, mut again) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("grader_startup_{}_{i}", std::process::id());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = format!("{server}/{name}{query}");
        fresh.push(once(&bin, &url, dir.path()));
        again.push(once(&bin, &url, dir.path()));
        psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
    }
    report(
        "PostgreSQL over TCP, new database (migrations applied)",
        fresh,
    );
    report("PostgreSQL over TCP, existing database", again);
}
