//! `grader serve`: the HTTP API and the grading workers in one process.
//!
//! Start-up: config → store (`GRADER_DATABASE_URL`, migrated; safe with several replicas
//! starting at once) → prompt registry → judge → bind `GRADER_ADDR` (port 0 picks a free
//! port) → print `listening on http://ADDR` to stderr once bound → workers → serve.
//!
//! Shutdown on SIGTERM or Ctrl-C: the listener stops accepting and in-flight requests
//! finish; workers stop leasing, in-flight gradings get `service.shutdown_grace_secs` to
//! finish, then their jobs are released for another replica. A second signal exits at once.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::judge::pipeline::Judge;
use crate::prompts::Registry;
use crate::service::{self, worker, App};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address (overrides `addr` and GRADER_ADDR), e.g. 127.0.0.1:0.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Grading workers in this process (overrides `service.workers`); 0 only accepts work.
    #[arg(long)]
    pub workers: Option<usize>,
}

pub fn run(config: Option<&Path>, args: &ServeArgs) -> anyhow::Result<i32> {
    let mut cfg = Config::load(config)?;
    if let Some(addr) = &args.addr {
        cfg.addr = addr.clone();
    }
    if let Some(n) = args.workers {
        cfg.service.workers = n;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(cfg))?;
    Ok(0)
}

/// Builds the app from `cfg` the way `grader serve` does (store migrated, registry loaded).
pub async fn build_app(cfg: Config) -> anyhow::Result<Arc<App>> {
    let store = crate::store::open(&cfg.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                crate::store::redact_url(&cfg.database_url)
            )
        })?;
    let registry = Registry::load(&cfg.prompts_dir)
        .with_context(|| format!("loading prompts from {}", cfg.prompts_dir.display()))?;
    if registry.list().is_empty() {
        tracing::warn!(
            "no judge prompts in {}; /readyz will answer 503",
            cfg.prompts_dir.display()
        );
    }
    // The L2 response cache lives in the shared store, so replicas share paid answers; so
    // does usage (the store's `usage` table, instead of `budgets.ledger_path`), so budget caps
    // and `grader usage` hold across replicas and restarts.
    let judge = Judge::from_config(&cfg)
        .context("setting up the judge")?
        .with_cache(Arc::new(crate::cache::StoreCache::new(store.clone())))
        .with_usage_ledger(Arc::new(crate::budget::StoreLedger::new(store.clone())));
    Ok(Arc::new(App::new(
        cfg,
        store,
        Arc::new(registry),
        Arc::new(judge),
        service::instance_name(),
    )))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let app = build_app(cfg).await?;
    let listener = tokio::net::TcpListener::bind(&app.config.addr)
        .await
        .with_context(|| format!("binding {}", app.config.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    eprintln!("listening on http://{addr}");
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("shutting down: finishing requests and in-flight gradings");
        let _ = tx.send(true);
        shutdown_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    let workers = worker::spawn(app.clone(), rx.clone());
    crate::http::serve(app, listener, wait_for(rx))
        .await
        .context("serving HTTP")?;
    workers.join().await;
    Ok(())
}

/// Resolves once the channel holds `true` or its sender is gone.
pub async fn wait_for(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
