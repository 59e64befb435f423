//! A real `grader` HTTP server for tests: a fresh database (SQLite file or PostgreSQL
//! database of its own), the App, the router bound to 127.0.0.1:0 and the grading workers,
//! all on the test's runtime. Tenants and keys are created directly through the store.
//!
//! ```ignore
//! let t = TestApp::spawn(Backend::Sqlite).await;            // offline judge, 2 workers
//! let (tenant, key) = t.tenant_with_key("acme", Role::Ingest).await;
//! let resp = t.post_json("/v1/submissions", &key, &body).await;
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader::config::Config;
use grader::judge::pipeline::{Judge, JudgeSettings};
use grader::llm::ModelConfig;
use grader::prompts::Registry;
use grader::service::{worker, App};
use grader::store::{Role, Store, Tenant};
use serde_json::Value;
use tokio::sync::watch;

use super::db::{Backend, TestDb};

/// Which judge the app grades with.
#[derive(Debug, Clone)]
pub enum JudgeKind {
    Offline,
    /// An OpenAI-compatible model at this base URL (the stand-in's `base_url`).
    Model {
        base_url: String,
    },
}

/// How to build a test app.
pub struct Options {
    pub backend: Backend,
    pub workers: usize,
    pub judge: JudgeKind,
    /// Last word on the config (limits, retry delays, ...).
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Options {
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            workers: 2,
            judge: JudgeKind::Offline,
            tweak: Box::new(|_| {}),
        }
    }

    pub fn workers(mut self, n: usize) -> Options {
        self.workers = n;
        self
    }

    pub fn model(mut self, base_url: &str) -> Options {
        self.judge = JudgeKind::Model {
            base_url: base_url.to_string(),
        };
        self
    }

    pub fn tweak(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Options {
        self.tweak = Box::new(f);
        self
    }
}

/// The model entry pointing at a stand-in: no retries of its own so failures surface fast.
pub fn standin_model(base_url: &str) -> ModelConfig {
    ModelConfig {
        name: "standin".into(),
        model: "gpt-4o-mini".into(),
        base_url: Some(base_url.to_string()),
        api_key_env: None,
        prices: Default::default(),
        context_window: 128_000,
        max_output_tokens: 2_000,
        tokenizer: None,
        timeout_secs: 10,
        max_retries: 0,
        rpm: None,
        tpm: None,
    }
}

/// Fast test settings: short polls and backoffs, a one-second shutdown grace.
pub fn test_config(db_url: &str, workers: usize) -> Config {
    let mut cfg = Config {
        addr: "127.0.0.1:0".into(),
        database_url: db_url.to_string(),
        prompts_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        ..Default::default()
    };
    cfg.service.workers = workers;
    cfg.service.poll_interval_ms = 20;
    cfg.service.retry_base_ms = 50;
    cfg.service.retry_max_ms = 200;
    cfg.service.callback_retry_base_ms = 50;
    cfg.service.callback_retry_max_ms = 200;
    cfg.service.callback_timeout_secs = 5;
    cfg.service.shutdown_grace_secs = 1;
    cfg.judge.retry_base_ms = 10;
    cfg.judge.retry_max_ms = 50;
    cfg
}

type ServerHandle = tokio::task::JoinHandle<std::io::Result<()>>;

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub app: Arc<App>,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    pub db: TestDb,
    shutdown: watch::Sender<bool>,
    server: Option<ServerHandle>,
    workers: Option<worker::Workers>,
    extra_workers: Vec<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Offline judge, two workers.
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(Options::new(backend)).await
    }

    pub async fn spawn_with(opts: Options) -> TestApp {
        let db = TestDb::new(opts.backend).await;
        let mut cfg = test_config(&db.url, opts.workers);
        if let JudgeKind::Model { base_url } = &opts.judge {
            cfg.models = vec![standin_model(base_url)];
        }
        (opts.tweak)(&mut cfg);
        let registry = Registry::load(&cfg.prompts_dir).expect("load the prompts directory");
        let judge = match &opts.judge {
            JudgeKind::Offline => Judge::offline(JudgeSettings::from_config(&cfg, None)),
            JudgeKind::Model { .. } => Judge::from_config(&cfg).expect("judge over the stand-in"),
        };
        let store = db.store.clone();
        let app = Arc::new(App::new(
            cfg,
            store.clone(),
            Arc::new(registry),
            Arc::new(judge),
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(grader::http::serve(
            app.clone(),
            listener,
            grader::cli::serve::wait_for(rx.clone()),
        ));
        let workers = worker::spawn(app.clone(), rx);
        TestApp {
            base: format!("http://{addr}"),
            app,
            store,
            client: reqwest::Client::new(),
            db,
            shutdown: tx,
            server: Some(server),
            workers: Some(workers),
            extra_workers: Vec::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        self.store.create_tenant(name).await.expect("create tenant")
    }

    /// A new API key for `tenant` (stored hashed, as `grader admin key create` does).
    pub async fn key(&self, tenant: &Tenant, role: Role) -> String {
        let key = grader::cli::admin::generate_key();
        self.store
            .create_api_key(
                &tenant.id,
                role,
                &grader::http::auth::key_hash(&key),
                &key[..8],
            )
            .await
            .expect("create api key");
        key
    }

    pub async fn tenant_with_key(&self, name: &str, role: Role) -> (Tenant, String) {
        let t = self.tenant(name).await;
        let k = self.key(&t, role).await;
        (t, k)
    }

    /// POST JSON (serialized from `body`) with a bearer key.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.post_raw(path, key, body.to_string().into_bytes())
            .await
    }

    /// POST raw bytes labelled as JSON with a bearer key.
    pub async fn post_raw(&self, path: &str, key: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send request")
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("send request")
    }

    /// Polls `GET /v1/submissions/{id}` until its status is one of `until`, or panics after
    /// `timeout`.
    pub async fn wait_status(
        &self,
        key: &str,
        id: &str,
        until: &[&str],
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let resp = self.get(&format!("/v1/submissions/{id}"), key).await;
            assert_eq!(resp.status(), 200, "GET submission {id}");
            let v: Value = resp.json().await.expect("submission JSON");
            let status = v["status"].as_str().unwrap_or_default().to_string();
            if until.contains(&status.as_str()) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("submission {id} still {status} after {timeout:?}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_graded(&self, key: &str, id: &str) -> Value {
        self.wait_status(key, id, &["graded"], Duration::from_secs(30))
            .await
    }

    /// Starts `n` more workers of this app (e.g. after staging a job by hand).
    pub fn start_workers(&mut self, n: usize) {
        for i in 0..n {
            let name = format!("{}/extra{i}", self.app.instance);
            self.extra_workers.push(tokio::spawn(worker::run(
                self.app.clone(),
                name,
                self.shutdown.subscribe(),
            )));
        }
    }

    /// Signals shutdown (as SIGTERM does) and waits for the server and every worker to stop;
    /// the database stays for inspection.
    pub async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        if let Some(w) = self.workers.take() {
            w.join().await;
        }
        for h in self.extra_workers.drain(..) {
            let _ = h.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// Boxed future helper for tests that run one body against both backends.
pub type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A transcript the offline judge grades (speaker-labelled system design answer).
pub fn transcript() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/transcripts/system_design_strong.txt"),
    )
    .expect("read the example transcript")
}

/// A valid `POST /v1/submissions` body.
pub fn submission_body() -> Value {
    serde_json::json!({
        "stage": "system_design",
        "transcript": transcript(),
        "external_id": "app-1",
    })
}
