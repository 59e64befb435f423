//! Persistence: one [`Store`] trait with SQLite and PostgreSQL implementations, chosen by
//! `GRADER_DATABASE_URL`. The only module that knows SQL. Every row carries its tenant and
//! every read that takes an id also takes the tenant, so one tenant's id is another's 404.
//!
//! Durability rule: a submission and its job are written in ONE transaction, and the caller
//! answers 202 only after that commit; nothing that was accepted is lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::budget::{Spent, UsageFilter, UsageRecord, UsageSummaryRow};
use crate::domain::{GradeReport, Stage, Submission};

mod common;
pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store a database URL names, without migrating: `sqlite://PATH` (the file is
/// created if missing), `sqlite::memory:`, or `postgres://...` / `postgresql://...`. Anything
/// else is [`StoreError::UnsupportedUrl`], so a typo in `GRADER_DATABASE_URL` fails at start-up
/// instead of silently using a different database.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// [`connect`] then [`Store::migrate`]: what `grader serve` and `grader admin` do at start-up.
/// Safe when several processes start at once (see `migrate`).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let store = connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// A database URL with any password replaced by `***`, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, _password)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}{tail}");
            }
        }
    }
    url.to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Who may do what. `ingest` posts work, `grader` reviews and adds human grades, `admin`
/// manages the tenant. Higher roles include the lower ones' rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ingest,
    Grader,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Grader => "grader",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "ingest" => Some(Role::Ingest),
            "grader" => Some(Role::Grader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Per-tenant settings, stored as JSON so new settings need no migration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// Where finished GradeReports are POSTed (signed with Standard Webhooks).
    pub callback_url: Option<String>,
    /// `whsec_...` secret for signing callbacks.
    pub callback_secret: Option<String>,
    /// Graders see AI scores only after submitting their own (default on).
    pub blind_review: Option<bool>,
    /// Keep the original (unredacted) transcript in the store.
    pub keep_original: Option<bool>,
    /// Human-oversight stop switch: every grading goes to human review.
    pub review_everything: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub settings: TenantSettings,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub role: Role,
    /// The first characters of the key, for display; the key itself is never stored.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    Queued,
    Grading,
    Graded,
    /// Failed more than the allowed attempts; `error` says why.
    Dead,
}

impl SubmissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionStatus::Queued => "queued",
            SubmissionStatus::Grading => "grading",
            SubmissionStatus::Graded => "graded",
            SubmissionStatus::Dead => "dead",
        }
    }
    /// The inverse of [`SubmissionStatus::as_str`] (e.g. for a `?status=` filter).
    pub fn parse(s: &str) -> Option<SubmissionStatus> {
        match s {
            "queued" => Some(SubmissionStatus::Queued),
            "grading" => Some(SubmissionStatus::Grading),
            "graded" => Some(SubmissionStatus::Graded),
            "dead" => Some(SubmissionStatus::Dead),
            _ => None,
        }
    }
}

/// A submission to store with its job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubmission {
    pub tenant_id: String,
    pub submission: Submission,
    /// `api`, `greenhouse`, `lever`, `ashby` or `standard`.
    pub source: String,
    /// The sender's delivery id (webhooks) or the caller's idempotency key: a second
    /// submission with the same (tenant, source, delivery id) returns the first one.
    pub delivery_id: Option<String>,
    /// Requested prompt version `id@version`, if any.
    pub prompt: Option<String>,
    /// sha256 of the raw request body, for the audit log.
    pub input_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub id: String,
    pub tenant_id: String,
    pub stage: Stage,
    pub status: SubmissionStatus,
    pub source: String,
    pub delivery_id: Option<String>,
    pub prompt: Option<String>,
    pub submission: Submission,
    pub report: Option<GradeReport>,
    pub attempts: u32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A job leased by a worker until `lease_until`; after that another worker may take it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    pub job_id: String,
    pub submission: SubmissionRecord,
    /// Attempts including this one.
    pub attempt: u32,
    pub worker: String,
    pub lease_until: DateTime<Utc>,
}

/// A person's grade for one submission: scores per dimension, flags, and, when it overrides
/// the AI, the reason. Stored beside the AI's report, never over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanGrade {
    pub id: String,
    pub tenant_id: String,
    pub submission_id: String,
    pub rater: String,
    pub scores: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub override_reason: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One AI-vs-human pair for calibration, with what produced the AI score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRow {
    pub submission_id: String,
    pub stage: Stage,
    pub prompt: String,
    pub model: String,
    pub dimension: String,
    pub rater: String,
    pub human: f64,
    pub ai: Option<f64>,
    pub graded_at: DateTime<Utc>,
}

/// A fitted calibration map of one tenant, stage, dimension and prompt version (`id@version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationMapRecord {
    pub tenant_id: String,
    pub stage: Stage,
    pub dimension: String,
    /// `id@version`
    pub prompt: String,
    pub map: crate::calibration::isotonic::IsotonicMap,
    /// How many (AI, human consensus) pairs it was fitted on.
    pub n_pairs: u32,
    pub fitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalibrationFilter {
    pub stage: Option<Stage>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// An append-only audit entry: every grading, every view and override by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub tenant_id: String,
    /// `key:<id>`, `worker:<name>`, `admin-cli`, ...
    pub actor: String,
    /// `submission.created`, `grading.completed`, `report.viewed`, `human_grade.added`, ...
    pub action: String,
    pub subject: Option<String>,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// One attempt to deliver a report to a tenant's callback URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackAttempt {
    pub tenant_id: String,
    pub submission_id: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Applies pending migrations; safe to call from several processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Readiness: the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- tenants, keys, secrets
    async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;
    async fn update_tenant_settings(
        &self,
        tenant_id: &str,
        settings: &TenantSettings,
    ) -> Result<(), StoreError>;
    /// Stores a key by its hash (sha256 hex of the full key).
    async fn create_api_key(
        &self,
        tenant_id: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<ApiKeyRecord, StoreError>;
    async fn api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<(ApiKeyRecord, Tenant)>, StoreError>;
    async fn set_webhook_secret(
        &self,
        tenant_id: &str,
        source: &str,
        secret: &str,
    ) -> Result<(), StoreError>;
    async fn webhook_secret(
        &self,
        tenant_id: &str,
        source: &str,
    ) -> Result<Option<String>, StoreError>;

    // --- submissions and the job queue
    /// Stores the submission and its job in one transaction. Returns the record and whether
    /// it was created (`false`: an earlier delivery with the same delivery id won, and its
    /// record is returned). Returns only after the commit, so a 202 may follow at once.
    /// Concurrent calls are group-committed (one commit carries many); one bad submission
    /// (e.g. an unknown tenant: `NotFound`) fails alone.
    async fn enqueue(&self, new: NewSubmission) -> Result<(SubmissionRecord, bool), StoreError>;
    async fn submission(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<SubmissionRecord>, StoreError>;
    /// Newest first; `status` filters when given.
    async fn list_submissions(
        &self,
        tenant_id: &str,
        status: Option<SubmissionStatus>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<SubmissionRecord>, StoreError>;
    /// Leases the oldest runnable job: queued and due, or leased with an expired lease (a dead
    /// worker's). PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: `BEGIN IMMEDIATE`.
    /// Counts the attempt and sets the submission to `grading`. `None` when nothing is due.
    async fn lease_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<LeasedJob>, StoreError>;
    /// Stores the report and finishes the job, only if `worker` still holds the lease.
    /// Returns false when the lease was lost (another worker owns the job now), and then
    /// writes nothing. In the same transaction it appends the `grading.completed` audit
    /// entry (actor `worker:<worker>`; detail: report_id, prompt `id@version`,
    /// prompt_sha256, model, tier, samples, input_sha256, output_sha256, status,
    /// recommendation, needs_review), so callers must not audit the grading again.
    async fn complete_job(
        &self,
        job_id: &str,
        worker: &str,
        report: &GradeReport,
    ) -> Result<bool, StoreError>;
    /// Stores a submission graded synchronously (`POST /v1/grade`): the submission as
    /// `graded` with its report, no job, and the `grading.completed` audit entry (actor
    /// `sync:<source>`, the `complete_job` detail plus `"sync": true`), in one transaction.
    /// The submission's id is `report.id`, so the report's id is also the submission's.
    /// Idempotent like `enqueue`: when (tenant, source, delivery id) is taken, the earlier
    /// record is returned and nothing is written. `NotFound` for an unknown tenant,
    /// `Conflict` when a submission with the report's id exists.
    async fn store_graded(
        &self,
        new: NewSubmission,
        report: &GradeReport,
    ) -> Result<SubmissionRecord, StoreError>;
    /// Jobs not finished (queued or leased), counted on the queue's partial index; cheap
    /// enough for every metrics scrape.
    async fn queue_depth(&self) -> Result<u64, StoreError>;
    /// Records a failed attempt: re-queued to run after `retry_in`, or dead when `None`. The
    /// submission's `error` shows the reason either way (`dead` with the final one). Does
    /// nothing when `worker` no longer holds the lease: the job is someone else's now.
    async fn fail_job(
        &self,
        job_id: &str,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), StoreError>;
    /// Gives a leased job back (graceful shutdown) without counting an attempt; it can be
    /// leased again at once. Does nothing when `worker` no longer holds the lease.
    async fn release_job(&self, job_id: &str, worker: &str) -> Result<(), StoreError>;

    // --- human grades and calibration
    /// `NotFound` when the submission does not exist for `grade.tenant_id` (another
    /// tenant's submission included); `Conflict` when `grade.id` is taken.
    async fn add_human_grade(&self, grade: &HumanGrade) -> Result<(), StoreError>;
    /// Oldest first.
    async fn human_grades(
        &self,
        tenant_id: &str,
        submission_id: &str,
    ) -> Result<Vec<HumanGrade>, StoreError>;
    /// One row per (human grade, dimension the person scored) of graded submissions, with
    /// the AI's score for that dimension (`None` if it left it unscored or has no such
    /// dimension). Filters: `stage`; `prompt` as `id@version` or a bare `id` (any version);
    /// `model` exact; `since`/`until` inclusive bounds on the human grade's time. Submissions
    /// without a report are left out. Ordered by the human grade's time.
    async fn calibration_rows(
        &self,
        tenant_id: &str,
        filter: &CalibrationFilter,
    ) -> Result<Vec<CalibrationRow>, StoreError>;

    /// Inserts or replaces the map of (tenant, stage, dimension, prompt); `NotFound` for an
    /// unknown tenant.
    async fn put_calibration_map(&self, map: &CalibrationMapRecord) -> Result<(), StoreError>;
    /// The tenant's maps for one stage and prompt version (`id@version`), by dimension.
    async fn calibration_maps(
        &self,
        tenant_id: &str,
        stage: Stage,
        prompt: &str,
    ) -> Result<Vec<CalibrationMapRecord>, StoreError>;
    /// Adds several human grades in one transaction: all or none. Each is checked like
    /// [`Store::add_human_grade`] (`NotFound` naming the first missing submission).
    async fn add_human_grades(&self, grades: &[HumanGrade]) -> Result<(), StoreError>;

    // --- usage accounting (budget caps and `grader usage`, shared by every replica)
    /// Appends what gradings spent, all records in one transaction.
    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
    /// Spend in USD of `tenant` and of all tenants on the UTC `day` and in its month.
    async fn usage_spent(&self, tenant: &str, day: NaiveDate) -> Result<Spent, StoreError>;
    /// Totals per (prompt version, model), ordered by prompt then model (byte order), over
    /// the records `filter` selects (tenant; `since`/`until` inclusive UTC days).
    async fn usage_summary(&self, filter: &UsageFilter)
        -> Result<Vec<UsageSummaryRow>, StoreError>;

    // --- callbacks, audit, response cache
    /// `NotFound` when the submission does not exist for `attempt.tenant_id`.
    async fn record_callback(&self, attempt: &CallbackAttempt) -> Result<(), StoreError>;
    /// The delivery log of one submission, by attempt number.
    async fn callbacks(
        &self,
        tenant_id: &str,
        submission_id: &str,
    ) -> Result<Vec<CallbackAttempt>, StoreError>;
    /// Appends; there is no way to change or delete an entry (the schema refuses it too).
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The tenant's latest `limit` entries, newest first (append order, not `at`).
    async fn audit_log(&self, tenant_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// L2 of the response cache: content-addressed, shared by replicas.
    async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Inserts or replaces the value under `key`.
    async fn cache_put(
        &self,
        key: &str,
        prompt_sha256: &str,
        model: &str,
        value: &str,
    ) -> Result<(), StoreError>;
    /// Deletes cached responses of one prompt version; returns how many.
    async fn cache_purge_prompt(&self, prompt_sha256: &str) -> Result<u64, StoreError>;
}
