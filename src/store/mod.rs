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
use crate::domain::{FlagKind, GradeReport, Stage, Submission};

/// Binds a [`ReportSummary`]'s seven values to a query, in the order of the summary columns
/// (migration 0005): `report_prompt, report_prompt_id, injection_suspected, red_flags,
/// needs_review, min_confidence, escalated`. The same types bind on both backends.
macro_rules! bind_summary {
    ($query:expr, $summary:expr) => {{
        let s: &$crate::store::ReportSummary = $summary;
        $query
            .bind(&s.prompt)
            .bind(&s.prompt_id)
            .bind(s.injection_suspected)
            .bind(s.red_flags)
            .bind(s.needs_review)
            .bind(s.min_confidence)
            .bind(s.escalated)
    }};
}

/// Binds the seven values every `submissions` insert starts with, in this column order:
/// `id, tenant_id, stage, source, delivery_id, prompt, submission` (`$1`–`$7` of a
/// single-row insert). The same types bind on both backends.
macro_rules! bind_submission_head {
    ($query:expr, $item:expr) => {{
        let item: &$crate::store::common::PendingEnqueue = $item;
        $query
            .bind(&item.id)
            .bind(&item.new.tenant_id)
            .bind(item.new.submission.stage.as_str())
            .bind(&item.new.source)
            .bind(&item.new.delivery_id)
            .bind(&item.new.prompt)
            .bind(&item.body)
    }};
}

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

/// An idempotency key held by one synchronous grading (`POST /v1/grade`) while it grades:
/// a `submissions` row with status `grading`, no job and no report, whose `token` names the
/// current owner and which may be taken over after `expires_at` (migration 0006). The owner
/// replaces it with the graded row ([`Store::store_graded`]) or gives it back
/// ([`Store::release_claim`]). Job workers never see claims: they have no job.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyClaim {
    /// The claim row's id (not the report's: the graded row that replaces it has that).
    pub submission_id: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// The row holding a (tenant, source, delivery id): the submission, the sha256 of the request
/// body that created it, and, while it is a claim in progress, the claim.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHolder {
    pub record: SubmissionRecord,
    pub input_sha256: String,
    pub claim: Option<KeyClaim>,
}

/// What [`Store::claim_delivery`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The caller inserted the claim and owns the grading.
    Claimed(KeyClaim),
    /// The key is held: by a claim in progress, a graded submission, or an asynchronous one.
    Taken(Box<KeyHolder>),
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

/// A callback delivery leased from the outbox by one delivery loop until `lease_until`
/// (after that another loop may take it: the holder died mid-POST).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCallback {
    /// The outbox row's id.
    pub id: String,
    pub tenant_id: String,
    pub submission_id: String,
    /// Attempts made before this one; this one is `attempts + 1` in the delivery log.
    pub attempts: u32,
    pub worker: String,
    pub lease_until: DateTime<Utc>,
}

/// What becomes of a leased callback delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackNext {
    /// The receiver accepted it: the delivery is done.
    Delivered,
    /// Try again after this delay (the row stays pending, durable across restarts).
    Retry(Duration),
    /// Give up (attempts exhausted, or the tenant's callback setup cannot work).
    Failed,
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
    /// writes nothing. When the tenant has a `callback_url`, the same transaction adds the
    /// report's delivery to the callback outbox (due at once; see
    /// [`Store::lease_callbacks`]), so a report is never stored without its pending
    /// delivery. In the same transaction it appends the `grading.completed` audit
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
    /// record is returned and nothing is written; except that a claim on it
    /// ([`Store::claim_delivery`], whoever's) is replaced in the same transaction: deleted and
    /// the graded row inserted, so the key always has exactly one row, and the first grading
    /// to finish is the one stored (a claim that was taken over after expiring is superseded;
    /// its owner then finds this report and answers it). `NotFound` for an unknown tenant,
    /// `Conflict` when a submission with the report's id exists.
    async fn store_graded(
        &self,
        new: NewSubmission,
        report: &GradeReport,
    ) -> Result<SubmissionRecord, StoreError>;
    /// Claims `new`'s (tenant, source, delivery id) for a synchronous grading until now +
    /// `lease`: inserts the submission as a claim ([`KeyClaim`]: status `grading`, one attempt,
    /// no job), atomically on the unique delivery key, so of concurrent callers on any replica
    /// exactly one gets `Claimed`; the others get the holder (`Taken`). `NotFound` for an
    /// unknown tenant. `new.delivery_id` must be set.
    async fn claim_delivery(
        &self,
        new: &NewSubmission,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError>;
    /// The submission holding (tenant, source, delivery id) — a webhook delivery id or an
    /// idempotency key — with the sha256 of the request body that created it, so a caller
    /// can tell a retry (same body) from a reused key (different body), and the claim, if the
    /// holder is one: what a request waiting for another's grading polls.
    async fn delivery_holder(
        &self,
        tenant_id: &str,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<KeyHolder>, StoreError>;
    /// Takes over `expired`, a claim whose lease has run out (its owner died or hung): only
    /// while the row is still that claim (same token) and expired, so of several takers one
    /// wins. The winner gets the claim with a new token, expiry now + `lease` and one more
    /// attempt counted; everyone else `None` (then read the holder again).
    async fn take_over_claim(
        &self,
        tenant_id: &str,
        expired: &KeyClaim,
        lease: Duration,
    ) -> Result<Option<KeyClaim>, StoreError>;
    /// Gives a claim back (its grading failed): deletes the row if it is still this claim.
    /// Returns whether it was; `false` means it was taken over or replaced meanwhile.
    async fn release_claim(&self, tenant_id: &str, claim: &KeyClaim) -> Result<bool, StoreError>;
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
    /// Leases up to `limit` due deliveries of the callback outbox (pending, next attempt
    /// due) to `worker` for `lease`, oldest due first: PostgreSQL `FOR UPDATE SKIP LOCKED`
    /// (replicas take different rows), SQLite `BEGIN IMMEDIATE`. The lease moves the next
    /// attempt to the lease's end, so a holder that dies gives the row back by not settling it.
    async fn lease_callbacks(
        &self,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<PendingCallback>, StoreError>;
    /// Settles one attempt of a leased delivery in one transaction: appends `attempt` to the
    /// delivery log and marks the row delivered, failed, or pending again after the retry
    /// delay with one more attempt counted. Returns false, writing nothing, when `worker`
    /// no longer holds the lease.
    async fn finish_callback(
        &self,
        delivery: &PendingCallback,
        attempt: &CallbackAttempt,
        next: CallbackNext,
    ) -> Result<bool, StoreError>;
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

    // --- oversight and bias audit (http::oversight, http::bias)
    /// The tenant's audit entries about one subject with one action, oldest first (append
    /// order). Decisions (`decision.recorded`) are read back through this.
    async fn audit_entries(
        &self,
        tenant_id: &str,
        subject: &str,
        action: &str,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// The graded submissions of `tenant_id` among `ids`, each with its human grades (oldest
    /// first), in no particular order. Ids that are unknown, another tenant's, or not graded
    /// yet are left out. Read in chunks, so a bias audit over thousands of ids is a handful
    /// of queries rather than one per id.
    async fn graded_with_human_grades(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<(SubmissionRecord, Vec<HumanGrade>)>, StoreError>;

    // --- review UI (web::queue)
    /// One page of the review queue: the tenant's submissions that pass `filter`, ordered
    /// by [`QueueItem::priority`], then newest first (then id, so pages are stable).
    /// Computed in SQL from the report's summary columns ([`ReportSummary`], migration
    /// 0005), never from the report itself, so paging is exact and a page is a scan of the
    /// tenant's index entries (SQLite: a covering index; PostgreSQL: the (tenant, created)
    /// index and the small heap rows) plus a sort; human grades are counted for the page's
    /// rows only.
    async fn review_queue(
        &self,
        tenant_id: &str,
        filter: &QueueFilter,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<QueueItem>, StoreError>;
}

/// What the review queue needs of a report, stored in `submissions` beside the report
/// (migration 0005) by every statement that stores one, so a queue page reads these columns
/// instead of the report. Computed here once for both backends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReportSummary {
    /// `id@version` of the report's prompt.
    pub prompt: String,
    pub prompt_id: String,
    pub injection_suspected: bool,
    /// Raised flags of kind red.
    pub red_flags: i32,
    pub needs_review: bool,
    /// The lowest dimension confidence; `None` without scores. Non-finite confidences are
    /// left out, as they are stored as JSON `null` (and the migration's backfill skips them).
    pub min_confidence: Option<f64>,
    pub escalated: bool,
}

impl ReportSummary {
    pub(crate) fn of(report: &GradeReport) -> ReportSummary {
        let reds = report
            .flags
            .iter()
            .filter(|f| f.kind == FlagKind::Red)
            .count();
        ReportSummary {
            prompt: format!("{}@{}", report.prompt.id, report.prompt.version),
            prompt_id: report.prompt.id.clone(),
            injection_suspected: report.guard.injection_suspected,
            red_flags: i32::try_from(reds).unwrap_or(i32::MAX),
            needs_review: report.needs_review,
            min_confidence: report
                .scores
                .iter()
                .map(|s| s.confidence)
                .filter(|c| c.is_finite())
                .reduce(f64::min),
            escalated: report.judge.escalated,
        }
    }
}

/// Which submissions the review queue shows, besides the tenant (`Store::review_queue`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFilter {
    pub stage: Option<Stage>,
    /// `id@version`, or a bare prompt `id` (any version): the report's prompt, else the one
    /// requested at submission.
    pub prompt: Option<String>,
    pub status: Option<QueueStatus>,
    /// The person whose own grades [`QueueItem::graded_by_rater`] reports.
    pub rater: Option<String>,
    /// A report whose lowest dimension confidence is below this is "low confidence".
    pub low_confidence: f64,
}

/// The queue's status filter: a submission status, or where the review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    Submission(SubmissionStatus),
    /// The report asks for a person (`needs_review`).
    NeedsReview,
    /// Graded and no person has graded it yet.
    Unreviewed,
    /// At least one person has graded it.
    Reviewed,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Submission(s) => s.as_str(),
            QueueStatus::NeedsReview => "needs_review",
            QueueStatus::Unreviewed => "unreviewed",
            QueueStatus::Reviewed => "reviewed",
        }
    }
    pub fn parse(s: &str) -> Option<QueueStatus> {
        match s {
            "needs_review" => Some(QueueStatus::NeedsReview),
            "unreviewed" => Some(QueueStatus::Unreviewed),
            "reviewed" => Some(QueueStatus::Reviewed),
            other => SubmissionStatus::parse(other).map(QueueStatus::Submission),
        }
    }
}

/// One row of the review queue: what a person needs to triage, without the transcript or
/// the AI's scores (the queue must not anchor a blind grader).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    pub id: String,
    pub stage: Stage,
    pub status: SubmissionStatus,
    /// `id@version` of the report's prompt, else the requested prompt, if any.
    pub prompt: Option<String>,
    pub created_at: DateTime<Utc>,
    pub injection_suspected: bool,
    pub red_flags: u32,
    pub needs_review: bool,
    pub low_confidence: bool,
    pub escalated: bool,
    /// Human grades of the submission, by anyone.
    pub human_grades: u32,
    pub graded_by_rater: bool,
    /// 0 = injection suspected, 1 = red flags, 2 = needs review, 3 = low confidence,
    /// 4 = escalated, 5 = the rest: the queue's first sort key (then newest first).
    pub priority: u8,
}
