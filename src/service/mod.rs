//! The running service's shared state and background work: the job workers that grade
//! queued submissions and the callback deliveries. HTTP handlers (`http`) and the workers
//! both hold an `Arc<App>`; neither knows the other's internals.

use std::sync::Arc;

use crate::config::Config;
use crate::judge::pipeline::Judge;
use crate::prompts::Registry;
use crate::store::Store;

pub mod calibration;
pub mod callback;
pub mod metrics;
pub mod worker;

pub use metrics::Metrics;

/// Everything a request handler or a worker needs, built once at start-up.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub judge: Arc<Judge>,
    /// Name of this process for job leases and the audit log (`host:pid`).
    pub instance: String,
    /// Counters and histograms for `GET /metrics`, written by handlers and workers.
    pub metrics: Arc<Metrics>,
    /// One HTTP client for callback deliveries, so connections to a tenant's receiver are
    /// pooled across reports.
    pub http_client: reqwest::Client,
}

impl App {
    /// Builds the shared state with fresh metrics and the callback client; `instance` is
    /// [`instance_name`] unless a test wants to tell two in-process apps apart.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        judge: Arc<Judge>,
        instance: String,
    ) -> App {
        let http_client = callback::client(&config);
        App {
            config,
            store,
            registry,
            judge,
            instance,
            metrics: Arc::new(Metrics::new()),
            http_client,
        }
    }

    /// The prompt version to grade `stage` with: the requested one (`id` or `id@version`),
    /// else the stage's pin in the config, else the latest published version. Shares
    /// [`crate::cli::grade::select_prompt`] with the CLI so both pick the same version.
    pub fn prompt_for(
        &self,
        stage: crate::domain::Stage,
        requested: Option<&str>,
    ) -> Result<&crate::prompts::PromptVersion, String> {
        crate::cli::grade::select_prompt(&self.registry, &self.config, stage, requested)
            .map_err(|e| format!("{e:#}"))
    }
}

/// `host:pid`: unique among live processes, readable in the audit log and in job leases.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// The review reason added when a tenant has switched on `review_everything`.
pub const REVIEW_EVERYTHING_REASON: &str =
    "the tenant requires a person to review every grading (review_everything)";

/// Applies the tenant's human-oversight settings to a finished report before it is stored or
/// returned: with `review_everything` on, every report needs review, whatever its scores.
/// (The stop switch a deployer must have under the EU AI Act's human-oversight duty.)
pub fn apply_tenant_policy(
    report: &mut crate::domain::GradeReport,
    settings: &crate::store::TenantSettings,
) {
    if settings.review_everything == Some(true) {
        report.needs_review = true;
        if !report
            .review_reasons
            .iter()
            .any(|r| r == REVIEW_EVERYTHING_REASON)
        {
            report
                .review_reasons
                .push(REVIEW_EVERYTHING_REASON.to_string());
        }
    }
}

/// Fills `calibrated` on every scored dimension of `report` that has a calibration map for
/// the report's tenant, stage and prompt version (`id@version`), using the isotonic map
/// fitted by `POST /v1/calibration/refit`. The raw `score` is left as it is, so the report
/// shows both. Dimensions without a map (or unscored) keep `calibrated = None`. Used by the
/// workers and by the synchronous route, after grading and before storing.
/// Returns how many dimensions were calibrated.
pub async fn calibrate_report(
    store: &dyn Store,
    tenant_id: &str,
    report: &mut crate::domain::GradeReport,
) -> Result<usize, crate::store::StoreError> {
    let prompt = format!("{}@{}", report.prompt.id, report.prompt.version);
    let maps = store
        .calibration_maps(tenant_id, report.stage, &prompt)
        .await?;
    let mut n = 0;
    for d in &mut report.scores {
        d.calibrated = match (d.score, maps.iter().find(|m| m.dimension == d.dimension)) {
            (Some(raw), Some(m)) => {
                n += 1;
                Some(m.map.apply(raw))
            }
            _ => None,
        };
    }
    Ok(n)
}
