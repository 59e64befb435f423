//! Durable result callbacks end to end: a report's delivery is queued in the store's outbox
//! with the report, so stopping the process mid-backoff loses nothing; a new process on the
//! same database finishes the delivery, exactly once. Each test runs on SQLite and PostgreSQL.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grader::config::Config;
use grader::judge::pipeline::{Judge, JudgeSettings};
use grader::prompts::Registry;
use grader::service::{worker, App};
use grader::store::{CallbackAttempt, Role, Store, TenantSettings};
use serde_json::Value;
use support::app::{submission_body, test_config, Options, TestApp};
use support::db::Backend;
use tokio::sync::watch;

both_backends!(
    a_restart_mid_backoff_loses_no_callback_and_delivers_once,
    a_callback_is_given_up_after_the_allowed_attempts,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A local receiver that records every delivery's `webhook-id` and answers 500 to the first
/// `failures` calls, 204 afterwards.
struct Receiver {
    url: String,
    ids: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn calls(&self) -> Vec<String> {
        self.ids.lock().expect("lock").clone()
    }
}

async fn receiver(failures: usize) -> Receiver {
    use axum::routing::post;
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let rec = ids.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap| {
            let rec = rec.clone();
            let seen = seen.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                rec.lock().expect("lock").push(id);
                if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        ids,
    }
}

/// A tenant whose reports go to `url`, its ingest key, and one graded submission's id.
async fn graded_submission_with_callback(t: &TestApp, url: &str) -> (String, String, String) {
    let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
    t.store
        .update_tenant_settings(
            &tenant.id,
            &TenantSettings {
                callback_url: Some(url.to_string()),
                callback_secret: Some(SECRET.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("settings");
    let resp = t
        .post_json("/v1/submissions", &key, &submission_body())
        .await;
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.expect("JSON");
    let id = v["id"].as_str().expect("id").to_string();
    t.wait_graded(&key, &id).await;
    (tenant.id, key, id)
}

/// Polls the delivery log until it has `n` attempts (panics after 30 s).
async fn wait_attempts(
    store: &dyn Store,
    tenant_id: &str,
    id: &str,
    n: usize,
) -> Vec<CallbackAttempt> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.callbacks(tenant_id, id).await.expect("callbacks");
        if log.len() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} callback attempts for {id}: {log:?}",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn statuses(log: &[CallbackAttempt]) -> Vec<(u32, Option<u16>)> {
    log.iter().map(|a| (a.attempt, a.status)).collect()
}

/// A second process on the same database: its own store connections, App and workers (with
/// their callback delivery loop), no HTTP server.
struct SecondProcess {
    store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    workers: worker::Workers,
}

impl SecondProcess {
    async fn start(t: &TestApp, tweak: impl FnOnce(&mut Config)) -> SecondProcess {
        let store = t.db.open_another().await;
        let mut cfg = test_config(&t.db.url, 1);
        tweak(&mut cfg);
        let registry = Registry::load(&cfg.prompts_dir).expect("prompts");
        let judge = Judge::offline(JudgeSettings::from_config(&cfg, None));
        let app = Arc::new(App::new(
            cfg,
            store.clone(),
            Arc::new(registry),
            Arc::new(judge),
            "second-process".into(),
        ));
        let (shutdown, rx) = watch::channel(false);
        let workers = worker::spawn(app, rx);
        SecondProcess {
            store,
            shutdown,
            workers,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.workers.join().await;
    }
}

async fn a_restart_mid_backoff_loses_no_callback_and_delivers_once(backend: Backend) {
    let r = receiver(2).await;
    // The first process waits 2-4 s (jittered) before its second attempt: long enough to stop
    // it in between.
    let mut t = TestApp::spawn_with(Options::new(backend).tweak(|cfg| {
        cfg.service.callback_retry_base_ms = 4_000;
        cfg.service.callback_retry_max_ms = 4_000;
        cfg.service.callback_max_attempts = 5;
    }))
    .await;
    let (tenant_id, _key, id) = graded_submission_with_callback(&t, &r.url).await;
    let log = wait_attempts(t.store.as_ref(), &tenant_id, &id, 1).await;
    t.stop().await;
    // Stopped mid-backoff: one failed attempt made and logged, the rest still owed.
    assert_eq!(statuses(&log), vec![(1, Some(500))]);
    assert_eq!(r.calls().len(), 1);
    assert_eq!(
        statuses(&t.store.callbacks(&tenant_id, &id).await.expect("log")),
        vec![(1, Some(500))]
    );

    // A new process on the same database picks the delivery up when it is due and
    // continues the attempt count where the log stopped.
    let second = SecondProcess::start(&t, |cfg| {
        cfg.service.callback_retry_base_ms = 50;
        cfg.service.callback_retry_max_ms = 100;
        cfg.service.callback_max_attempts = 5;
    })
    .await;
    let log = wait_attempts(second.store.as_ref(), &tenant_id, &id, 3).await;
    assert_eq!(
        statuses(&log),
        vec![(1, Some(500)), (2, Some(500)), (3, Some(204))]
    );
    assert!(log[1].error.as_deref().is_some_and(|e| e.contains("500")));
    assert!(log[2].error.is_none());
    // Exactly one successful delivery, and no attempt after it (the row is settled).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = r.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| *c == format!("msg_{id}")), "{calls:?}");
    let log = second.store.callbacks(&tenant_id, &id).await.expect("log");
    assert_eq!(
        log.iter()
            .filter(|a| a.status.is_some_and(|s| (200..300).contains(&s)))
            .count(),
        1
    );
    assert_eq!(log.len(), 3);
    second.stop().await;
}

async fn a_callback_is_given_up_after_the_allowed_attempts(backend: Backend) {
    let r = receiver(usize::MAX).await;
    let t = TestApp::spawn_with(Options::new(backend).tweak(|cfg| {
        cfg.service.callback_max_attempts = 3;
    }))
    .await;
    let (tenant_id, key, id) = graded_submission_with_callback(&t, &r.url).await;
    let log = wait_attempts(t.store.as_ref(), &tenant_id, &id, 3).await;
    assert_eq!(
        statuses(&log),
        vec![(1, Some(500)), (2, Some(500)), (3, Some(500))]
    );
    // Given up: no fourth attempt, by this process or a new one on the same database.
    let second = SecondProcess::start(&t, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.calls().len(), 3);
    assert_eq!(
        t.store.callbacks(&tenant_id, &id).await.expect("log").len(),
        3
    );
    second.stop().await;
    // A failed callback never fails the grading.
    let v: Value = t
        .get(&format!("/v1/submissions/{id}"), &key)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["status"], "graded");
    assert_eq!(
        t.app
            .metrics
            .callbacks_abandoned
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
