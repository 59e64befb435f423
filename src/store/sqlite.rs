//! The SQLite store: one process, one file, no server to run.
//!
//! **Concurrency.** SQLite allows one writer at a time. We open the file in WAL mode (readers
//! never block the writer nor each other) with `synchronous=NORMAL` (a commit is durable
//! against a crash of the process; against power loss WAL may lose the last commits, which is
//! SQLite's documented trade-off for this mode), foreign keys on and a 5 s busy timeout.
//! Writes go through a pool of exactly **one** connection and every multi-statement write
//! starts with `BEGIN IMMEDIATE`:
//! - The single writer connection queues this process's writers fairly in the pool instead of
//!   letting them race for SQLite's lock and sleep in the busy handler, which is both slower
//!   and unfair under load.
//! - `BEGIN IMMEDIATE` takes the write lock when the transaction starts, so a transaction
//!   never reads under a shared lock and then fails to upgrade (`SQLITE_BUSY` in the middle
//!   of a transaction, which the busy timeout cannot resolve). It also makes another process
//!   on the same file (`grader admin` next to `grader serve`) wait up to the busy timeout
//!   instead of failing.
//! - Concurrent enqueues are group-committed (`common::GroupCommit`): whoever gets the writer
//!   writes every submission queued so far in one `BEGIN IMMEDIATE` transaction (multi-row
//!   INSERTs), and each caller hears back only after that COMMIT.
//!
//! Reads use a separate pool of several connections and see the last committed state.
//! `sqlite::memory:` keeps the whole database in one connection (an in-memory database lives
//! and dies with its connection), used for both reads and writes.
//!
//! Timestamps are TEXT, RFC 3339 UTC with six fractional digits (see `common::ts`).

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::ErrorKind;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::common::{
    calibration_rows, completion_audit, from_json, insert_error, later, micros, new_id, now,
    parse_role, parse_stage, parse_ts, pending, to_i64, to_json, to_u32, to_u64, ts, usage_bounds,
    usage_window, Answer, GroupCommit, Migration, PendingEnqueue, PendingGraded, RawCalibration,
    RawSubmission,
};
use super::{
    ApiKeyRecord, AuditEntry, CalibrationFilter, CalibrationMapRecord, CalibrationRow,
    CallbackAttempt, CallbackNext, ClaimOutcome, HumanGrade, KeyClaim, KeyHolder, LeasedJob,
    NewSubmission, PendingCallback, ReportSummary, Role, Store, StoreError, SubmissionRecord,
    SubmissionStatus, Tenant, TenantSettings,
};
use crate::budget::{Spent, UsageFilter, UsageRecord, UsageSummaryRow};
use crate::domain::{GradeReport, Stage};
use chrono::NaiveDate;

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent readers; WAL lets them all read while the writer writes.
const READERS: u32 = 4;

/// The embedded migrations, applied in order by [`Store::migrate`].
static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "usage",
        sql: include_str!("../../migrations/sqlite/0002_usage.sql"),
    },
    Migration {
        version: 3,
        name: "calibration_maps",
        sql: include_str!("../../migrations/sqlite/0003_calibration_maps.sql"),
    },
    Migration {
        version: 4,
        name: "callback_outbox",
        sql: include_str!("../../migrations/sqlite/0004_callback_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "queue_summary",
        sql: include_str!("../../migrations/sqlite/0005_queue_summary.sql"),
    },
    Migration {
        version: 6,
        name: "idempotency_claims",
        sql: include_str!("../../migrations/sqlite/0006_idempotency_claims.sql"),
    },
];

/// The columns [`submission_from_row`] reads, in a macro so that every query text stays a
/// `&'static str` (sqlx only takes static SQL without an explicit assertion).
macro_rules! submission_cols {
    () => {
        "id, tenant_id, stage, status, source, delivery_id, prompt, submission, report, \
         attempts, error, created_at, updated_at"
    };
}

pub struct SqliteStore {
    /// Exactly one connection: every write in this process goes through it (see module doc).
    writer: SqlitePool,
    /// Read-only work; the same pool as `writer` for an in-memory database.
    reader: SqlitePool,
    /// Group commit of enqueues (see `common::GroupCommit`); one lane, as there is one
    /// writer.
    enqueues: GroupCommit,
}

impl SqliteStore {
    /// Opens (creating if missing) the database `url` names: `sqlite://PATH` or
    /// `sqlite::memory:`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // 64 MiB of page cache per connection (default 2 MiB): the queue's and the
            // submissions' index pages stay in memory instead of being re-read per insert.
            .pragma("cache_size", "-65536");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory {
            // One connection that never idles out or expires: closing it would drop the data.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            return Ok(SqliteStore {
                writer: pool.clone(),
                reader: pool,
                enqueues: GroupCommit::new(1),
            });
        }
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Database(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        // The writer connects first so that it, not a reader, switches the file to WAL.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            enqueues: GroupCommit::new(1),
        })
    }

    /// Starts a write transaction holding SQLite's write lock from the first statement.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Whether any job can be leased now, asked on a reader so that idle workers polling the
    /// queue do not take the write lock (and delay enqueues) for nothing.
    async fn any_runnable(&self, now: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM jobs WHERE status IN ('queued', 'leased') \
             AND ((status = 'queued' AND run_at <= $1) OR (status = 'leased' AND lease_until < $1)) \
             LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.is_some())
    }
}

/// Rows per multi-row INSERT: 64 x 9 parameters stays far below SQLite's limit (32766).
const CHUNK: usize = 64;

/// The batch's transaction. The outer error aborts (rolls back) the whole batch; an inner
/// error belongs to one submission, of which then nothing was written.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &[PendingEnqueue],
) -> Result<Vec<Answer>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(CHUNK) {
        match insert_chunk(&mut tx, chunk).await? {
            Some(done) => results.extend(done),
            // A constraint refused the chunk as a whole (e.g. an unknown tenant): one by one,
            // so only the offending submissions fail.
            None => {
                for item in chunk {
                    results.push(enqueue_one(&mut tx, item).await?);
                }
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// The fast path of a batch: all submissions in one multi-row INSERT and all their jobs in
/// another, so a batch costs a handful of statements however large it is (each statement is
/// a round trip to SQLite's thread). `None` when a constraint refused the insert; SQLite has
/// then undone that statement, and the caller retries the chunk one by one.
async fn insert_chunk(
    conn: &mut SqliteConnection,
    chunk: &[PendingEnqueue],
) -> Result<Option<Vec<Answer>>, StoreError> {
    use std::fmt::Write as _;
    if chunk.len() < 2 {
        return Ok(None);
    }
    // Only placeholders are generated; every value is bound.
    let mut sql = String::from(
        "INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, prompt, \
         submission, attempts, input_sha256, created_at, updated_at) VALUES ",
    );
    for k in 0..chunk.len() {
        let b = k * 9;
        let sep = if k == 0 { "" } else { ", " };
        let _ = write!(
            sql,
            "{sep}(?{}, ?{}, ?{}, 'queued', ?{}, ?{}, ?{}, ?{}, 0, ?{}, ?{}, ?{})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 9
        );
    }
    // Within one statement, a later row with the same delivery key as an earlier one is
    // skipped too, so duplicates inside a batch resolve like duplicates across batches.
    sql.push_str(" ON CONFLICT (tenant_id, source, delivery_id) DO NOTHING RETURNING id");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    let stamps: Vec<String> = chunk.iter().map(|i| ts(&i.at)).collect();
    for (item, at) in chunk.iter().zip(&stamps) {
        query = bind_submission_head!(query, item)
            .bind(&item.new.input_sha256)
            .bind(at);
    }
    let rows = match query.fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) if is_constraint(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let inserted = rows
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<HashSet<String>, _>>()?;

    let fresh: Vec<(&PendingEnqueue, &String)> = chunk
        .iter()
        .zip(&stamps)
        .filter(|(i, _)| inserted.contains(&i.id))
        .collect();
    if !fresh.is_empty() {
        let mut sql = String::from(
            "INSERT INTO jobs (id, submission_id, tenant_id, status, run_at, attempts, \
             created_at, updated_at) VALUES ",
        );
        for k in 0..fresh.len() {
            let b = k * 4;
            let sep = if k == 0 { "" } else { ", " };
            let _ = write!(
                sql,
                "{sep}(?{}, ?{}, ?{}, 'queued', ?{}, 0, ?{}, ?{})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 4,
                b + 4
            );
        }
        let job_ids: Vec<String> = fresh.iter().map(|_| new_id()).collect();
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for ((item, at), job_id) in fresh.iter().zip(&job_ids) {
            query = query
                .bind(job_id)
                .bind(&item.id)
                .bind(&item.new.tenant_id)
                .bind(*at);
        }
        // The submissions are in and the tenant exists, so nothing may refuse these rows;
        // if something does, the whole batch rolls back rather than leave a job-less one.
        query.execute(&mut *conn).await?;
    }

    let mut out = Vec::with_capacity(chunk.len());
    for item in chunk {
        if inserted.contains(&item.id) {
            out.push(Ok((item.record(), true)));
        } else {
            out.push(existing(conn, item).await?);
        }
    }
    Ok(Some(out))
}

/// The submission that already holds `item`'s delivery key (committed, or earlier in this
/// very batch: then it commits with us, before anyone hears back).
async fn existing(
    conn: &mut SqliteConnection,
    item: &PendingEnqueue,
) -> Result<Answer, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        submission_cols!(),
        " FROM submissions WHERE tenant_id = $1 AND source = $2 AND delivery_id = $3"
    ))
    .bind(&item.new.tenant_id)
    .bind(&item.new.source)
    .bind(&item.new.delivery_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => submission_from_row(&row).map(|r| (r, false)),
        None => Err(StoreError::Database(
            "delivery id conflicted but no submission was found".into(),
        )),
    })
}

/// Whether a failed statement was refused by a constraint: SQLite then undoes just that
/// statement and the transaction goes on. Anything else may have ended the transaction.
fn is_constraint(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if !matches!(d.kind(), ErrorKind::Other))
}

async fn enqueue_one(
    conn: &mut SqliteConnection,
    item: &PendingEnqueue,
) -> Result<Answer, StoreError> {
    let new = &item.new;
    let at_s = ts(&item.at);
    // DO NOTHING on the delivery key only: any other constraint still fails loudly.
    let inserted = bind_submission_head!(
        sqlx::query(
            "INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, prompt, \
             submission, attempts, input_sha256, created_at, updated_at) \
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, 0, $8, $9, $9) \
         ON CONFLICT (tenant_id, source, delivery_id) DO NOTHING",
        ),
        item
    )
    .bind(&new.input_sha256)
    .bind(&at_s)
    .execute(&mut *conn)
    .await;
    let inserted = match inserted {
        Ok(done) => done.rows_affected(),
        Err(e) if is_constraint(&e) => {
            return Ok(Err(insert_error(
                e,
                "submission",
                &format!("tenant {}", new.tenant_id),
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if inserted == 0 {
        return existing(conn, item).await;
    }
    let job = sqlx::query(
        "INSERT INTO jobs (id, submission_id, tenant_id, status, run_at, attempts, \
             created_at, updated_at) \
         VALUES ($1, $2, $3, 'queued', $4, 0, $4, $4)",
    )
    .bind(new_id())
    .bind(&item.id)
    .bind(&new.tenant_id)
    .bind(&at_s)
    .execute(&mut *conn)
    .await;
    if let Err(e) = job {
        if !is_constraint(&e) {
            return Err(e.into());
        }
        // Keep the pair atomic: take the submission back out (same transaction).
        sqlx::query("DELETE FROM submissions WHERE id = $1")
            .bind(&item.id)
            .execute(&mut *conn)
            .await?;
        return Ok(Err(e.into()));
    }
    Ok(Ok((item.record(), true)))
}

/// The row holding a delivery key, with what [`holder_from_row`] needs besides the record.
const HOLDER_SQL: &str = concat!(
    "SELECT ",
    submission_cols!(),
    ", input_sha256, claim_token, claim_expires_at FROM submissions \
     WHERE tenant_id = $1 AND source = $2 AND delivery_id = $3"
);

fn holder_from_row(row: &SqliteRow) -> Result<KeyHolder, StoreError> {
    let record = submission_from_row(row)?;
    let token: Option<String> = row.try_get("claim_token")?;
    let expires: Option<String> = row.try_get("claim_expires_at")?;
    let claim = match (token, expires) {
        (Some(token), Some(expires)) if record.status == SubmissionStatus::Grading => {
            Some(KeyClaim {
                submission_id: record.id.clone(),
                token,
                expires_at: parse_ts(&expires)?,
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

fn submission_from_row(row: &SqliteRow) -> Result<SubmissionRecord, StoreError> {
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
        attempts: row.try_get("attempts")?,
        error: row.try_get("error")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
    }
    .into_record()
}

fn tenant_from_row(row: &SqliteRow) -> Result<Tenant, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(Tenant {
        settings: from_json(row.try_get("settings")?, &format!("tenant {id} settings"))?,
        name: row.try_get("name")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        id,
    })
}

/// One `audit_log` row (selected with `detail` as text) as an [`AuditEntry`].
fn audit_entry_from_row(r: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        tenant_id: r.try_get("tenant_id")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        subject: r.try_get("subject")?,
        detail: from_json(r.try_get("detail")?, "audit detail")?,
        at: parse_ts(r.try_get("at")?)?,
    })
}

fn human_grade_from_row(row: &SqliteRow) -> Result<HumanGrade, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(HumanGrade {
        scores: from_json(row.try_get("scores")?, &format!("human grade {id} scores"))?,
        flags: from_json(row.try_get("flags")?, &format!("human grade {id} flags"))?,
        tenant_id: row.try_get("tenant_id")?,
        submission_id: row.try_get("submission_id")?,
        rater: row.try_get("rater")?,
        override_reason: row.try_get("override_reason")?,
        comment: row.try_get("comment")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        id,
    })
}

/// Appends one audit entry on `conn`, so that it can join a larger transaction.
async fn insert_audit(conn: &mut SqliteConnection, e: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, subject, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.tenant_id)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject)
    .bind(to_json(&e.detail)?)
    .bind(ts(&e.at))
    .execute(conn)
    .await
    .map_err(|err| insert_error(err, "audit entry", "tenant"))?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // BEGIN IMMEDIATE serialises migrators across processes: the second waits for the
        // first to commit, then finds nothing pending.
        let mut tx = self.begin_write().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                 checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
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
            .bind(ts(&now()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: new_id(),
            name: name.to_string(),
            settings: TenantSettings::default(),
            created_at: now(),
        };
        sqlx::query("INSERT INTO tenants (id, name, settings, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(to_json(&tenant.settings)?)
            .bind(ts(&tenant.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| insert_error(e, &format!("tenant {name:?}"), "tenant"))?;
        Ok(tenant)
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query("SELECT id, name, settings, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query("SELECT id, name, settings, created_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
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
        let done = sqlx::query("UPDATE tenants SET settings = $1 WHERE id = $2")
            .bind(to_json(settings)?)
            .bind(tenant_id)
            .execute(&self.writer)
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
        .bind(ts(&key.created_at))
        .execute(&self.writer)
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
                    t.id, t.name, t.settings, t.created_at \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.reader)
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
            created_at: parse_ts(row.try_get("key_created_at")?)?,
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
        .bind(ts(&now()))
        .execute(&self.writer)
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
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|r| r.try_get("secret")).transpose()?)
    }

    async fn enqueue(&self, new: NewSubmission) -> Result<(SubmissionRecord, bool), StoreError> {
        let item = PendingEnqueue::new(new)?;
        let writer = self.writer.clone();
        self.enqueues
            .submit(item, move |batch| async move {
                let mut conn = writer.acquire().await?;
                commit_batch(&mut conn, &batch).await
            })
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
            " FROM submissions WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.reader)
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
                    " FROM submissions WHERE tenant_id = $1 AND status = $2 \
                      ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(tenant_id)
                .bind(status.as_str())
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    submission_cols!(),
                    " FROM submissions WHERE tenant_id = $1 \
                      ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(tenant_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.reader)
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
        let at_s = ts(&at);
        if !self.any_runnable(&at_s).await? {
            return Ok(None);
        }
        let until = later(at, lease);
        let mut tx = self.begin_write().await?;
        // Inside BEGIN IMMEDIATE nobody else can write, so choosing and claiming the job in
        // one statement cannot hand the same job to two workers.
        let Some(job) = sqlx::query(
            "UPDATE jobs SET status = 'leased', leased_by = $1, lease_until = $2, \
                 attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM jobs \
                 WHERE status IN ('queued', 'leased') \
                   AND ((status = 'queued' AND run_at <= $3) \
                        OR (status = 'leased' AND lease_until < $3)) \
                 ORDER BY run_at LIMIT 1) \
             RETURNING id, submission_id, attempts",
        )
        .bind(worker)
        .bind(ts(&until))
        .bind(&at_s)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job_id: String = job.try_get("id")?;
        let submission_id: String = job.try_get("submission_id")?;
        let attempts: i64 = job.try_get("attempts")?;
        let row = sqlx::query(concat!(
            "UPDATE submissions SET status = 'grading', attempts = $1, updated_at = $2 \
             WHERE id = $3 RETURNING ",
            submission_cols!()
        ))
        .bind(attempts)
        .bind(&at_s)
        .bind(&submission_id)
        .fetch_one(&mut *tx)
        .await?;
        let submission = submission_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(LeasedJob {
            job_id,
            submission,
            attempt: to_u32(attempts, "job attempts")?,
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
        let at_s = ts(&at);
        let report_json = to_json(report)?;
        let mut tx = self.begin_write().await?;
        let Some(job) = sqlx::query(
            "UPDATE jobs SET status = 'done', lease_until = NULL, last_error = NULL, \
                 updated_at = $1 \
             WHERE id = $2 AND leased_by = $3 AND status = 'leased' \
             RETURNING submission_id, tenant_id",
        )
        .bind(&at_s)
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
                "UPDATE submissions SET report = $1, status = 'graded', error = NULL, \
                     updated_at = $2, report_prompt = $4, report_prompt_id = $5, \
                     injection_suspected = $6, red_flags = $7, needs_review = $8, \
                     min_confidence = $9, escalated = $10 \
                 WHERE id = $3 RETURNING input_sha256",
            )
            .bind(&report_json)
            .bind(&at_s)
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
             WHERE t.id = $4 AND json_extract(t.settings, '$.callback_url') IS NOT NULL \
             ON CONFLICT (submission_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(&submission_id)
        .bind(&at_s)
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
        let at_s = ts(&item.at);
        let summary = ReportSummary::of(report);
        let mut tx = self.begin_write().await?;
        // A claim on the key gives way to the graded row in this transaction (see the trait).
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
                 VALUES ($1, $2, $3, 'graded', $4, $5, $6, $7, $8, 1, $9, $10, $10, \
                     $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT (tenant_id, source, delivery_id) DO NOTHING",
                ),
                item
            )
            .bind(&graded.report_json)
            .bind(&new.input_sha256)
            .bind(&at_s),
            &summary
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "submission", &format!("tenant {}", new.tenant_id)))?
        .rows_affected();
        if inserted == 0 {
            let earlier = existing(&mut tx, item).await?;
            tx.rollback().await?;
            return earlier.map(|(record, _)| record);
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
        let item = PendingEnqueue::new(new.clone())?;
        let at_s = ts(&item.at);
        let claim = KeyClaim {
            submission_id: item.id.clone(),
            token: new_id(),
            expires_at: later(item.at, lease),
        };
        // BEGIN IMMEDIATE: the insert and, when it conflicts, the read of the holder see the
        // same state (nobody can release the claim in between).
        let mut tx = self.begin_write().await?;
        let inserted = bind_submission_head!(
        sqlx::query(
            "INSERT INTO submissions (id, tenant_id, stage, status, source, delivery_id, prompt, \
                 submission, attempts, input_sha256, created_at, updated_at, claim_token, \
                 claim_expires_at) \
             VALUES ($1, $2, $3, 'grading', $4, $5, $6, $7, 1, $8, $9, $9, $10, $11) \
             ON CONFLICT (tenant_id, source, delivery_id) DO NOTHING",
        ),
        &item
        )
        .bind(&new.input_sha256)
        .bind(&at_s)
        .bind(&claim.token)
        .bind(ts(&claim.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "submission", &format!("tenant {}", new.tenant_id)))?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(ClaimOutcome::Claimed(claim));
        }
        let row = sqlx::query(HOLDER_SQL)
            .bind(&new.tenant_id)
            .bind(&new.source)
            .bind(&new.delivery_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.rollback().await?;
        match row {
            Some(row) => Ok(ClaimOutcome::Taken(Box::new(holder_from_row(&row)?))),
            None => Err(StoreError::Database(
                "delivery id conflicted but no submission was found".into(),
            )),
        }
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
            .fetch_optional(&self.reader)
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
        let done = sqlx::query(
            "UPDATE submissions SET claim_token = $1, claim_expires_at = $2, \
                 attempts = attempts + 1, updated_at = $3 \
             WHERE id = $4 AND tenant_id = $5 AND status = 'grading' AND claim_token = $6 \
               AND claim_expires_at < $3",
        )
        .bind(&claim.token)
        .bind(ts(&claim.expires_at))
        .bind(ts(&at))
        .bind(&expired.submission_id)
        .bind(tenant_id)
        .bind(&expired.token)
        .execute(&self.writer)
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
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'leased')")
                .fetch_one(&self.reader)
                .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
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
            .bind(ts(&micros(r.at)))
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
                 COALESCE(SUM(CASE WHEN tenant_id = $1 AND at >= $2 AND at < $3 \
                     THEN cost_usd END), 0.0) AS tenant_day, \
                 COALESCE(SUM(CASE WHEN tenant_id = $1 THEN cost_usd END), 0.0) AS tenant_month, \
                 COALESCE(SUM(CASE WHEN at >= $2 AND at < $3 THEN cost_usd END), 0.0) \
                     AS global_day, \
                 COALESCE(SUM(cost_usd), 0.0) AS global_month \
             FROM usage WHERE at >= $4 AND at < $5",
        )
        .bind(tenant)
        .bind(ts(&w.day_start))
        .bind(ts(&w.day_end))
        .bind(ts(&w.month_start))
        .bind(ts(&w.month_end))
        .fetch_one(&self.reader)
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
            "SELECT prompt, model, COUNT(*) AS gradings, SUM(samples) AS samples, \
                 SUM(cached_samples) AS cached_samples, SUM(prompt_tokens) AS prompt_tokens, \
                 SUM(completion_tokens) AS completion_tokens, \
                 SUM(cached_tokens) AS cached_tokens, SUM(cost_usd) AS cost_usd \
             FROM usage WHERE ($1 IS NULL OR tenant_id = $1) AND at >= $2 AND at < $3 \
             GROUP BY prompt, model ORDER BY prompt, model",
        )
        .bind(&filter.tenant)
        .bind(ts(&from))
        .bind(ts(&to))
        .fetch_all(&self.reader)
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
        let at_s = ts(&at);
        let (job_status, submission_status, run_at) = match retry_in {
            Some(d) => ("queued", "queued", Some(ts(&later(at, d)))),
            None => ("dead", "dead", None),
        };
        let mut tx = self.begin_write().await?;
        // A queued job has no holder; a dead one keeps the last worker for the record.
        let Some(job) = sqlx::query(
            "UPDATE jobs SET status = $1, run_at = COALESCE($2, run_at), \
                 leased_by = CASE WHEN $1 = 'queued' THEN NULL ELSE leased_by END, \
                 lease_until = NULL, last_error = $3, updated_at = $4 \
             WHERE id = $5 AND leased_by = $6 AND status = 'leased' \
             RETURNING submission_id",
        )
        .bind(job_status)
        .bind(run_at)
        .bind(error)
        .bind(&at_s)
        .bind(job_id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(());
        };
        let submission_id: String = job.try_get("submission_id")?;
        sqlx::query(
            "UPDATE submissions SET status = $1, error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(submission_status)
        .bind(error)
        .bind(&at_s)
        .bind(&submission_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_job(&self, job_id: &str, worker: &str) -> Result<(), StoreError> {
        let at_s = ts(&now());
        let mut tx = self.begin_write().await?;
        let Some(job) = sqlx::query(
            "UPDATE jobs SET status = 'queued', leased_by = NULL, lease_until = NULL, \
                 attempts = MAX(attempts - 1, 0), updated_at = $1 \
             WHERE id = $2 AND leased_by = $3 AND status = 'leased' \
             RETURNING submission_id, attempts",
        )
        .bind(&at_s)
        .bind(job_id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(());
        };
        let submission_id: String = job.try_get("submission_id")?;
        let attempts: i64 = job.try_get("attempts")?;
        sqlx::query(
            "UPDATE submissions SET status = 'queued', attempts = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(attempts)
        .bind(&at_s)
        .bind(&submission_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
            "SELECT id, tenant_id, submission_id, rater, scores, flags, override_reason, \
                 comment, created_at \
             FROM human_grades WHERE tenant_id = $1 AND submission_id = $2 \
             ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .bind(submission_id)
        .fetch_all(&self.reader)
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
            "SELECT h.submission_id, s.stage, h.rater, h.scores, s.report, h.created_at \
             FROM human_grades h \
             JOIN submissions s ON s.id = h.submission_id AND s.tenant_id = h.tenant_id \
             WHERE h.tenant_id = $1 AND s.report IS NOT NULL \
               AND ($2 IS NULL OR s.stage = $2) \
               AND ($3 IS NULL OR h.created_at >= $3) \
               AND ($4 IS NULL OR h.created_at <= $4) \
             ORDER BY h.created_at, h.id",
        )
        .bind(tenant_id)
        .bind(filter.stage.map(|s| s.as_str()))
        .bind(filter.since.as_ref().map(ts))
        .bind(filter.until.as_ref().map(ts))
        .fetch_all(&self.reader)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let raw = RawCalibration {
                submission_id: row.try_get("submission_id")?,
                stage: row.try_get("stage")?,
                rater: row.try_get("rater")?,
                scores: row.try_get("scores")?,
                report: row.try_get("report")?,
                graded_at: parse_ts(row.try_get("created_at")?)?,
            };
            out.extend(calibration_rows(raw, filter)?);
        }
        Ok(out)
    }

    async fn put_calibration_map(&self, map: &CalibrationMapRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calibration_maps (tenant_id, stage, dimension, prompt, map, n_pairs, \
                 fitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, stage, dimension, prompt) DO UPDATE SET \
                 map = excluded.map, n_pairs = excluded.n_pairs, fitted_at = excluded.fitted_at",
        )
        .bind(&map.tenant_id)
        .bind(map.stage.as_str())
        .bind(&map.dimension)
        .bind(&map.prompt)
        .bind(to_json(&map.map)?)
        .bind(i64::from(map.n_pairs))
        .bind(ts(&micros(map.fitted_at)))
        .execute(&self.writer)
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
            "SELECT tenant_id, stage, dimension, prompt, map, n_pairs, fitted_at \
             FROM calibration_maps WHERE tenant_id = $1 AND stage = $2 AND prompt = $3 \
             ORDER BY dimension",
        )
        .bind(tenant_id)
        .bind(stage.as_str())
        .bind(prompt)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let map: String = row.try_get("map")?;
                let stage: String = row.try_get("stage")?;
                Ok(CalibrationMapRecord {
                    tenant_id: row.try_get("tenant_id")?,
                    stage: parse_stage(&stage)?,
                    dimension: row.try_get("dimension")?,
                    prompt: row.try_get("prompt")?,
                    map: from_json(&map, "calibration map")?,
                    n_pairs: to_u32(row.try_get("n_pairs")?, "calibration map n_pairs")?,
                    fitted_at: parse_ts(row.try_get("fitted_at")?)?,
                })
            })
            .collect()
    }

    async fn add_human_grades(&self, grades: &[HumanGrade]) -> Result<(), StoreError> {
        if grades.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for grade in grades {
            let done = sqlx::query(
                "INSERT INTO human_grades (id, tenant_id, submission_id, rater, scores, flags, \
                     override_reason, comment, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
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
            .bind(ts(&grade.created_at))
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
        .bind(i64::from(attempt.attempt))
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.error)
        .bind(ts(&attempt.at))
        .execute(&self.writer)
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
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let status: Option<i64> = r.try_get("status")?;
                Ok(CallbackAttempt {
                    tenant_id: r.try_get("tenant_id")?,
                    submission_id: r.try_get("submission_id")?,
                    attempt: to_u32(r.try_get("attempt")?, "callback attempt")?,
                    status: status
                        .map(|s| {
                            u16::try_from(s).map_err(|_| {
                                StoreError::Corrupt(format!("callback HTTP status {s}"))
                            })
                        })
                        .transpose()?,
                    error: r.try_get("error")?,
                    at: parse_ts(r.try_get("at")?)?,
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
        let at_s = ts(&at);
        // Asked on a reader first, so that idle delivery loops polling the outbox do not
        // take the write lock (and delay enqueues) for nothing.
        let due = sqlx::query(
            "SELECT 1 FROM callback_outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
             LIMIT 1",
        )
        .bind(&at_s)
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let until = later(at, lease);
        let mut tx = self.begin_write().await?;
        // Inside BEGIN IMMEDIATE nobody else writes: choosing and claiming are one step.
        let rows = sqlx::query(
            "UPDATE callback_outbox SET leased_by = $1, next_attempt_at = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM callback_outbox \
                 WHERE status = 'pending' AND next_attempt_at <= $3 \
                 ORDER BY next_attempt_at LIMIT $4) \
             RETURNING id, tenant_id, submission_id, attempts",
        )
        .bind(worker)
        .bind(ts(&until))
        .bind(&at_s)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(PendingCallback {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    submission_id: r.try_get("submission_id")?,
                    attempts: to_u32(r.try_get("attempts")?, "callback attempts")?,
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
        let mut tx = self.begin_write().await?;
        let settled = sqlx::query(
            "UPDATE callback_outbox SET status = $1, attempts = attempts + 1, \
                 next_attempt_at = $2, leased_by = NULL, last_error = $3, updated_at = $4 \
             WHERE id = $5 AND leased_by = $6 AND status = 'pending'",
        )
        .bind(status)
        .bind(ts(&next_at))
        .bind(&attempt.error)
        .bind(ts(&at))
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
        .bind(i64::from(attempt.attempt))
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.error)
        .bind(ts(&attempt.at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_audit(&mut conn, entry).await
    }

    async fn audit_log(&self, tenant_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, actor, action, subject, detail, at FROM audit_log \
             WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_entry_from_row).collect()
    }

    async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM response_cache WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.reader)
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
        .bind(ts(&now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn cache_purge_prompt(&self, prompt_sha256: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM response_cache WHERE prompt_sha256 = $1")
            .bind(prompt_sha256)
            .execute(&self.writer)
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
            "SELECT tenant_id, actor, action, subject, detail, at FROM audit_log \
             WHERE tenant_id = $1 AND subject = $2 AND action = $3 ORDER BY id",
        )
        .bind(tenant_id)
        .bind(subject)
        .bind(action)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_entry_from_row).collect()
    }

    async fn graded_with_human_grades(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<(SubmissionRecord, Vec<HumanGrade>)>, StoreError> {
        // Bound parameters per statement stay far below SQLite's limit (32,766).
        const IDS_PER_QUERY: usize = 500;
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let marks = (0..chunk.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {} FROM submissions WHERE tenant_id = $1 AND status = 'graded' \
                 AND id IN ({marks})",
                submission_cols!()
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant_id);
            for id in chunk {
                query = query.bind(id);
            }
            let subs = query
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(submission_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let sql = format!(
                "SELECT id, tenant_id, submission_id, rater, scores, flags, override_reason, \
                     comment, created_at \
                 FROM human_grades WHERE tenant_id = $1 AND submission_id IN ({marks}) \
                 ORDER BY created_at, id"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant_id);
            for id in chunk {
                query = query.bind(id);
            }
            let mut grades: std::collections::HashMap<String, Vec<HumanGrade>> =
                std::collections::HashMap::new();
            for row in query.fetch_all(&self.reader).await?.iter() {
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
        // Only the summary columns (migration 0005), all in submissions_queue_idx, so the
        // tenant's rows are one covering-index range scan; human grades are looked up for the
        // status filter (EXISTS) and counted for the page's rows only.
        let rows = sqlx::query(
            "WITH q AS ( \
               SELECT s.id, s.tenant_id, s.stage, s.status, s.created_at, \
                 COALESCE(s.report_prompt, s.prompt) AS prompt, \
                 COALESCE(s.report_prompt_id, \
                          substr(s.prompt, 1, instr(s.prompt || '@', '@') - 1)) AS prompt_id, \
                 s.injection_suspected AS inj, s.red_flags AS reds, s.needs_review AS nr, \
                 COALESCE(s.min_confidence < $3, 0) AS lowconf, s.escalated AS esc \
               FROM submissions s \
               WHERE s.tenant_id = $1 AND ($2 IS NULL OR s.stage = $2) \
             ), page AS ( \
               SELECT q.*, CASE WHEN inj THEN 0 WHEN reds > 0 THEN 1 WHEN nr THEN 2 \
                 WHEN lowconf THEN 3 WHEN esc THEN 4 ELSE 5 END AS priority \
               FROM q \
               WHERE ($5 IS NULL OR prompt = $5 OR prompt_id = $5) \
                 AND ($6 IS NULL \
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
                   AND h.rater = $4) AS my_grades \
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
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(super::QueueItem {
                    stage: super::common::parse_stage(row.try_get("stage")?)?,
                    status: super::common::parse_status(row.try_get("status")?)?,
                    prompt: row.try_get("prompt")?,
                    created_at: super::common::parse_ts(row.try_get("created_at")?)?,
                    injection_suspected: row.try_get::<i64, _>("inj")? != 0,
                    red_flags: super::common::to_u32(row.try_get("reds")?, "red flag count")?,
                    needs_review: row.try_get::<i64, _>("nr")? != 0,
                    low_confidence: row.try_get::<i64, _>("lowconf")? != 0,
                    escalated: row.try_get::<i64, _>("esc")? != 0,
                    human_grades: super::common::to_u32(
                        row.try_get("n_grades")?,
                        "human grade count",
                    )?,
                    graded_by_rater: row.try_get::<i64, _>("my_grades")? > 0,
                    priority: u8::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(5),
                    id,
                })
            })
            .collect()
    }
}
