//! The PostgreSQL store: the shared database and job queue of several `grader serve`
//! replicas.
//!
//! **Concurrency.** Statements run at READ COMMITTED. Writes that touch several rows are
//! either one statement (data-modifying CTEs are atomic: `enqueue`, `lease_job`, `fail_job`,
//! `release_job`) or an explicit transaction (`complete_job`, `migrate`). Concurrent
//! enqueues are group-committed: up to 64 submissions with their jobs in one statement (see
//! `write_batch`), so the 202 path pays one WAL flush per batch, not per request. Workers lease with
//! `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`, so concurrent workers on any replica each take
//! a different job without waiting for one another. Every job update that belongs to a worker
//! is conditional on `leased_by = worker AND status = 'leased'`, so a worker whose lease ran
//! out and was taken over writes nothing. Migrations take a transaction-scoped advisory lock,
//! so replicas starting at once apply them exactly once.
//!
//! Timestamps are `TIMESTAMPTZ` (bound as `DateTime<Utc>`). Small JSON columns are `JSONB`,
//! the report `JSON` (cheaper to write, exact text kept) and, since migration 4, the
//! submission body `TEXT` (written from serde, never queried inside, so not even validated),
//! both compressed with lz4 where the server has it; they are read back as `::text`, so both
//! backends decode the same way.
//! The clock is the application's (`common::now`), as on SQLite, so both backends behave
//! identically; replicas are expected to run NTP-synchronised clocks, and leases are long
//! compared with any skew.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};

use super::common::{
    calibration_rows, completion_audit, from_json, insert_error, later, micros, new_id, now,
    parse_role, parse_stage, pending, to_i64, to_json, to_u32, to_u64, usage_bounds, usage_window,
    Answer, GroupCommit, Migration, PendingEnqueue, PendingGraded, RawCalibration, RawSubmission,
};
use super::{
    redact_url, ApiKeyRecord, AuditEntry, CalibrationFilter, CalibrationMapRecord, CalibrationRow,
    CallbackAttempt, CallbackNext, ClaimOutcome, HumanGrade, KeyClaim, KeyHolder, LeasedJob,
    NewSubmission, PendingCallback, ReportSummary, Role, Store, StoreError, SubmissionRecord,
    SubmissionStatus, Tenant, TenantSettings,
};
use crate::budget::{Spent, UsageFilter, UsageRecord, UsageSummaryRow};
use crate::domain::{GradeReport, Stage};
use chrono::NaiveDate;

/// Connections per process. Enough for the HTTP handlers and the workers to overlap, small
/// enough that several replicas stay well under PostgreSQL's default `max_connections` (100).
const MAX_CONNECTIONS: u32 = 16;

/// Key of the advisory lock that serialises migrations across replicas ("grader" + "mig").
const MIGRATION_LOCK: i64 = 0x6772_6164_6572_6d69;

/// The embedded migrations, applied in order by [`Store::migrate`].
static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "usage",
        sql: include_str!("../../migrations/postgres/0002_usage.sql"),
    },
    Migration {
        version: 3,
        name: "calibration_maps",
        sql: include_str!("../../migrations/postgres/0003_calibration_maps.sql"),
    },
    Migration {
        version: 4,
        name: "callback_outbox",
        sql: include_str!("../../migrations/postgres/0004_callback_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "queue_summary",
        sql: include_str!("../../migrations/postgres/0005_queue_summary.sql"),
    },
    Migration {
        version: 6,
        name: "idempotency_claims",
        sql: include_str!("../../migrations/postgres/0006_idempotency_claims.sql"),
    },
];

/// The columns [`submission_from_row`] reads, from a `submissions` aliased `s`; in a macro
/// so that every query text stays a `&'static str`.
macro_rules! submission_cols {
    () => {
        "s.id, s.tenant_id, s.stage, s.status, s.source, s.delivery_id, s.prompt, \
         s.submission::text AS submission, s.report::text AS report, s.attempts, s.error, \
         s.created_at, s.updated_at"
    };
}

pub struct PostgresStore {
    pool: PgPool,
    /// Group commit of enqueues (see `write_batch`).
    enqueues: GroupCommit,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://...`), failing now if the server cannot be reached.
    /// Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| {
                StoreError::Database(format!("invalid PostgreSQL URL {}: {e}", redact_url(url)))
            })?
            .application_name("grader");
        let tcp_port = options.get_socket().is_none().then(|| options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // Pings each connection before use (one loopback round trip): after a database
            // restart or failover, requests get a fresh connection instead of an error.
            .test_before_acquire(true)
            .after_connect(move |_conn, _meta| {
                Box::pin(async move {
                    if let Some(port) = tcp_port {
                        nodelay::set_on_sockets_to(port);
                    }
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(PostgresStore {
            pool,
            enqueues: GroupCommit::new(ENQUEUE_LANES),
        })
    }
}

/// Works around sqlx 0.9.0 opening PostgreSQL TCP connections without `TCP_NODELAY` (a
/// regression: sqlx issue #4335, fixed upstream after 0.9.0). With Nagle's algorithm on, the
/// tail of any message longer than one TCP segment waits for the server's delayed ACK, about
/// 40 ms: on loopback a batch of submissions (>64 KB) stalled 40 ms on every other statement
/// in `store_bench`, and over a real network (1460-byte segments) a single 6 KB transcript
/// would. sqlx offers no hook on its socket, so right after it opens a connection (before
/// the connection's first query) this sets `TCP_NODELAY` on every TCP socket of the process
/// whose peer is the database port. Setting it on any other TCP socket would be harmless
/// (hyper and reqwest set it on theirs anyway). Delete this module once sqlx sets it itself.
mod nodelay {
    /// Linux only: it finds the sockets through `/proc/self/fd`; elsewhere a no-op.
    #[cfg(target_os = "linux")]
    pub(super) fn set_on_sockets_to(port: u16) {
        use std::mem::ManuallyDrop;
        use std::net::TcpStream;
        use std::os::fd::FromRawFd;

        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in fds.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .map(|target| target.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false);
            if !is_socket {
                continue;
            }
            // SAFETY: the descriptor was an open socket a moment ago and is only borrowed:
            // ManuallyDrop guarantees we never close it, so its owner is unaffected. Should
            // it have been closed and reused meanwhile, the calls below fail (not a TCP
            // socket) or set TCP_NODELAY on some other TCP socket, which is harmless.
            let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            if stream.peer_addr().is_ok_and(|peer| peer.port() == port) {
                let _ = stream.set_nodelay(true);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn set_on_sockets_to(_port: u16) {}
}

/// Batches in flight at once (see `common::GroupCommit`). One: while it commits, the next
/// gathers. Two measured no faster on 2 cores (a second lane mostly carries stragglers).
const ENQUEUE_LANES: usize = 1;
/// Rows per batch statement: 64 x 10 parameters, far below PostgreSQL's 65535.
const CHUNK: usize = 64;

/// Writes a group-commit batch: chunks of up to 64 submissions, each chunk ONE statement that
/// inserts the submissions and their jobs (so one commit and one WAL flush for all of them).
/// Rows go in (tenant, source, delivery id) order, so two replicas inserting overlapping
/// deliveries take the unique-index locks in the same order and cannot deadlock. If a chunk's
/// statement fails (an unknown tenant, say), its submissions are retried one by one, so only
/// the offending one fails.
async fn write_batch(pool: &PgPool, batch: Vec<PendingEnqueue>) -> Result<Vec<Answer>, StoreError> {
    let mut slots: Vec<Option<Answer>> = (0..batch.len()).map(|_| None).collect();
    let mut sorted: Vec<(usize, PendingEnqueue)> = batch.into_iter().enumerate().collect();
    sorted.sort_by(|(_, a), (_, b)| {
        (&a.new.tenant_id, &a.new.source, &a.new.delivery_id).cmp(&(
            &b.new.tenant_id,
            &b.new.source,
            &b.new.delivery_id,
        ))
    });
    for chunk in sorted.chunks(CHUNK) {
        let items: Vec<&PendingEnqueue> = chunk.iter().map(|(_, item)| item).collect();
        let answers = match insert_chunk(pool, &items).await? {
            Some(answers) => answers,
            None => {
                let mut answers = Vec::with_capacity(items.len());
                for item in &items {
                    answers.push(enqueue_single(pool, item).await);
                }
                answers
            }
        };
        for ((i, _), answer) in chunk.iter().zip(answers) {
            slots[*i] = Some(answer);
        }
    }
    Ok(slots
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Err(StoreError::Database(
                    "submission left out of its batch".into(),
                ))
            })
        })
        .collect())
}

/// One chunk in one statement. `None` when the caller should write the items one by one: a
/// single item (the plain statement is cheaper), or the statement failed as a whole.
async fn insert_chunk(
    pool: &PgPool,
    items: &[&PendingEnqueue],
) -> Result<Option<Vec<Answer>>, StoreError> {
    use std::fmt::Write as _;
    if items.len() < 2 {
        return Ok(None);
    }
    // Only placeholders are generated; every value is bound.
    let mut sql = String::from(
        "WITH input (id, job_id, tenant_id, stage, source, delivery_id, prompt, submission, \
             input_sha256, at) AS (VALUES ",
    );
    for k in 0..items.len() {
        let b = k * 10;
        let sep = if k == 0 { "" } else { ", " };
        let _ = write!(
            sql,
            "{sep}(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}::timestamptz)",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10
        );
    }
    sql.push_str(
        "), s AS ( \
             INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, \
                 prompt, submission, attempts, input_sha256, created_at, updated_at) \
             SELECT id, tenant_id, stage, 'queued', source, delivery_id, prompt, \
                 submission, 0, input_sha256, at, at \
             FROM input ORDER BY tenant_id, source, delivery_id \
             ON CONFLICT ON CONSTRAINT submissions_delivery_key DO NOTHING \
             RETURNING id) \
         INSERT INTO jobs (id, submission_id, tenant_id, status, run_at, attempts, \
             created_at, updated_at) \
         SELECT input.job_id, s.id, input.tenant_id, 'queued', input.at, 0, input.at, input.at \
         FROM s JOIN input ON input.id = s.id \
         RETURNING submission_id",
    );
    let job_ids: Vec<String> = items.iter().map(|_| new_id()).collect();
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (item, job_id) in items.iter().zip(&job_ids) {
        query = query
            .bind(&item.id)
            .bind(job_id)
            .bind(&item.new.tenant_id)
            .bind(item.new.submission.stage.as_str())
            .bind(&item.new.source)
            .bind(&item.new.delivery_id)
            .bind(&item.new.prompt)
            .bind(&item.body)
            .bind(&item.new.input_sha256)
            .bind(item.at);
    }
    let rows = match query.fetch_all(pool).await {
        Ok(rows) => rows,
        Err(e) => {
            // Nothing of the chunk was written (one statement); one by one, each submission
            // gets its own answer.
            tracing::debug!(error = %e, rows = items.len(), "batched enqueue refused; retrying one by one");
            return Ok(None);
        }
    };
    let inserted = rows
        .iter()
        .map(|r| r.try_get::<String, _>("submission_id"))
        .collect::<Result<HashSet<String>, _>>()?;
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        answers.push(if inserted.contains(&item.id) {
            Ok((item.record(), true))
        } else {
            existing(pool, item).await
        });
    }
    Ok(Some(answers))
}

/// One submission and its job in one statement (so one transaction and one round trip):
/// the job row is inserted only if the submission row was.
async fn enqueue_single(pool: &PgPool, item: &PendingEnqueue) -> Answer {
    let new = &item.new;
    let inserted = bind_submission_head!(
        sqlx::query(
            "WITH s AS ( \
             INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, \
                 prompt, submission, attempts, input_sha256, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, 0, $8, $9, $9) \
             ON CONFLICT ON CONSTRAINT submissions_delivery_key DO NOTHING \
             RETURNING id, tenant_id) \
         INSERT INTO jobs (id, submission_id, tenant_id, status, run_at, attempts, \
             created_at, updated_at) \
         SELECT $10, s.id, s.tenant_id, 'queued', $9, 0, $9, $9 FROM s",
        ),
        item
    )
    .bind(&new.input_sha256)
    .bind(item.at)
    .bind(new_id())
    .execute(pool)
    .await
    .map_err(|e| insert_error(e, "submission", &format!("tenant {}", new.tenant_id)))?
    .rows_affected();
    if inserted == 0 {
        return existing(pool, item).await;
    }
    Ok((item.record(), true))
}

/// The submission that already holds `item`'s delivery key. ON CONFLICT waited for the
/// competing insert to commit, and this new statement's snapshot sees it.
async fn existing(pool: &PgPool, item: &PendingEnqueue) -> Answer {
    let row = sqlx::query(concat!(
        "SELECT ",
        submission_cols!(),
        " FROM submissions s WHERE s.tenant_id = $1 AND s.source = $2 AND s.delivery_id = $3"
    ))
    .bind(&item.new.tenant_id)
    .bind(&item.new.source)
    .bind(&item.new.delivery_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        StoreError::Database("delivery id conflicted but no submission was found".into())
    })?;
    Ok((submission_from_row(&row)?, false))
}

/// The row holding a delivery key, with what [`holder_from_row`] needs besides the record.
const HOLDER_SQL: &str = concat!(
    "SELECT ",
    submission_cols!(),
    ", s.input_sha256, s.claim_token, s.claim_expires_at FROM submissions s \
     WHERE s.tenant_id = $1 AND s.source = $2 AND s.delivery_id = $3"
);

fn holder_from_row(row: &PgRow) -> Result<KeyHolder, StoreError> {
    let record = submission_from_row(row)?;
    let token: Option<String> = row.try_get("claim_token")?;
    let expires: Option<DateTime<Utc>> = row.try_get("claim_expires_at")?;
    let claim = match (token, expires) {
        (Some(token), Some(expires_at)) if record.status == SubmissionStatus::Grading => {
            Some(KeyClaim {
                submission_id: record.id.clone(),
                token,
                expires_at,
            })
        }
        _ => None,
    };
    Ok(KeyHolder {
        input_sha256: row.try_get("input_sha256")?,
        record,
        claim,
    })
}

fn submission_from_row(row: &PgRow) -> Result<SubmissionRecord, StoreError> {
    let attempts: i32 = row.try_get("attempts")?;
    RawSubmission {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        stage: row.try_get("stage")?,
        status: row.try_get("status")?,
        source: row.try_get("source")?,
        delivery_id: row.try_get("delivery_id")?,
        prompt: row.try_get("prompt")?,
        submission: row.try_get("submission")?,
        report: row.try_get("report")?,
        attempts: i64::from(attempts),
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }
    .into_record()
}

fn tenant_from_row(row: &PgRow) -> Result<Tenant, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(Tenant {
        settings: from_json(row.try_get("settings")?, &format!("tenant {id} settings"))?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        id,
    })
}

/// One `audit_log` row (selected with `detail` as text) as an [`AuditEntry`].
fn audit_entry_from_row(r: &PgRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        tenant_id: r.try_get("tenant_id")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        subject: r.try_get("subject")?,
        detail: from_json(r.try_get("detail")?, "audit detail")?,
        at: r.try_get("at")?,
    })
}

fn human_grade_from_row(row: &PgRow) -> Result<HumanGrade, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(HumanGrade {
        scores: from_json(row.try_get("scores")?, &format!("human grade {id} scores"))?,
        flags: from_json(row.try_get("flags")?, &format!("human grade {id} flags"))?,
        tenant_id: row.try_get("tenant_id")?,
        submission_id: row.try_get("submission_id")?,
        rater: row.try_get("rater")?,
        override_reason: row.try_get("override_reason")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
        id,
    })
}

fn attempts_to_i32(n: u32, what: &str) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} out of range: {n}")))
}

/// Appends one audit entry on `conn`, so that it can join a larger transaction.
async fn insert_audit(conn: &mut PgConnection, e: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, subject, detail, at) \
         VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
    )
    .bind(&e.tenant_id)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject)
    .bind(to_json(&e.detail)?)
    .bind(micros(e.at))
    .execute(conn)
    .await
    .map_err(|err| insert_error(err, "audit entry", "tenant"))?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Held until commit: a second replica waits here, then finds nothing pending. Taken
        // before CREATE TABLE IF NOT EXISTS, which itself is not safe to run concurrently.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
                 checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied = sqlx::query("SELECT version, checksum FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
            .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?;
        for m in pending(MIGRATIONS, &applied)? {
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Migration(format!("{} ({}): {e}", m.version, m.name)))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: new_id(),
            name: name.to_string(),
            settings: TenantSettings::default(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO tenants (id, name, settings, created_at) VALUES ($1, $2, $3::jsonb, $4)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(to_json(&tenant.settings)?)
        .bind(tenant.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, &format!("tenant {name:?}"), "tenant"))?;
        Ok(tenant)
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query(
            "SELECT id, name, settings::text AS settings, created_at FROM tenants WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query(
            "SELECT id, name, settings::text AS settings, created_at FROM tenants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
    }

    async fn update_tenant_settings(
        &self,
        tenant_id: &str,
        settings: &TenantSettings,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE tenants SET settings = $1::jsonb WHERE id = $2")
            .bind(to_json(settings)?)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {tenant_id}")));
        }
        Ok(())
    }

    async fn create_api_key(
        &self,
        tenant_id: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<ApiKeyRecord, StoreError> {
        let key = ApiKeyRecord {
            id: new_id(),
            tenant_id: tenant_id.to_string(),
            role,
            prefix: prefix.to_string(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, role, key_hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(role.as_str())
        .bind(key_hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, "api key", &format!("tenant {tenant_id}")))?;
        Ok(key)
    }

    async fn api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<(ApiKeyRecord, Tenant)>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT k.id AS key_id, k.role, k.prefix, k.created_at AS key_created_at, \
                    t.id, t.name, t.settings::text AS settings, t.created_at \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let tenant = tenant_from_row(&row)?;
        let key = ApiKeyRecord {
            id: row.try_get("key_id")?,
            tenant_id: tenant.id.clone(),
            role: parse_role(row.try_get("role")?)?,
            prefix: row.try_get("prefix")?,
            created_at: row.try_get("key_created_at")?,
        };
        Ok(Some((key, tenant)))
    }

    async fn set_webhook_secret(
        &self,
        tenant_id: &str,
        source: &str,
        secret: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_secrets (tenant_id, source, secret, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, source) \
             DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(source)
        .bind(secret)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, "webhook secret", &format!("tenant {tenant_id}")))?;
        Ok(())
    }

    async fn webhook_secret(
        &self,
        tenant_id: &str,
        source: &str,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT secret FROM webhook_secrets WHERE tenant_id = $1 AND source = $2")
                .bind(tenant_id)
                .bind(source)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("secret")).transpose()?)
    }

    async fn enqueue(&self, new: NewSubmission) -> Result<(SubmissionRecord, bool), StoreError> {
        let item = PendingEnqueue::new(new)?;
        let pool = self.pool.clone();
        self.enqueues
            .submit(
                item,
                move |batch| async move { write_batch(&pool, batch).await },
            )
            .await
    }

    async fn submission(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<SubmissionRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            submission_cols!(),
            " FROM submissions s WHERE s.id = $1 AND s.tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(submission_from_row)
        .transpose()
    }

    async fn list_submissions(
        &self,
        tenant_id: &str,
        status: Option<SubmissionStatus>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<SubmissionRecord>, StoreError> {
        let rows = match status {
            Some(status) => {
                sqlx::query(concat!(
                    "SELECT ",
                    submission_cols!(),
                    " FROM submissions s WHERE s.tenant_id = $1 AND s.status = $2 \
                      ORDER BY s.created_at DESC, s.id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(tenant_id)
                .bind(status.as_str())
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    submission_cols!(),
                    " FROM submissions s WHERE s.tenant_id = $1 \
                      ORDER BY s.created_at DESC, s.id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(tenant_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(submission_from_row).collect()
    }

    async fn lease_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<LeasedJob>, StoreError> {
        let at = now();
        let until = later(at, lease);
        // SKIP LOCKED: a job another worker is claiming right now is passed over, not waited
        // for; the claim and the submission's status change commit together.
        let Some(row) = sqlx::query(concat!(
            "WITH next AS ( \
                 SELECT id FROM jobs \
                 WHERE status IN ('queued', 'leased') \
                   AND ((status = 'queued' AND run_at <= $1) \
                        OR (status = 'leased' AND lease_until < $1)) \
                 ORDER BY run_at LIMIT 1 \
                 FOR UPDATE SKIP LOCKED), \
             leased AS ( \
                 UPDATE jobs j SET status = 'leased', leased_by = $2, lease_until = $3, \
                     attempts = j.attempts + 1, updated_at = $1 \
                 FROM next WHERE j.id = next.id \
                 RETURNING j.id, j.submission_id, j.attempts) \
             UPDATE submissions s SET status = 'grading', attempts = leased.attempts, \
                 updated_at = $1 \
             FROM leased WHERE s.id = leased.submission_id \
             RETURNING leased.id AS job_id, ",
            submission_cols!()
        ))
        .bind(at)
        .bind(worker)
        .bind(until)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let submission = submission_from_row(&row)?;
        Ok(Some(LeasedJob {
            job_id: row.try_get("job_id")?,
            attempt: submission.attempts,
            submission,
            worker: worker.to_string(),
            lease_until: until,
        }))
    }

    async fn complete_job(
        &self,
        job_id: &str,
        worker: &str,
        report: &GradeReport,
    ) -> Result<bool, StoreError> {
        let at = now();
        let report_json = to_json(report)?;
        let mut tx = self.pool.begin().await?;
        // The row lock taken here makes a concurrent re-lease skip this job until we commit;
        // if the re-lease won, the WHERE no longer matches and nothing is written.
        let Some(job) = sqlx::query(
            "UPDATE jobs SET status = 'done', lease_until = NULL, last_error = NULL, \
                 updated_at = $1 \
             WHERE id = $2 AND leased_by = $3 AND status = 'leased' \
             RETURNING submission_id, tenant_id",
        )
        .bind(at)
        .bind(job_id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(false);
        };
        let submission_id: String = job.try_get("submission_id")?;
        let tenant_id: String = job.try_get("tenant_id")?;
        let summary = ReportSummary::of(report);
        let input_sha256: String = bind_summary!(
            sqlx::query(
                "UPDATE submissions SET report = $1::json, status = 'graded', error = NULL, \
                     updated_at = $2, report_prompt = $4, report_prompt_id = $5, \
                     injection_suspected = $6, red_flags = $7, needs_review = $8, \
                     min_confidence = $9, escalated = $10 \
                 WHERE id = $3 RETURNING input_sha256",
            )
            .bind(&report_json)
            .bind(at)
            .bind(&submission_id),
            &summary
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("input_sha256")?;
        // The report's callback delivery commits with the report (see `lease_callbacks`).
        sqlx::query(
            "INSERT INTO callback_outbox (id, tenant_id, submission_id, status, attempts, \
                 next_attempt_at, created_at, updated_at) \
             SELECT $1, t.id, $2, 'pending', 0, $3, $3, $3 FROM tenants t \
             WHERE t.id = $4 AND t.settings->>'callback_url' IS NOT NULL \
             ON CONFLICT (submission_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(&submission_id)
        .bind(at)
        .bind(&tenant_id)
        .execute(&mut *tx)
        .await?;
        let entry = completion_audit(
            &tenant_id,
            &submission_id,
            worker,
            &input_sha256,
            report,
            &report_json,
            at,
        );
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn store_graded(
        &self,
        new: NewSubmission,
        report: &GradeReport,
    ) -> Result<SubmissionRecord, StoreError> {
        let graded = PendingGraded::new(new, report)?;
        let item = &graded.item;
        let new = &item.new;
        let summary = ReportSummary::of(report);
        let mut tx = self.pool.begin().await?;
        // A claim on the key gives way to the graded row in this transaction (see the trait).
        // Two finishers: the second's DELETE waits for the first's row lock, then finds the
        // row gone, and its INSERT then conflicts with the first's graded row.
        sqlx::query(
            "DELETE FROM submissions WHERE tenant_id = $1 AND source = $2 AND delivery_id = $3 \
               AND status = 'grading' AND claim_token IS NOT NULL",
        )
        .bind(&new.tenant_id)
        .bind(&new.source)
        .bind(&new.delivery_id)
        .execute(&mut *tx)
        .await?;
        let inserted = bind_summary!(
            bind_submission_head!(
                sqlx::query(
                    "INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, \
                     prompt, submission, report, attempts, input_sha256, created_at, updated_at, \
                     report_prompt, report_prompt_id, injection_suspected, red_flags, \
                     needs_review, min_confidence, escalated) \
                 VALUES ($1, $2, $3, 'graded', $4, $5, $6, $7, $8::json, 1, $9, $10, $10, \
                     $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT ON CONSTRAINT submissions_delivery_key DO NOTHING",
                ),
                item
            )
            .bind(&graded.report_json)
            .bind(&new.input_sha256)
            .bind(item.at),
            &summary
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "submission", &format!("tenant {}", new.tenant_id)))?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            // ON CONFLICT waited for the competing insert to commit; a new snapshot sees it.
            return existing(&self.pool, item).await.map(|(record, _)| record);
        }
        insert_audit(&mut tx, &graded.audit(report)).await?;
        tx.commit().await?;
        Ok(graded.record(report))
    }

    async fn claim_delivery(
        &self,
        new: &NewSubmission,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        // The holder can be released between our conflicting insert and the read of it:
        // then the key is free again and we try once more (a few times at most).
        for _ in 0..4 {
            let item = PendingEnqueue::new(new.clone())?;
            let claim = KeyClaim {
                submission_id: item.id.clone(),
                token: new_id(),
                expires_at: later(item.at, lease),
            };
            // ON CONFLICT waits for a competing insert to commit or roll back, so of
            // concurrent callers exactly one inserts.
            let inserted = bind_submission_head!(
                sqlx::query(
                    "INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, \
                     prompt, submission, attempts, input_sha256, created_at, updated_at, \
                     claim_token, claim_expires_at) \
                 VALUES ($1, $2, $3, 'grading', $4, $5, $6, $7, 1, $8, $9, $9, $10, $11) \
                 ON CONFLICT ON CONSTRAINT submissions_delivery_key DO NOTHING",
                ),
                &item
            )
            .bind(&new.input_sha256)
            .bind(item.at)
            .bind(&claim.token)
            .bind(claim.expires_at)
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, "submission", &format!("tenant {}", new.tenant_id)))?
            .rows_affected();
            if inserted == 1 {
                return Ok(ClaimOutcome::Claimed(claim));
            }
            let row = sqlx::query(HOLDER_SQL)
                .bind(&new.tenant_id)
                .bind(&new.source)
                .bind(&new.delivery_id)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                return Ok(ClaimOutcome::Taken(Box::new(holder_from_row(&row)?)));
            }
        }
        Err(StoreError::Database(
            "delivery id keeps conflicting but no submission was found".into(),
        ))
    }

    async fn delivery_holder(
        &self,
        tenant_id: &str,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<KeyHolder>, StoreError> {
        sqlx::query(HOLDER_SQL)
            .bind(tenant_id)
            .bind(source)
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(holder_from_row)
            .transpose()
    }

    async fn take_over_claim(
        &self,
        tenant_id: &str,
        expired: &KeyClaim,
        lease: Duration,
    ) -> Result<Option<KeyClaim>, StoreError> {
        let at = now();
        let claim = KeyClaim {
            submission_id: expired.submission_id.clone(),
            token: new_id(),
            expires_at: later(at, lease),
        };
        // Read committed: a second taker's UPDATE waits for the first's row lock, then
        // re-checks the WHERE on the new row version, whose token no longer matches.
        let done = sqlx::query(
            "UPDATE submissions SET claim_token = $1, claim_expires_at = $2, \
                 attempts = attempts + 1, updated_at = $3 \
             WHERE id = $4 AND tenant_id = $5 AND status = 'grading' AND claim_token = $6 \
               AND claim_expires_at < $3",
        )
        .bind(&claim.token)
        .bind(claim.expires_at)
        .bind(at)
        .bind(&expired.submission_id)
        .bind(tenant_id)
        .bind(&expired.token)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(claim))
    }

    async fn release_claim(&self, tenant_id: &str, claim: &KeyClaim) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM submissions WHERE id = $1 AND tenant_id = $2 AND status = 'grading' \
               AND claim_token = $3",
        )
        .bind(&claim.submission_id)
        .bind(tenant_id)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'leased')")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for r in records {
            sqlx::query(
                "INSERT INTO usage (tenant_id, stage, prompt, prompt_sha256, model, tier, \
                     samples, cached_samples, prompt_tokens, completion_tokens, cached_tokens, \
                     cost_usd, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&r.tenant)
            .bind(&r.stage)
            .bind(&r.prompt)
            .bind(&r.prompt_sha256)
            .bind(&r.model)
            .bind(&r.tier)
            .bind(i64::from(r.samples))
            .bind(i64::from(r.cached_samples))
            .bind(to_i64(r.prompt_tokens))
            .bind(to_i64(r.completion_tokens))
            .bind(to_i64(r.cached_tokens))
            .bind(r.cost_usd)
            .bind(micros(r.at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage_spent(&self, tenant: &str, day: NaiveDate) -> Result<Spent, StoreError> {
        let w = usage_window(day);
        let row = sqlx::query(
            "SELECT \
                 COALESCE(SUM(CASE WHEN tenant_id = $1::TEXT AND at >= $2 AND at < $3 \
                     THEN cost_usd END), 0.0) AS tenant_day, \
                 COALESCE(SUM(CASE WHEN tenant_id = $1 THEN cost_usd END), 0.0) AS tenant_month, \
                 COALESCE(SUM(CASE WHEN at >= $2 AND at < $3 THEN cost_usd END), 0.0) \
                     AS global_day, \
                 COALESCE(SUM(cost_usd), 0.0) AS global_month \
             FROM usage WHERE at >= $4 AND at < $5",
        )
        .bind(tenant)
        .bind(w.day_start)
        .bind(w.day_end)
        .bind(w.month_start)
        .bind(w.month_end)
        .fetch_one(&self.pool)
        .await?;
        Ok(Spent {
            tenant_day: row.try_get("tenant_day")?,
            tenant_month: row.try_get("tenant_month")?,
            global_day: row.try_get("global_day")?,
            global_month: row.try_get("global_month")?,
        })
    }

    async fn usage_summary(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageSummaryRow>, StoreError> {
        let (from, to) = usage_bounds(filter.since, filter.until);
        let rows = sqlx::query(
            "SELECT prompt, model, COUNT(*) AS gradings, SUM(samples)::BIGINT AS samples, \
                 SUM(cached_samples)::BIGINT AS cached_samples, SUM(prompt_tokens)::BIGINT AS prompt_tokens, \
                 SUM(completion_tokens)::BIGINT AS completion_tokens, \
                 SUM(cached_tokens)::BIGINT AS cached_tokens, SUM(cost_usd) AS cost_usd \
             FROM usage WHERE ($1::TEXT IS NULL OR tenant_id = $1) AND at >= $2 AND at < $3 \
             GROUP BY prompt, model ORDER BY prompt COLLATE \"C\", model COLLATE \"C\"",
        )
        .bind(&filter.tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageSummaryRow {
                    prompt: row.try_get("prompt")?,
                    model: row.try_get("model")?,
                    gradings: to_u64(row.try_get("gradings")?, "usage gradings")?,
                    samples: to_u64(row.try_get("samples")?, "usage samples")?,
                    cached_samples: to_u64(row.try_get("cached_samples")?, "usage samples")?,
                    prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "usage tokens")?,
                    completion_tokens: to_u64(row.try_get("completion_tokens")?, "usage tokens")?,
                    cached_tokens: to_u64(row.try_get("cached_tokens")?, "usage tokens")?,
                    cost_usd: row.try_get("cost_usd")?,
                })
            })
            .collect()
    }

    async fn fail_job(
        &self,
        job_id: &str,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), StoreError> {
        let at = now();
        let (job_status, submission_status, run_at): (&str, &str, Option<DateTime<Utc>>) =
            match retry_in {
                Some(d) => ("queued", "queued", Some(later(at, d))),
                None => ("dead", "dead", None),
            };
        // A queued job has no holder; a dead one keeps the last worker for the record.
        sqlx::query(
            "WITH j AS ( \
                 UPDATE jobs SET status = $1, run_at = COALESCE($2, run_at), \
                     leased_by = CASE WHEN $1 = 'queued' THEN NULL ELSE leased_by END, \
                     lease_until = NULL, last_error = $3, updated_at = $4 \
                 WHERE id = $5 AND leased_by = $6 AND status = 'leased' \
                 RETURNING submission_id) \
             UPDATE submissions s SET status = $7, error = $3, updated_at = $4 \
             FROM j WHERE s.id = j.submission_id",
        )
        .bind(job_status)
        .bind(run_at)
        .bind(error)
        .bind(at)
        .bind(job_id)
        .bind(worker)
        .bind(submission_status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_job(&self, job_id: &str, worker: &str) -> Result<(), StoreError> {
        sqlx::query(
            "WITH j AS ( \
                 UPDATE jobs SET status = 'queued', leased_by = NULL, lease_until = NULL, \
                     attempts = GREATEST(attempts - 1, 0), updated_at = $1 \
                 WHERE id = $2 AND leased_by = $3 AND status = 'leased' \
                 RETURNING submission_id, attempts) \
             UPDATE submissions s SET status = 'queued', attempts = j.attempts, updated_at = $1 \
             FROM j WHERE s.id = j.submission_id",
        )
        .bind(now())
        .bind(job_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn add_human_grade(&self, grade: &HumanGrade) -> Result<(), StoreError> {
        // One insert path: the batch method's tenant-checked insert, in its transaction.
        self.add_human_grades(std::slice::from_ref(grade)).await
    }

    async fn human_grades(
        &self,
        tenant_id: &str,
        submission_id: &str,
    ) -> Result<Vec<HumanGrade>, StoreError> {
        sqlx::query(
            "SELECT id, tenant_id, submission_id, rater, scores::text AS scores, \
                 flags::text AS flags, override_reason, comment, created_at \
             FROM human_grades WHERE tenant_id = $1 AND submission_id = $2 \
             ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .bind(submission_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(human_grade_from_row)
        .collect()
    }

    async fn calibration_rows(
        &self,
        tenant_id: &str,
        filter: &CalibrationFilter,
    ) -> Result<Vec<CalibrationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.submission_id, s.stage, h.rater, h.scores::text AS scores, \
                 s.report::text AS report, h.created_at \
             FROM human_grades h \
             JOIN submissions s ON s.id = h.submission_id AND s.tenant_id = h.tenant_id \
             WHERE h.tenant_id = $1 AND s.report IS NOT NULL \
               AND ($2::text IS NULL OR s.stage = $2) \
               AND ($3::timestamptz IS NULL OR h.created_at >= $3) \
               AND ($4::timestamptz IS NULL OR h.created_at <= $4) \
             ORDER BY h.created_at, h.id",
        )
        .bind(tenant_id)
        .bind(filter.stage.map(|s| s.as_str()))
        .bind(filter.since.map(micros))
        .bind(filter.until.map(micros))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let raw = RawCalibration {
                submission_id: row.try_get("submission_id")?,
                stage: row.try_get("stage")?,
                rater: row.try_get("rater")?,
                scores: row.try_get("scores")?,
                report: row.try_get("report")?,
                graded_at: row.try_get("created_at")?,
            };
            out.extend(calibration_rows(raw, filter)?);
        }
        Ok(out)
    }

    async fn put_calibration_map(&self, map: &CalibrationMapRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calibration_maps (tenant_id, stage, dimension, prompt, map, n_pairs, \
                 fitted_at) \
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) \
             ON CONFLICT (tenant_id, stage, dimension, prompt) DO UPDATE SET \
                 map = excluded.map, n_pairs = excluded.n_pairs, fitted_at = excluded.fitted_at",
        )
        .bind(&map.tenant_id)
        .bind(map.stage.as_str())
        .bind(&map.dimension)
        .bind(&map.prompt)
        .bind(to_json(&map.map)?)
        .bind(i32::try_from(map.n_pairs).unwrap_or(i32::MAX))
        .bind(micros(map.fitted_at))
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, "calibration map", &format!("tenant {}", map.tenant_id)))?;
        Ok(())
    }

    async fn calibration_maps(
        &self,
        tenant_id: &str,
        stage: Stage,
        prompt: &str,
    ) -> Result<Vec<CalibrationMapRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, stage, dimension, prompt, map::text AS map, n_pairs, fitted_at \
             FROM calibration_maps WHERE tenant_id = $1 AND stage = $2 AND prompt = $3 \
             ORDER BY dimension",
        )
        .bind(tenant_id)
        .bind(stage.as_str())
        .bind(prompt)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let map: String = row.try_get("map")?;
                let stage: String = row.try_get("stage")?;
                let n_pairs: i32 = row.try_get("n_pairs")?;
                Ok(CalibrationMapRecord {
                    tenant_id: row.try_get("tenant_id")?,
                    stage: parse_stage(&stage)?,
                    dimension: row.try_get("dimension")?,
                    prompt: row.try_get("prompt")?,
                    map: from_json(&map, "calibration map")?,
                    n_pairs: to_u32(i64::from(n_pairs), "calibration map n_pairs")?,
                    fitted_at: row.try_get::<DateTime<Utc>, _>("fitted_at")?,
                })
            })
            .collect()
    }

    async fn add_human_grades(&self, grades: &[HumanGrade]) -> Result<(), StoreError> {
        if grades.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for grade in grades {
            let done = sqlx::query(
                "INSERT INTO human_grades (id, tenant_id, submission_id, rater, scores, flags, \
                     override_reason, comment, created_at) \
                 SELECT $1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9 \
                 WHERE EXISTS (SELECT 1 FROM submissions WHERE id = $3 AND tenant_id = $2 \
                     AND claim_token IS NULL)",
            )
            .bind(&grade.id)
            .bind(&grade.tenant_id)
            .bind(&grade.submission_id)
            .bind(&grade.rater)
            .bind(to_json(&grade.scores)?)
            .bind(to_json(&grade.flags)?)
            .bind(&grade.override_reason)
            .bind(&grade.comment)
            .bind(micros(grade.created_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| insert_error(e, &format!("human grade {}", grade.id), "submission"))?;
            if done.rows_affected() == 0 {
                // Dropping the transaction rolls back every grade inserted before this one.
                return Err(StoreError::NotFound(format!(
                    "submission {}",
                    grade.submission_id
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_callback(&self, attempt: &CallbackAttempt) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO callbacks (id, tenant_id, submission_id, attempt, status, error, at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE EXISTS (SELECT 1 FROM submissions WHERE id = $3 AND tenant_id = $2)",
        )
        .bind(new_id())
        .bind(&attempt.tenant_id)
        .bind(&attempt.submission_id)
        .bind(attempts_to_i32(attempt.attempt, "callback attempt")?)
        .bind(attempt.status.map(i32::from))
        .bind(&attempt.error)
        .bind(micros(attempt.at))
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, "callback attempt", "submission"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "submission {}",
                attempt.submission_id
            )));
        }
        Ok(())
    }

    async fn callbacks(
        &self,
        tenant_id: &str,
        submission_id: &str,
    ) -> Result<Vec<CallbackAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, submission_id, attempt, status, error, at FROM callbacks \
             WHERE tenant_id = $1 AND submission_id = $2 ORDER BY attempt, at, id",
        )
        .bind(tenant_id)
        .bind(submission_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let attempt: i32 = r.try_get("attempt")?;
                let status: Option<i32> = r.try_get("status")?;
                Ok(CallbackAttempt {
                    tenant_id: r.try_get("tenant_id")?,
                    submission_id: r.try_get("submission_id")?,
                    attempt: to_u32(i64::from(attempt), "callback attempt")?,
                    status: status
                        .map(|s| {
                            u16::try_from(s).map_err(|_| {
                                StoreError::Corrupt(format!("callback HTTP status {s}"))
                            })
                        })
                        .transpose()?,
                    error: r.try_get("error")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    async fn lease_callbacks(
        &self,
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<PendingCallback>, StoreError> {
        let at = now();
        let until = later(at, lease);
        // SKIP LOCKED: rows another replica is leasing right now are passed over.
        let rows = sqlx::query(
            "WITH due AS ( \
                 SELECT id FROM callback_outbox \
                 WHERE status = 'pending' AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at LIMIT $4 \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE callback_outbox o SET leased_by = $2, next_attempt_at = $3, updated_at = $1 \
             FROM due WHERE o.id = due.id \
             RETURNING o.id, o.tenant_id, o.submission_id, o.attempts",
        )
        .bind(at)
        .bind(worker)
        .bind(until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get("attempts")?;
                Ok(PendingCallback {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    submission_id: r.try_get("submission_id")?,
                    attempts: to_u32(i64::from(attempts), "callback attempts")?,
                    worker: worker.to_string(),
                    lease_until: until,
                })
            })
            .collect()
    }

    async fn finish_callback(
        &self,
        delivery: &PendingCallback,
        attempt: &CallbackAttempt,
        next: CallbackNext,
    ) -> Result<bool, StoreError> {
        let at = now();
        let (status, next_at) = match next {
            CallbackNext::Delivered => ("delivered", at),
            CallbackNext::Retry(d) => ("pending", later(at, d)),
            CallbackNext::Failed => ("failed", at),
        };
        let mut tx = self.pool.begin().await?;
        let settled = sqlx::query(
            "UPDATE callback_outbox SET status = $1, attempts = attempts + 1, \
                 next_attempt_at = $2, leased_by = NULL, last_error = $3, updated_at = $4 \
             WHERE id = $5 AND leased_by = $6 AND status = 'pending'",
        )
        .bind(status)
        .bind(next_at)
        .bind(&attempt.error)
        .bind(at)
        .bind(&delivery.id)
        .bind(&delivery.worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if settled == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO callbacks (id, tenant_id, submission_id, attempt, status, error, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id())
        .bind(&delivery.tenant_id)
        .bind(&delivery.submission_id)
        .bind(attempts_to_i32(attempt.attempt, "callback attempt")?)
        .bind(attempt.status.map(i32::from))
        .bind(&attempt.error)
        .bind(micros(attempt.at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, entry).await
    }

    async fn audit_log(&self, tenant_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, actor, action, subject, detail::text AS detail, at \
             FROM audit_log WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_entry_from_row).collect()
    }

    async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM response_cache WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn cache_put(
        &self,
        key: &str,
        prompt_sha256: &str,
        model: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO response_cache (key, prompt_sha256, model, value, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET prompt_sha256 = excluded.prompt_sha256, \
                 model = excluded.model, value = excluded.value, created_at = excluded.created_at",
        )
        .bind(key)
        .bind(prompt_sha256)
        .bind(model)
        .bind(value)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cache_purge_prompt(&self, prompt_sha256: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM response_cache WHERE prompt_sha256 = $1")
            .bind(prompt_sha256)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn audit_entries(
        &self,
        tenant_id: &str,
        subject: &str,
        action: &str,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, actor, action, subject, detail::text AS detail, at \
             FROM audit_log WHERE tenant_id = $1 AND subject = $2 AND action = $3 ORDER BY id",
        )
        .bind(tenant_id)
        .bind(subject)
        .bind(action)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_entry_from_row).collect()
    }

    async fn graded_with_human_grades(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<(SubmissionRecord, Vec<HumanGrade>)>, StoreError> {
        // One array parameter per statement; chunked so a huge audit is not one giant row set.
        const IDS_PER_QUERY: usize = 2_000;
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let subs = sqlx::query(concat!(
                "SELECT ",
                submission_cols!(),
                " FROM submissions s WHERE s.tenant_id = $1 AND s.status = 'graded' \
                  AND s.id = ANY($2)"
            ))
            .bind(tenant_id)
            .bind(chunk)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(submission_from_row)
            .collect::<Result<Vec<_>, _>>()?;
            let mut grades: std::collections::HashMap<String, Vec<HumanGrade>> =
                std::collections::HashMap::new();
            let rows = sqlx::query(
                "SELECT id, tenant_id, submission_id, rater, scores::text AS scores, \
                     flags::text AS flags, override_reason, comment, created_at \
                 FROM human_grades WHERE tenant_id = $1 AND submission_id = ANY($2) \
                 ORDER BY created_at, id",
            )
            .bind(tenant_id)
            .bind(chunk)
            .fetch_all(&self.pool)
            .await?;
            for row in rows.iter() {
                let g = human_grade_from_row(row)?;
                grades.entry(g.submission_id.clone()).or_default().push(g);
            }
            for sub in subs {
                let hg = grades.remove(&sub.id).unwrap_or_default();
                out.push((sub, hg));
            }
        }
        Ok(out)
    }

    async fn review_queue(
        &self,
        tenant_id: &str,
        filter: &super::QueueFilter,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<super::QueueItem>, StoreError> {
        // Only the summary columns (migration 0005): a range scan of the tenant's
        // (tenant_id, created_at) index entries and their small heap rows (the report and
        // body are TOASTed out of line and never read); human grades are looked up for the
        // status filter (EXISTS) and counted for the page's rows only.
        let rows = sqlx::query(
            "WITH q AS ( \
               SELECT s.id, s.tenant_id, s.stage, s.status, s.created_at, \
                 COALESCE(s.report_prompt, s.prompt) AS prompt, \
                 COALESCE(s.report_prompt_id, split_part(s.prompt, '@', 1)) AS prompt_id, \
                 s.injection_suspected AS inj, s.red_flags::int8 AS reds, s.needs_review AS nr, \
                 COALESCE(s.min_confidence < $3, false) AS lowconf, s.escalated AS esc \
               FROM submissions s \
               WHERE s.tenant_id = $1 AND ($2::text IS NULL OR s.stage = $2) \
             ), page AS ( \
               SELECT q.*, CASE WHEN inj THEN 0 WHEN reds > 0 THEN 1 WHEN nr THEN 2 \
                 WHEN lowconf THEN 3 WHEN esc THEN 4 ELSE 5 END AS priority \
               FROM q \
               WHERE ($5::text IS NULL OR prompt = $5 OR prompt_id = $5) \
                 AND ($6::text IS NULL \
                   OR ($6 IN ('queued', 'grading', 'graded', 'dead') AND status = $6) \
                   OR ($6 = 'needs_review' AND nr) \
                   OR ($6 = 'unreviewed' AND status = 'graded' AND NOT EXISTS ( \
                     SELECT 1 FROM human_grades h \
                     WHERE h.tenant_id = q.tenant_id AND h.submission_id = q.id)) \
                   OR ($6 = 'reviewed' AND EXISTS ( \
                     SELECT 1 FROM human_grades h \
                     WHERE h.tenant_id = q.tenant_id AND h.submission_id = q.id))) \
               ORDER BY priority, created_at DESC, id DESC LIMIT $7 OFFSET $8 \
             ) \
             SELECT page.*, \
               (SELECT COUNT(*) FROM human_grades h \
                 WHERE h.tenant_id = page.tenant_id AND h.submission_id = page.id) AS n_grades, \
               (SELECT COUNT(*) FROM human_grades h \
                 WHERE h.tenant_id = page.tenant_id AND h.submission_id = page.id \
                   AND h.rater = $4::text) AS my_grades \
             FROM page ORDER BY priority, created_at DESC, id DESC",
        )
        .bind(tenant_id)
        .bind(filter.stage.map(|s| s.as_str()))
        .bind(filter.low_confidence)
        .bind(filter.rater.as_deref())
        .bind(filter.prompt.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(super::QueueItem {
                    stage: super::common::parse_stage(row.try_get("stage")?)?,
                    status: super::common::parse_status(row.try_get("status")?)?,
                    prompt: row.try_get("prompt")?,
                    created_at: row.try_get("created_at")?,
                    injection_suspected: row.try_get("inj")?,
                    red_flags: super::common::to_u32(row.try_get("reds")?, "red flag count")?,
                    needs_review: row.try_get("nr")?,
                    low_confidence: row.try_get("lowconf")?,
                    escalated: row.try_get("esc")?,
                    human_grades: super::common::to_u32(
                        row.try_get("n_grades")?,
                        "human grade count",
                    )?,
                    graded_by_rater: row.try_get::<i64, _>("my_grades")? > 0,
                    priority: u8::try_from(row.try_get::<i32, _>("priority")?).unwrap_or(5),
                    id,
                })
            })
            .collect()
    }
}
