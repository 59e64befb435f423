//! `Idempotency-Key` on `POST /v1/grade` across replicas: one key, one grading. Two apps
//! (routers on port 0) over ONE database stand for two replicas behind a load balancer; the
//! stand-in provider records every model call. Every test runs on SQLite and PostgreSQL.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader::config::Config;
use grader::domain::Stage;
use grader::judge::pipeline::Judge;
use grader::prompts::Registry;
use grader::service::App;
use grader::store::{ClaimOutcome, HumanGrade, NewSubmission, Role, Store, SubmissionStatus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::app::{standin_model, submission_body, test_config, Options, TestApp};
use support::db::Backend;
use support::fixtures::submission;
use support::{Scripted, StandIn};
use tokio::sync::watch;

both_backends!(
    one_key_is_graded_once_across_two_replicas,
    a_different_body_on_another_replica_is_refused_while_the_first_grades,
    a_failed_grading_releases_the_key_and_the_waiting_retry_grades,
    an_expired_claim_is_taken_over_by_one_request_and_graded_once,
    a_wait_longer_than_the_request_timeout_answers_409_with_retry_after,
    store_claims_are_exclusive_expire_and_are_invisible_to_workers,
);

/// How long the stand-in holds each answer in the concurrent tests.
const HOLD: Duration = Duration::from_millis(1000);

/// A second replica: the real router over its own store (own connections) on `a`'s
/// database, its own judge over the same stand-in, no workers.
struct Replica {
    base: String,
    app: Arc<App>,
    client: reqwest::Client,
    _shutdown: watch::Sender<bool>,
}

async fn replica(a: &TestApp, base_url: &str, tweak: impl FnOnce(&mut Config)) -> Replica {
    let mut cfg = test_config(&a.db.url, 0);
    cfg.models = vec![standin_model(base_url)];
    tweak(&mut cfg);
    let registry = Registry::load(&cfg.prompts_dir).expect("load the prompts directory");
    let judge = Judge::from_config(&cfg).expect("judge over the stand-in");
    let app = Arc::new(App::new(
        cfg,
        a.db.open_another().await,
        Arc::new(registry),
        Arc::new(judge),
        "replica-b".to_string(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = watch::channel(false);
    tokio::spawn(grader::http::serve(
        app.clone(),
        listener,
        grader::cli::serve::wait_for(rx),
    ));
    Replica {
        base: format!("http://{addr}"),
        app,
        client: reqwest::Client::new(),
        _shutdown: tx,
    }
}

/// A stand-in that answers every grading call with a valid judgment after `hold`.
async fn slow_standin(hold: Duration) -> StandIn {
    let standin = StandIn::start().await;
    standin.set_default(judgment_after(hold));
    standin
}

fn judgment_after(hold: Duration) -> Scripted {
    Scripted::dynamic(move |req| {
        Scripted::delay(
            hold,
            Scripted::reply(support::fixtures::judgment_for_request(req, 3).to_string()),
        )
    })
}

/// Replica A: the usual test app (no workers) over the stand-in.
async fn replica_a(backend: Backend, standin: &StandIn, timeout_secs: u64) -> TestApp {
    TestApp::spawn_with(
        Options::new(backend)
            .model(&standin.base_url)
            .workers(0)
            .tweak(move |c| c.service.request_timeout_secs = timeout_secs),
    )
    .await
}

struct Answer {
    status: u16,
    replayed: bool,
    retry_after: Option<u64>,
    body: Value,
}

async fn grade(client: &reqwest::Client, base: &str, key: &str, idem: &str, body: &str) -> Answer {
    let resp = client
        .post(format!("{base}/v1/grade"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    Answer {
        status,
        replayed,
        retry_after,
        body,
    }
}

fn sync_gradings(app: &App) -> u64 {
    app.metrics.sync_gradings.load(Ordering::Relaxed)
}

/// The rows of the tenant (claims included) and its `grading.completed` entries.
async fn rows_and_completions(store: &dyn Store, tenant_id: &str) -> (usize, usize) {
    let rows = store
        .list_submissions(tenant_id, None, 1000, 0)
        .await
        .expect("list")
        .len();
    let completions = store
        .audit_log(tenant_id, 1000)
        .await
        .expect("audit")
        .iter()
        .filter(|e| e.action == "grading.completed")
        .count();
    (rows, completions)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------- tests

async fn one_key_is_graded_once_across_two_replicas(backend: Backend) {
    let standin = slow_standin(HOLD).await;
    let a = replica_a(backend, &standin, 30).await;
    let b = replica(&a, &standin.base_url, |_| {}).await;
    let (tenant, key) = a.tenant_with_key("acme", Role::Ingest).await;
    let body = submission_body().to_string();

    let first = grade(&a.client, &a.base, &key, "order-1", &body);
    let retry = async {
        // The client timed out and retried; the load balancer chose the other replica.
        tokio::time::sleep(Duration::from_millis(200)).await;
        grade(&b.client, &b.base, &key, "order-1", &body).await
    };
    let (first, retry) = tokio::join!(first, retry);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(standin.calls(), 1, "one paid model call for one key");
    assert_eq!(sync_gradings(&a.app) + sync_gradings(&b.app), 1);
    assert_eq!(first.body["id"], retry.body["id"]);
    assert_eq!(
        first.body, retry.body,
        "the retry answers the first's report"
    );
    assert!(!first.replayed);
    assert!(retry.replayed, "the retry is a replay");
    // One row for the key (the claim was replaced by the graded submission), one audit.
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (1, 1)
    );
    let id = first.body["id"].as_str().expect("id");
    let stored = a
        .store
        .submission(&tenant.id, id)
        .await
        .expect("read")
        .expect("stored under the report's id");
    assert_eq!(stored.status, SubmissionStatus::Graded);
    assert_eq!(stored.delivery_id.as_deref(), Some("order-1"));
}

async fn a_different_body_on_another_replica_is_refused_while_the_first_grades(backend: Backend) {
    let standin = slow_standin(HOLD).await;
    let a = replica_a(backend, &standin, 30).await;
    let b = replica(&a, &standin.base_url, |_| {}).await;
    let (tenant, key) = a.tenant_with_key("acme", Role::Ingest).await;
    let body = submission_body().to_string();
    let mut other = submission_body();
    other["external_id"] = json!("app-2");
    let other = other.to_string();

    let started = Instant::now();
    let first = grade(&a.client, &a.base, &key, "order-2", &body);
    let reuse = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = grade(&b.client, &b.base, &key, "order-2", &other).await;
        (answer, started.elapsed())
    };
    let (first, (reuse, answered_after)) = tokio::join!(first, reuse);
    assert_eq!(reuse.status, 422, "{}", reuse.body);
    assert_eq!(reuse.body["error"]["code"], "idempotency_key_reused");
    assert!(
        answered_after < HOLD,
        "refused at once, while the first still grades ({answered_after:?})"
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(standin.calls(), 1);
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (1, 1)
    );
}

async fn a_failed_grading_releases_the_key_and_the_waiting_retry_grades(backend: Backend) {
    let standin = StandIn::start().await;
    // The first call fails after a while (the model has no retries left: max_retries = 0);
    // every later call succeeds.
    standin.push(Scripted::delay(
        HOLD,
        Scripted::error(500, "upstream exploded"),
    ));
    standin.set_default(judgment_after(Duration::ZERO));
    let a = replica_a(backend, &standin, 30).await;
    let b = replica(&a, &standin.base_url, |_| {}).await;
    let (tenant, key) = a.tenant_with_key("acme", Role::Ingest).await;
    let body = submission_body().to_string();

    let first = grade(&a.client, &a.base, &key, "order-3", &body);
    let retry = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        grade(&b.client, &b.base, &key, "order-3", &body).await
    };
    let (first, retry) = tokio::join!(first, retry);
    assert_eq!(first.status, 502, "{}", first.body);
    assert_eq!(first.body["error"]["code"], "grading_failed");
    // The retry waited for the first, found the key released, claimed it and graded.
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert!(!retry.replayed, "a new grading, not a replay");
    assert_eq!(standin.calls(), 2);
    assert_eq!(sync_gradings(&b.app), 1);
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (1, 1)
    );

    // A retry after the failure alone (no one waiting): graded too, on either replica.
    standin.push(Scripted::error(500, "upstream exploded"));
    let failed = grade(&a.client, &a.base, &key, "order-4", &body).await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (1, 1)
    );
    let again = grade(&b.client, &b.base, &key, "order-4", &body).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(!again.replayed);
    let replay = grade(&a.client, &a.base, &key, "order-4", &body).await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert!(replay.replayed);
    assert_eq!(replay.body["id"], again.body["id"]);
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (2, 2)
    );
}

async fn an_expired_claim_is_taken_over_by_one_request_and_graded_once(backend: Backend) {
    let standin = slow_standin(Duration::from_millis(300)).await;
    let a = replica_a(backend, &standin, 30).await;
    let b = replica(&a, &standin.base_url, |_| {}).await;
    let (tenant, key) = a.tenant_with_key("acme", Role::Ingest).await;
    let body = submission_body().to_string();

    // A replica claimed the key, then died: its claim (a zero lease) has expired.
    let mut dead = new_sub(&tenant.id, Some("order-5"));
    dead.input_sha256 = sha256_hex(body.as_bytes());
    let ClaimOutcome::Claimed(claim) = a
        .store
        .claim_delivery(&dead, Duration::ZERO)
        .await
        .expect("claim")
    else {
        panic!("the key was free");
    };

    // Two retries at once, one per replica: one takes the claim over and grades, the
    // other waits for it and replays.
    let (x, y) = tokio::join!(
        grade(&a.client, &a.base, &key, "order-5", &body),
        grade(&b.client, &b.base, &key, "order-5", &body)
    );
    assert_eq!((x.status, y.status), (200, 200), "{} {}", x.body, y.body);
    assert_eq!(x.body["id"], y.body["id"]);
    assert!(x.replayed ^ y.replayed, "one grading, one replay");
    assert_eq!(standin.calls(), 1, "graded once");
    assert_eq!(sync_gradings(&a.app) + sync_gradings(&b.app), 1);
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (1, 1)
    );
    assert!(
        a.store
            .submission(&tenant.id, &claim.submission_id)
            .await
            .expect("read")
            .is_none(),
        "the dead replica's claim is gone"
    );
}

async fn a_wait_longer_than_the_request_timeout_answers_409_with_retry_after(backend: Backend) {
    let standin = slow_standin(Duration::from_millis(3500)).await;
    let a = replica_a(backend, &standin, 30).await;
    // Replica B answers within 2 s.
    let b = replica(&a, &standin.base_url, |c| {
        c.service.request_timeout_secs = 2
    })
    .await;
    let (tenant, key) = a.tenant_with_key("acme", Role::Ingest).await;
    let body = submission_body().to_string();

    let started = Instant::now();
    let first = grade(&a.client, &a.base, &key, "order-6", &body);
    let retry = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = grade(&b.client, &b.base, &key, "order-6", &body).await;
        (answer, started.elapsed())
    };
    let (first, (retry, answered_after)) = tokio::join!(first, retry);
    assert_eq!(retry.status, 409, "{}", retry.body);
    assert_eq!(retry.body["error"]["code"], "idempotency_key_in_progress");
    let after = retry.retry_after.expect("a Retry-After header");
    assert!((1..=40).contains(&after), "Retry-After {after}");
    assert!(
        answered_after < Duration::from_millis(3500),
        "answered before the first finished ({answered_after:?})"
    );
    assert_eq!(first.status, 200, "{}", first.body);
    // Retrying later finds the report.
    let later = grade(&b.client, &b.base, &key, "order-6", &body).await;
    assert_eq!(later.status, 200, "{}", later.body);
    assert!(later.replayed);
    assert_eq!(later.body["id"], first.body["id"]);
    assert_eq!(standin.calls(), 1);
    assert_eq!(
        rows_and_completions(a.store.as_ref(), &tenant.id).await,
        (1, 1)
    );
}

// ---------------------------------------------------------------- the store's claims

fn new_sub(tenant_id: &str, key: Option<&str>) -> NewSubmission {
    NewSubmission {
        tenant_id: tenant_id.to_string(),
        submission: submission("acme", Stage::SystemDesign, "I would chunk by section."),
        source: "api".to_string(),
        delivery_id: key.map(str::to_string),
        prompt: None,
        input_sha256: "ab".repeat(32),
    }
}

async fn store_claims_are_exclusive_expire_and_are_invisible_to_workers(backend: Backend) {
    let db = support::db::TestDb::new(backend).await;
    let store = db.store.clone();
    let other = db.open_another().await;
    let tenant = store.create_tenant("acme").await.expect("tenant");
    let new = new_sub(&tenant.id, Some("k-1"));
    let lease = Duration::from_secs(60);

    // Concurrent claims from two "replicas": exactly one wins.
    let (x, y) = tokio::join!(
        store.claim_delivery(&new, lease),
        other.claim_delivery(&new, lease)
    );
    let outcomes = [x.expect("claim"), y.expect("claim")];
    let claims: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            ClaimOutcome::Claimed(c) => Some(c.clone()),
            ClaimOutcome::Taken(_) => None,
        })
        .collect();
    assert_eq!(claims.len(), 1, "{outcomes:?}");
    let claim = &claims[0];
    let holder = store
        .delivery_holder(&tenant.id, "api", "k-1")
        .await
        .expect("holder")
        .expect("held");
    assert_eq!(holder.claim.as_ref(), Some(claim));
    assert_eq!(holder.input_sha256, new.input_sha256);
    assert_eq!(holder.record.status, SubmissionStatus::Grading);
    assert!(holder.record.report.is_none());
    assert_eq!(holder.record.id, claim.submission_id);

    // A claim has no job: workers never lease it.
    assert!(store
        .lease_job("worker", lease)
        .await
        .expect("lease")
        .is_none());
    // Nor can a person grade it (a claim is not a submission yet).
    let grade = HumanGrade {
        id: "hg-1".into(),
        tenant_id: tenant.id.clone(),
        submission_id: claim.submission_id.clone(),
        rater: "ana".into(),
        scores: [("retrieval".to_string(), 3.0)].into_iter().collect(),
        flags: vec![],
        override_reason: None,
        comment: None,
        created_at: chrono::Utc::now(),
    };
    assert!(matches!(
        store.add_human_grade(&grade).await,
        Err(grader::store::StoreError::NotFound(_))
    ));

    // Not expired: no take-over.
    assert_eq!(
        other
            .take_over_claim(&tenant.id, claim, lease)
            .await
            .expect("take over"),
        None
    );
    // Another's token cannot release it.
    let mut forged = claim.clone();
    forged.token = "forged".into();
    assert!(!other
        .release_claim(&tenant.id, &forged)
        .await
        .expect("release"));
    assert!(!other
        .release_claim("another-tenant", claim)
        .await
        .expect("release"));

    // Released: the key is free again.
    assert!(store
        .release_claim(&tenant.id, claim)
        .await
        .expect("release"));
    assert!(store
        .delivery_holder(&tenant.id, "api", "k-1")
        .await
        .expect("holder")
        .is_none());

    // An expired claim: of two takers exactly one wins, with a new token and one more attempt.
    let ClaimOutcome::Claimed(expired) = store
        .claim_delivery(&new, Duration::ZERO)
        .await
        .expect("claim")
    else {
        panic!("the key was free");
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The takers' own leases are zero too, so only the token keeps the second one out.
    let (x, y) = tokio::join!(
        store.take_over_claim(&tenant.id, &expired, Duration::ZERO),
        other.take_over_claim(&tenant.id, &expired, Duration::ZERO)
    );
    let taken: Vec<_> = [x.expect("take"), y.expect("take")]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    let short = &taken[0];
    assert_eq!(short.submission_id, expired.submission_id);
    assert_ne!(short.token, expired.token);
    // The old owner can no longer release it, nor take it over again.
    assert!(!store
        .release_claim(&tenant.id, &expired)
        .await
        .expect("release"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        other
            .take_over_claim(&tenant.id, &expired, lease)
            .await
            .expect("take over"),
        None,
        "a stale token"
    );
    let mine = &other
        .take_over_claim(&tenant.id, short, lease)
        .await
        .expect("take over")
        .expect("the expired current claim");
    assert!(mine.expires_at > chrono::Utc::now());
    let holder = other
        .delivery_holder(&tenant.id, "api", "k-1")
        .await
        .expect("holder")
        .expect("held");
    assert_eq!(holder.record.attempts, 3, "one attempt per owner");
    assert_eq!(holder.claim.as_ref(), Some(mine));
    assert!(other
        .release_claim(&tenant.id, mine)
        .await
        .expect("release"));

    // A key of the asynchronous route is no claim.
    let (queued, created) = store
        .enqueue(new_sub(&tenant.id, Some("k-2")))
        .await
        .expect("enqueue");
    assert!(created);
    let ClaimOutcome::Taken(holder) = store
        .claim_delivery(&new_sub(&tenant.id, Some("k-2")), lease)
        .await
        .expect("claim")
    else {
        panic!("the key is the queued submission's");
    };
    assert_eq!(holder.record.id, queued.id);
    assert_eq!(holder.claim, None);
}
