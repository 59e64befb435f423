//! Grading workers: `service.workers` loops per process, each leasing one job at a time from
//! the store's queue, grading it with the app's [`Judge`](crate::judge::pipeline::Judge) and
//! storing the report.
//!
//! * **Leases, not locks.** A job is leased for `service.lease_secs`; if this process dies the
//!   lease expires and any worker (here or in another replica) takes the job again. Nothing
//!   extends the lease while grading: the default lease (300 s) is far above a grading's
//!   worst case (provider timeout × retries × samples). Should a grading outlive its lease
//!   anyway, a second worker may grade the same job; `complete_job` only stores the report of
//!   the worker that still holds the lease, so at most one report is ever kept (the loser's
//!   work is discarded and counted in `grader_leases_lost_total`).
//! * **Failures.** A retryable judge error (the provider failed after the judge's own bounded
//!   retries) re-queues the job with exponential backoff and jitter
//!   (`service.retry_base_ms`, doubling, capped at `service.retry_max_ms`); after
//!   `service.max_attempts` attempts, or at once for an error no retry can fix (the prompt no
//!   longer exists, the transcript exceeds the model's context), the job is dead-lettered with
//!   the reason, which `GET /v1/submissions/{id}` shows.
//! * **Shutdown.** When the shutdown signal flips, workers stop leasing; a grading in flight
//!   may finish within `service.shutdown_grace_secs`, after which its job is released
//!   (re-queued without counting an attempt) so another replica picks it up at once instead
//!   of waiting for the lease to expire.
//! * **Callbacks** are not the workers' business: `complete_job` queues the report's delivery
//!   in the store's outbox with the report, and the process's delivery loop (spawned with the
//!   workers, see [`super::callback::run`]) sends it, so a slow receiver never holds a worker
//!   and a restart never drops a pending delivery.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{callback, App};
use crate::judge::pipeline::JudgeError;
use crate::store::LeasedJob;

/// The longest a worker waits between polls after repeated store errors.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(10);

/// The running workers of one process.
pub struct Workers {
    /// The grading workers, then the callback delivery loop.
    handles: Vec<JoinHandle<()>>,
    /// How many of `handles` are grading workers.
    graders: usize,
}

impl Workers {
    /// Waits until every worker has stopped (after the shutdown signal, in-flight gradings
    /// finished or released).
    pub async fn join(self) {
        for h in self.handles {
            if let Err(e) = h.await {
                tracing::error!("grading worker ended abnormally: {e}");
            }
        }
    }

    /// Grading workers (the callback delivery loop not counted).
    pub fn len(&self) -> usize {
        self.graders
    }

    pub fn is_empty(&self) -> bool {
        self.graders == 0
    }
}

/// Spawns `app.config.service.workers` workers named `{instance}/w{i}` and the process's
/// callback delivery loop `{instance}/callbacks` (always, even with no workers: another
/// replica's reports may be waiting for delivery). They run until `shutdown` holds `true`
/// (or its sender is dropped); [`Workers::join`] waits for all of them.
pub fn spawn(app: Arc<App>, shutdown: watch::Receiver<bool>) -> Workers {
    let mut handles: Vec<JoinHandle<()>> = (0..app.config.service.workers)
        .map(|i| {
            let name = format!("{}/w{i}", app.instance);
            tokio::spawn(run(app.clone(), name, shutdown.clone()))
        })
        .collect();
    let graders = handles.len();
    let name = format!("{}/callbacks", app.instance);
    handles.push(tokio::spawn(callback::run(app.clone(), name, shutdown)));
    Workers { handles, graders }
}

/// True once shutdown was requested; a dropped sender counts as a request.
pub(super) fn stopping(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

/// Sleeps `d`, waking early when shutdown is requested.
pub(super) async fn idle(d: Duration, rx: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = rx.changed() => {}
    }
}

/// Resolves `grace` after shutdown is requested; pending forever before that.
async fn grace_expired(mut rx: watch::Receiver<bool>, grace: Duration) {
    loop {
        if *rx.borrow_and_update() {
            break;
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    tokio::time::sleep(grace).await;
}

/// One worker's loop: lease, grade, store; sleep when the queue is empty.
pub async fn run(app: Arc<App>, name: String, mut shutdown: watch::Receiver<bool>) {
    let svc = &app.config.service;
    let poll = Duration::from_millis(svc.poll_interval_ms.max(1));
    let lease = Duration::from_secs(svc.lease_secs.max(1));
    let mut errors = 0u32;
    tracing::debug!(worker = %name, "grading worker started");
    while !stopping(&shutdown) {
        match app.store.lease_job(&name, lease).await {
            Ok(Some(job)) => {
                errors = 0;
                process(&app, &name, job, &shutdown).await;
            }
            Ok(None) => {
                errors = 0;
                idle(poll, &mut shutdown).await;
            }
            Err(e) => {
                errors = errors.saturating_add(1);
                app.metrics
                    .worker_store_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(worker = %name, "cannot lease a job: {e}");
                let backoff = poll
                    .saturating_mul(1u32 << errors.min(10))
                    .min(MAX_ERROR_BACKOFF);
                idle(backoff, &mut shutdown).await;
            }
        }
    }
    tracing::debug!(worker = %name, "grading worker stopped");
}

/// Whether another attempt could succeed: provider failures (outage, rate limit, timeout)
/// may pass; a missing prompt, a stage mismatch or an oversized input will not.
fn retryable(e: &JudgeError) -> bool {
    matches!(e, JudgeError::Provider(_))
}

/// Grades one leased job and records the outcome.
async fn process(app: &Arc<App>, worker: &str, job: LeasedJob, shutdown: &watch::Receiver<bool>) {
    let svc = &app.config.service;
    let sub = &job.submission;
    let max_attempts = svc.max_attempts.max(1);
    let prompt = match app.prompt_for(sub.stage, sub.prompt.as_deref()) {
        Ok(p) => p,
        Err(msg) => {
            let reason = format!("cannot select a judge prompt: {msg}");
            dead(app, worker, &job, &reason).await;
            return;
        }
    };
    let started = Instant::now();
    app.metrics
        .gradings_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let grace = Duration::from_secs(svc.shutdown_grace_secs);
    let outcome = tokio::select! {
        r = app.judge.grade(&sub.submission, prompt) => Some(r),
        _ = grace_expired(shutdown.clone(), grace) => None,
    };
    app.metrics
        .gradings_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    match outcome {
        None => {
            tracing::info!(worker, submission = %sub.id, "shutdown grace over; releasing the job");
            match app.store.release_job(&job.job_id, worker).await {
                Ok(()) => {
                    app.metrics
                        .gradings_released
                        .fetch_add(1, Ordering::Relaxed);
                }
                // The lease will expire and the job run again elsewhere.
                Err(e) => tracing::warn!(worker, "cannot release job {}: {e}", job.job_id),
            }
        }
        Some(Ok(mut report)) => {
            app.metrics.grading_latency.observe(started.elapsed());
            // Read once per job: settings may change while the service runs.
            let tenant = match app.store.tenant(&sub.tenant_id).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(worker, submission = %sub.id, "cannot load the tenant: {e}");
                    None
                }
            };
            if let Some(t) = &tenant {
                super::apply_tenant_policy(&mut report, &t.settings);
            }
            // A calibration lookup that fails leaves the raw scores only; the grading stands.
            if let Err(e) =
                super::calibrate_report(app.store.as_ref(), &sub.tenant_id, &mut report).await
            {
                tracing::warn!(worker, submission = %sub.id, "cannot calibrate the report: {e}");
            }
            match app.store.complete_job(&job.job_id, worker, &report).await {
                // A callback, if the tenant has one, was queued with the report.
                Ok(true) => {
                    app.metrics
                        .gradings_completed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {
                    app.metrics.leases_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker, submission = %sub.id, "lease lost before completion; another worker owns the job");
                }
                Err(e) => {
                    // Not stored: the lease expires and the job is graded again.
                    app.metrics
                        .worker_store_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(worker, submission = %sub.id, "cannot store the report: {e}");
                }
            }
        }
        Some(Err(e)) => {
            let reason = format!("attempt {} of {max_attempts}: {e}", job.attempt);
            if !retryable(&e) || job.attempt >= max_attempts {
                dead(app, worker, &job, &reason).await;
            } else {
                let retry_in = callback::backoff(
                    Duration::from_millis(svc.retry_base_ms),
                    Duration::from_millis(svc.retry_max_ms),
                    job.attempt,
                );
                tracing::warn!(worker, submission = %sub.id, "grading failed, retrying in {retry_in:?}: {reason}");
                match app
                    .store
                    .fail_job(&job.job_id, worker, &reason, Some(retry_in))
                    .await
                {
                    Ok(()) => {
                        app.metrics.gradings_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(
                        worker,
                        "cannot record the failure of job {}: {e}",
                        job.job_id
                    ),
                }
            }
        }
    }
}

/// Dead-letters the job with `reason` (shown by `GET /v1/submissions/{id}`).
async fn dead(app: &App, worker: &str, job: &LeasedJob, reason: &str) {
    tracing::error!(worker, submission = %job.submission.id, "grading dead-lettered: {reason}");
    match app.store.fail_job(&job.job_id, worker, reason, None).await {
        Ok(()) => {
            app.metrics.gradings_dead.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::error!(worker, "cannot dead-letter job {}: {e}", job.job_id),
    }
}
