//! Multi-replica proof (issue 7): three `grader serve` processes (the real binary) on ONE fresh
//! PostgreSQL database, fed 2,000 signed Standard Webhooks deliveries (10% of them redelivered
//! with the same `webhook-id`, mostly to another process), grading against a stand-in provider
//! that fails 20% of calls with a 500 and answers 10% of them 200–500 ms late. Mid-run one
//! process is killed with SIGKILL (no graceful release: its leases must expire) and a fresh one
//! is started in its place. Then:
//!
//! * nothing lost, no duplicates: exactly one submission per distinct delivery id, and every
//!   delivery of an id (first, redelivered, re-sent after the kill) answered with that id;
//! * every submission graded exactly once: one `grading.completed` audit entry each (written
//!   in the completing transaction, so a lost lease cannot add a second);
//! * no paid call repeated beyond retries: at most one successful (200) provider answer per
//!   transcript, except for jobs the killed process held at the moment it died (see
//!   [`paid_answer_bound`] for the exact bound and why it is tight).
//!
//! The figures (throughput, provider calls, 500s, delays, re-leases) are printed; run with
//! `cargo test --release --test scale -- --nocapture` to see them.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use grader::store::SubmissionStatus;
use serde_json::{json, Value};
use support::db::{Backend, TestDb};
use support::fixtures::judgment_for_request;
use support::process::{self, Server, BIN};
use support::{Scripted, StandIn};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Distinct deliveries (= submissions).
const N: usize = 2_000;
/// Every `REDELIVER_EVERY`-th delivery is sent a second time (10%).
const REDELIVER_EVERY: usize = 10;
const PROCESSES: usize = 3;
/// Concurrent webhook senders.
const SENDERS: usize = 24;
/// Grading workers per process.
const WORKERS: usize = 6;
/// The lease: short so that the killed process's jobs come back quickly, yet well above a
/// grading's worst case here (4 attempts × ≤ 0.5 s stand-in delay + ≤ 0.2 s backoffs ≈ 2.6 s),
/// so a live worker never loses its lease and no job is graded twice for that reason.
const LEASE_SECS: u64 = 8;
/// Marker that makes every transcript (and so every provider request) distinct: without it
/// the response cache would answer 1,999 of the 2,000 gradings and prove nothing.
const MARKER: &str = "scale-case-";

/// A command with a clean environment and the test's grader.toml.
fn grader(db_url: &str, cwd: &std::path::Path, api_key: &str) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env("GRADER_DATABASE_URL", db_url)
        .env("GRADER_CONFIG", cwd.join("grader.toml"))
        // Each process gets its own key so the stand-in can tell who called.
        .env("OPENAI_API_KEY", api_key)
        .env("GRADER_LOG", "error")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GRADER_MODEL")
        .env_remove("GRADER_ADDR")
        .env_remove("GRADER_PROMPTS_DIR")
        .env_remove("GRADER_WORKERS")
        .env_remove("GRADER_SAMPLES");
    c
}

fn admin(db_url: &str, cwd: &std::path::Path, args: &[&str]) {
    process::admin(grader(db_url, cwd, "unused"), args);
}

/// What the stand-in provider saw and decided, per call.
#[derive(Default)]
struct ProviderStats {
    calls: AtomicU64,
    failed: AtomicU64,
    delayed: AtomicU64,
    /// Successful (200) answers decided per transcript (case number). Counted when the answer
    /// is decided, before any delay: an answer a killed process never read still counts.
    ok_per_case: Mutex<HashMap<usize, u32>>,
    calls_per_key: Mutex<HashMap<String, u64>>,
}

fn case_of(request: &Value) -> Option<usize> {
    let user = request["messages"].as_array()?.last()?["content"].as_str()?;
    let at = user.find(MARKER)? + MARKER.len();
    user[at..].get(..6)?.parse().ok()
}

/// The stand-in's deterministic behaviour, by arrival order `n` across all processes: every
/// fifth call fails with a 500 (20%), every tenth (a different residue) is answered after
/// 200–500 ms (10%), every other call answers a valid judgment at once.
fn responder(stats: Arc<ProviderStats>) -> Scripted {
    Scripted::dynamic(move |request: &Value| {
        let n = stats.calls.fetch_add(1, Ordering::SeqCst);
        if n % 5 == 4 {
            stats.failed.fetch_add(1, Ordering::SeqCst);
            return Scripted::error(500, "stand-in: injected failure");
        }
        if let Some(case) = case_of(request) {
            *stats
                .ok_per_case
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(case)
                .or_default() += 1;
        }
        let reply = Scripted::reply_json(&judgment_for_request(request, 3));
        if n % 10 == 7 {
            stats.delayed.fetch_add(1, Ordering::SeqCst);
            Scripted::delay(Duration::from_millis(200 + (n * 7_919) % 301), reply)
        } else {
            reply
        }
    })
}

/// Counts calls per `Authorization` header (one key per process).
fn count_keys(standin: &StandIn, stats: &ProviderStats) {
    let mut per = stats
        .calls_per_key
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for r in standin.recorded() {
        *per.entry(r.authorization.unwrap_or_default()).or_default() += 1;
    }
}

/// One delivery's body: a short hands-on transcript made unique by its case number.
fn body_for(case: usize) -> Vec<u8> {
    let transcript = format!(
        "Interviewer: How would you evaluate retrieval for tenant {case}?\n\
         Candidate: I would label queries and track recall@k, then check faithfulness with a \
         judge calibrated against human grades ({MARKER}{case:06}).\n\
         Interviewer: And in production?\n\
         Candidate: Tracing per request, cost per answer, and a regression gate in CI.\n"
    );
    json!({"stage": "hands_on", "transcript": transcript})
        .to_string()
        .into_bytes()
}

/// Sends one delivery (fresh timestamp and signature, same id and body) to the process in
/// `slot`, moving on to the next process while one is down — what an ATS does when a
/// delivery fails. Returns (submission id, duplicate).
async fn deliver(
    client: &reqwest::Client,
    bases: &RwLock<Vec<String>>,
    tenant: &str,
    case: usize,
    mut slot: usize,
    resent: &AtomicUsize,
) -> (String, bool) {
    let id = format!("msg_scale_{case:06}");
    let body = body_for(case);
    for attempt in 0..200 {
        let base = bases.read().unwrap_or_else(|e| e.into_inner())[slot % PROCESSES].clone();
        let ts = chrono::Utc::now().timestamp();
        let sig = grader::ingest::ats::sign_standard(SECRET, &id, ts, &body);
        let sent = client
            .post(format!("{base}/v1/webhooks/{tenant}/standard"))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 202 => {
                let v: Value = r.json().await.expect("202 body");
                return (
                    v["id"].as_str().expect("id").to_string(),
                    v["duplicate"].as_bool().expect("duplicate"),
                );
            }
            Ok(r) => panic!(
                "delivery {id}: HTTP {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) => {
                // Connection refused or reset: that process is down. Try the next one.
                resent.fetch_add(1, Ordering::Relaxed);
                slot += 1;
                tokio::time::sleep(Duration::from_millis(if attempt < 3 { 5 } else { 50 })).await;
            }
        }
    }
    panic!("delivery {id}: no process accepted it");
}

/// The bound on successful provider answers, per transcript and in total.
///
/// A grading makes exactly one provider request content (one sample, one model, no routes,
/// valid output so no repair turn), and every transcript is distinct, so a job that runs once
/// gets exactly one 200 (its 500s are retries, not paid answers). A job runs more than once
/// only when its lease is lost: here, only the jobs the killed process held when it died (no
/// live worker outlives an 8 s lease). Such a job may have been paid for before the kill and
/// is paid for again by the worker that re-leases it unless the first answer reached the L2
/// cache (PostgreSQL) first, in which case the re-grade reuses it. So: every case has ≥ 1
/// answer; a case with 2 answers must be one of `held` (the killed process's leases); none
/// has more than 2; and the repeats sum to at most `held.len()`.
fn paid_answer_bound(ok: &HashMap<usize, u32>, held: &HashSet<usize>) -> Result<usize, String> {
    let mut repeats = 0usize;
    for case in 0..N {
        let n = ok.get(&case).copied().unwrap_or(0);
        if n == 0 {
            return Err(format!("case {case} graded without a paid answer"));
        }
        if n > 1 {
            if !held.contains(&case) || n > 2 {
                return Err(format!(
                    "case {case}: {n} paid answers, held by the killed process: {}",
                    held.contains(&case)
                ));
            }
            repeats += (n - 1) as usize;
        }
    }
    if repeats > held.len() {
        return Err(format!("{repeats} repeats > {} held jobs", held.len()));
    }
    Ok(repeats)
}

/// Submission ids whose jobs `pid`'s workers hold (`leased_by` = `host:pid/wN`). A read-only
/// observation of the queue for the test; the application's SQL stays in `store`.
async fn leased_by(pool: &sqlx::PgPool, pid: u32) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT submission_id FROM jobs WHERE status = 'leased' AND leased_by LIKE $1",
    )
    .bind(format!("%:{pid}/w%"))
    .fetch_all(pool)
    .await
    .expect("query leases")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_one_sigkilled_grade_every_delivery_exactly_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("observer pool");
    let cwd = tempfile::tempdir().expect("tempdir");
    let standin = StandIn::start().await;
    let stats = Arc::new(ProviderStats::default());
    standin.set_default(responder(stats.clone()));
    let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    std::fs::write(
        cwd.path().join("grader.toml"),
        format!(
            r#"prompts_dir = "{prompts}"
[judge]
samples = 1
retry_base_ms = 20
retry_max_ms = 200

[[models]]
name = "standin"
model = "gpt-4o-mini"
base_url = "{base}"
timeout_secs = 10
max_retries = 3

[service]
workers = {WORKERS}
lease_secs = {LEASE_SECS}
max_attempts = 20
poll_interval_ms = 25
retry_base_ms = 100
retry_max_ms = 1000
shutdown_grace_secs = 5
"#,
            prompts = prompts.display(),
            base = standin.base_url,
        ),
    )
    .expect("write grader.toml");
    admin(&db.url, cwd.path(), &["tenant", "create", "scale"]);
    admin(
        &db.url,
        cwd.path(),
        &[
            "webhook-secret",
            "set",
            "--tenant",
            "scale",
            "--source",
            "standard",
            SECRET,
        ],
    );
    let tenant_id = db
        .store
        .tenant_by_name("scale")
        .await
        .expect("tenant")
        .expect("created")
        .id;

    let start = |key: String| {
        let url = db.url.clone();
        let dir = cwd.path().to_path_buf();
        tokio::task::spawn_blocking(move || Server::start(grader(&url, &dir, &key), &[]))
    };
    let mut servers = Vec::new();
    for i in 0..PROCESSES {
        servers.push(Some(start(format!("sk-proc-{i}")).await.expect("start")));
    }
    let bases = Arc::new(RwLock::new(
        servers
            .iter()
            .map(|s| s.as_ref().expect("server").base.clone())
            .collect::<Vec<_>>(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .expect("client");
    let first_bases = bases.read().expect("bases").clone();
    for base in &first_bases {
        let r = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status(), 200);
    }

    // The plan: each case once, to process case % 3; every tenth case again, a little later,
    // to the next process (a redelivery that may race the first delivery's grading).
    let mut plan: Vec<(usize, usize)> = Vec::with_capacity(N + N / REDELIVER_EVERY);
    for case in 0..N {
        plan.push((case, case));
        if case >= 40 && (case - 40) % REDELIVER_EVERY == 0 {
            plan.push((case - 40, case - 40 + 1));
        }
    }
    for case in (N - 40..N).filter(|c| c % REDELIVER_EVERY == 0) {
        plan.push((case, case + 1));
    }
    assert_eq!(plan.len(), N + N / REDELIVER_EVERY);

    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let resent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (client, bases, sent, resent) =
            (client.clone(), bases.clone(), sent.clone(), resent.clone());
        tokio::spawn(async move {
            stream::iter(plan)
                .map(|(case, slot)| {
                    let (client, bases, sent, resent) =
                        (client.clone(), bases.clone(), sent.clone(), resent.clone());
                    async move {
                        let r = deliver(&client, &bases, "scale", case, slot, &resent).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        (case, r)
                    }
                })
                .buffer_unordered(SENDERS)
                .collect::<Vec<_>>()
                .await
        })
    };

    // Mid-run: once a third of the deliveries are in and the victim holds leases, SIGKILL it.
    const VICTIM: usize = 1;
    while sent.load(Ordering::Relaxed) < N / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = servers[VICTIM].take().expect("victim");
    let victim_pid = victim.pid;
    let deadline = Instant::now() + Duration::from_secs(30);
    while leased_by(&pool, victim_pid).await.is_empty() {
        assert!(Instant::now() < deadline, "the victim never held a lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = started.elapsed();
    victim.sigkill();
    // What the dead process still holds: those leases can only expire.
    let held_ids: HashSet<String> = leased_by(&pool, victim_pid).await.into_iter().collect();
    let replacement = start("sk-proc-restarted".into()).await.expect("restart");
    let restarted_at = started.elapsed();
    bases.write().expect("bases")[VICTIM] = replacement.base.clone();
    let r = client
        .get(format!("{}/readyz", replacement.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    servers[VICTIM] = Some(replacement);

    let results = sender.await.expect("sender");
    let accepted_in = started.elapsed();

    // Wait until every submission is graded (none may be dead: failures are all retryable).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let graded = db
            .store
            .list_submissions(&tenant_id, Some(SubmissionStatus::Graded), 10_000, 0)
            .await
            .expect("list")
            .len();
        if graded == N {
            break;
        }
        let dead = db
            .store
            .list_submissions(&tenant_id, Some(SubmissionStatus::Dead), 10, 0)
            .await
            .expect("list dead");
        assert!(dead.is_empty(), "dead-lettered: {:?}", dead[0].error);
        assert!(
            Instant::now() < deadline,
            "only {graded} of {N} graded in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let graded_in = started.elapsed();

    // Nothing lost, no duplicates: one submission per delivery id, every answer for an id the
    // same submission, and exactly one of each id's answers said "new".
    let mut by_case: HashMap<usize, String> = HashMap::new();
    let mut firsts: HashMap<usize, usize> = HashMap::new();
    for (case, (id, duplicate)) in &results {
        let known = by_case.entry(*case).or_insert_with(|| id.clone());
        assert_eq!(
            known, id,
            "case {case}: every delivery answers one submission"
        );
        if !duplicate {
            *firsts.entry(*case).or_default() += 1;
        }
    }
    assert_eq!(by_case.len(), N, "every delivery id answered");
    // At most one answer per id says "created". None may: the victim committed a delivery
    // and died before answering, and the re-sent delivery found it (a duplicate). At most the
    // requests in flight at the kill, SENDERS.
    assert!(
        firsts.values().all(|&n| n == 1),
        "no delivery id created two submissions: {firsts:?}"
    );
    let lost_answers = N - firsts.len();
    assert!(
        lost_answers <= SENDERS,
        "{lost_answers} ids have no `created` answer: more than the kill can explain"
    );
    let stored = db
        .store
        .list_submissions(&tenant_id, None, 100_000, 0)
        .await
        .expect("list all");
    let stored_ids: BTreeSet<&str> = stored.iter().map(|s| s.id.as_str()).collect();
    let answered_ids: BTreeSet<&str> = by_case.values().map(String::as_str).collect();
    assert_eq!(stored.len(), N, "exactly one submission per delivery id");
    assert_eq!(stored_ids, answered_ids);

    // Graded exactly once.
    let audit = db
        .store
        .audit_log(&tenant_id, 1_000_000)
        .await
        .expect("audit");
    let mut completions: HashMap<&str, usize> = HashMap::new();
    let mut completed_by: HashMap<&str, &str> = HashMap::new();
    for e in audit.iter().filter(|e| e.action == "grading.completed") {
        let subject = e.subject.as_deref().unwrap_or("");
        *completions.entry(subject).or_default() += 1;
        completed_by.insert(subject, e.actor.as_str());
    }
    assert_eq!(completions.len(), N, "every submission completed");
    let twice: Vec<_> = completions.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "graded more than once: {twice:?}");
    let victim_tag = format!(":{victim_pid}/w");
    let processes: HashSet<&str> = completed_by
        .values()
        .filter(|a| !a.contains(&victim_tag))
        .filter_map(|a| a.rsplit_once('/').map(|(p, _)| p))
        .collect();
    assert_eq!(
        processes.len(),
        PROCESSES,
        "the two survivors and the replacement all graded: {processes:?}"
    );
    let by_victim = completed_by
        .values()
        .filter(|a| a.contains(&victim_tag))
        .count();

    // Every job the killed process held was re-leased and completed by another process.
    for id in &held_ids {
        let actor = completed_by.get(id.as_str()).expect("held job completed");
        assert!(!actor.contains(&victim_tag), "{id} completed by {actor}");
    }
    let case_of_id: HashMap<&str, usize> =
        by_case.iter().map(|(c, id)| (id.as_str(), *c)).collect();
    let held: HashSet<usize> = held_ids.iter().map(|id| case_of_id[id.as_str()]).collect();

    // No paid call repeated beyond retries.
    let ok = stats
        .ok_per_case
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let repeats = paid_answer_bound(&ok, &held).unwrap_or_else(|e| panic!("{e}"));

    let calls = stats.calls.load(Ordering::SeqCst);
    let failed = stats.failed.load(Ordering::SeqCst);
    let delayed = stats.delayed.load(Ordering::SeqCst);
    assert!(failed * 5 <= calls && failed * 5 + 5 > calls, "20% failed");
    let paid: u32 = ok.values().sum();
    assert_eq!(
        u64::from(paid) + failed,
        calls,
        "every call either failed or paid"
    );
    count_keys(&standin, &stats);
    let per_key = stats
        .calls_per_key
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut per_key: Vec<_> = per_key.into_iter().collect();
    per_key.sort();

    for s in servers.into_iter().flatten() {
        s.terminate();
    }
    let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'done'")
        .fetch_one(&pool)
        .await
        .expect("count unfinished");
    assert_eq!(leased, 0, "no job left queued or leased");
    pool.close().await;

    let secs = graded_in.as_secs_f64();
    println!(
        "scale: {N} deliveries + {} redelivered + {} re-sent after connection errors ({lost_answers} \
         of them stored by the killed process before it could answer), accepted in {:.1} s; all graded in {secs:.1} s ({:.0} gradings/s) by {PROCESSES} processes × \
         {WORKERS} workers on one PostgreSQL",
        N / REDELIVER_EVERY,
        resent.load(Ordering::Relaxed),
        accepted_in.as_secs_f64(),
        N as f64 / secs,
    );
    println!(
        "provider: {calls} calls, {failed} failed with 500 ({:.1}%), {delayed} delayed \
         200-500 ms, {paid} paid answers ({repeats} repeated after the kill)",
        100.0 * failed as f64 / calls as f64
    );
    println!(
        "kill: 1 SIGKILL at {:.1} s, replacement ready at {:.1} s; the killed process held {} \
         leases (it had completed {by_victim}), all re-leased after ≤ {LEASE_SECS} s and \
         completed elsewhere; calls per process key: {per_key:?}",
        killed_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        held.len(),
    );
}

#[test]
fn the_paid_answer_bound_rejects_what_it_should() {
    let all_once: HashMap<usize, u32> = (0..N).map(|c| (c, 1)).collect();
    let held: HashSet<usize> = [3, 7].into_iter().collect();
    assert_eq!(paid_answer_bound(&all_once, &held), Ok(0));
    let mut ok = all_once.clone();
    ok.insert(3, 2);
    assert_eq!(paid_answer_bound(&ok, &held), Ok(1));
    // A repeat on a job the killed process did not hold is a bug.
    ok.insert(4, 2);
    assert!(paid_answer_bound(&ok, &held).is_err());
    // Three answers for one transcript: never.
    let mut ok = all_once.clone();
    ok.insert(7, 3);
    assert!(paid_answer_bound(&ok, &held).is_err());
    // A graded case with no answer at all means the count is wrong.
    let mut ok = all_once;
    ok.remove(&0);
    assert!(paid_answer_bound(&ok, &held).is_err());
}

/// The Kubernetes manifests' shutdown numbers must follow from their grader.toml (see the
/// table in k8s/README.md): the grace period covers the longest grading, the lease outlives it,
/// and the pod's terminationGracePeriodSeconds covers preStop + grace + time to release jobs.
#[test]
fn the_k8s_grace_period_covers_the_longest_grading() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml_path = root.join("k8s/base/grader.toml");
    let text = std::fs::read_to_string(&toml_path).expect("k8s/base/grader.toml");
    let cfg = grader::config::Config::from_sources(Some(&toml_path), Some(&text), &|_| None)
        .expect("the k8s config parses and validates");
    assert_eq!(cfg.prompts_dir, std::path::Path::new("/app/prompts"));
    let model = cfg.judge_model().expect("a model");
    // One call with its retries: every attempt may time out, every wait may be the longest
    // backoff or Retry-After we honour.
    let wait = (cfg.judge.retry_max_ms / 1000).max(cfg.judge.max_retry_after_secs);
    let call =
        u64::from(model.max_retries + 1) * model.timeout_secs + u64::from(model.max_retries) * wait;
    // Samples run side by side; a repair turn is another call; a strong tier doubles it all.
    let tiers = if cfg.routes.is_empty() { 1 } else { 2 };
    let longest = tiers * u64::from(1 + cfg.judge.max_repairs) * call;
    assert_eq!(call, 110, "the figure k8s/README.md quotes");
    assert!(
        cfg.service.shutdown_grace_secs >= longest,
        "shutdown_grace_secs {} < longest grading {longest} s",
        cfg.service.shutdown_grace_secs
    );
    assert!(
        cfg.service.lease_secs > longest,
        "lease must outlive a grading"
    );

    let deployment =
        std::fs::read_to_string(root.join("k8s/base/deployment.yaml")).expect("deployment.yaml");
    let number_after = |key: &str| -> u64 {
        let line = deployment
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("{key} in deployment.yaml"));
        line.trim_start()[key.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let termination = number_after("terminationGracePeriodSeconds:");
    let pre_stop = {
        let at = deployment.find("preStop:").expect("a preStop hook");
        let rest = &deployment[at..];
        let line = rest
            .lines()
            .find(|l| l.trim_start().starts_with("seconds:"))
            .expect("preStop sleep seconds");
        line.trim_start()["seconds:".len()..]
            .trim()
            .parse::<u64>()
            .expect("a number")
    };
    assert!(
        termination >= pre_stop + cfg.service.shutdown_grace_secs + 10,
        "terminationGracePeriodSeconds {termination} < preStop {pre_stop} + grace {} + 10",
        cfg.service.shutdown_grace_secs
    );
}
