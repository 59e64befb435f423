//! What the SQLite and PostgreSQL stores share: the clock and ids, the SQLite timestamp
//! format, decoding of stored strings and JSON into domain types, the migration list type,
//! the `grading.completed` audit detail and the calibration join done in Rust. Keeping these
//! here means both backends answer with byte-for-byte the same records.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Semaphore};

use super::{
    AuditEntry, CalibrationFilter, CalibrationRow, NewSubmission, Role, StoreError,
    SubmissionRecord, SubmissionStatus,
};
use crate::domain::{GradeReport, Stage, Submission};

/// The current time truncated to microseconds: PostgreSQL's `TIMESTAMPTZ` keeps exactly
/// that much, so a record returned from a write equals the same record read back, on both
/// backends.
pub(crate) fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

/// `t` truncated to whole microseconds: what both backends keep of a caller's timestamp
/// (PostgreSQL would round, SQLite's text format truncates; truncating first makes them agree).
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// `t + d`, saturating at the far future instead of overflowing: a caller passing a huge
/// lease or retry delay means "not any time soon", not an error.
pub(crate) fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .filter(|t| t.timestamp() < FAR_FUTURE_SECS)
        .unwrap_or_else(far_future)
}

/// 9999-12-31T23:59:59Z: the last instant that still formats as a fixed-width RFC 3339 text,
/// so SQLite's text timestamps keep sorting correctly.
const FAR_FUTURE_SECS: i64 = 253_402_300_799;

pub(crate) fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(FAR_FUTURE_SECS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A new id: a UUIDv7 (48-bit millisecond timestamp, then 74 random bits), hyphenated.
/// Time-ordered ids make every id index grow at its right edge, so a burst of inserts dirties
/// a few index pages instead of one random page per row (several times the write throughput
/// on SQLite; less index bloat on PostgreSQL); the random part keeps them unguessable. Ids are
/// TEXT on both backends so that any string a client sends as an id is just "not found",
/// never a type error.
pub(crate) fn new_id() -> String {
    let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    let random = uuid::Uuid::new_v4().into_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&random[6..]);
    uuid::Builder::from_unix_timestamp_millis(millis, &tail)
        .into_uuid()
        .to_string()
}

/// SQLite's timestamp encoding: RFC 3339 in UTC with exactly six fractional digits and a `Z`,
/// e.g. `2025-01-31T09:05:00.000000Z`. Fixed width, so text order is time order and the queue
/// can compare `run_at <= ?` as strings (and still read it with `sqlite3`).
pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Encodes a submission for the `submissions.submission` column. The normalized transcript
/// holds every turn's text twice, once inside `transcript.text` and once in the turn itself;
/// a turn whose `text` is exactly the characters `start..end` of `transcript.text` (what
/// `ingest` always builds) is stored without it, which halves the row (an 11 KB transcript
/// was ~25 KB of JSON) and the WAL written behind every 202. A turn that does not match its
/// offsets keeps its text, so the encoding is lossless for any `Submission`.
/// [`decode_submission`] reads this shape and the older one (every turn with its text).
pub(crate) fn encode_submission(sub: &Submission) -> Result<String, StoreError> {
    let mut v = serde_json::to_value(sub)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))?;
    let offsets = char_offsets(&sub.transcript.text);
    if let Some(turns) = v
        .pointer_mut("/transcript/turns")
        .and_then(serde_json::Value::as_array_mut)
    {
        for (stored, turn) in turns.iter_mut().zip(&sub.transcript.turns) {
            let derivable = char_slice(&sub.transcript.text, &offsets, turn.start, turn.end)
                .is_some_and(|slice| slice == turn.text);
            if let (true, Some(obj)) = (derivable, stored.as_object_mut()) {
                obj.remove("text");
            }
        }
    }
    to_json(&v)
}

/// Decodes [`encode_submission`]'s shape: a turn without `text` gets the characters
/// `start..end` of `transcript.text` back. Rows written before that encoding (every turn
/// with its text) decode unchanged.
pub(crate) fn decode_submission(s: &str, what: &str) -> Result<Submission, StoreError> {
    let mut v: serde_json::Value = from_json(s, what)?;
    let text = v
        .pointer("/transcript/text")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    if let (Some(text), Some(turns)) = (
        text,
        v.pointer_mut("/transcript/turns")
            .and_then(serde_json::Value::as_array_mut),
    ) {
        let offsets = char_offsets(&text);
        for turn in turns
            .iter_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            if turn.contains_key("text") {
                continue;
            }
            let bound = |k: &str| {
                turn.get(k)
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
            };
            let slice = match (bound("start"), bound("end")) {
                (Some(start), Some(end)) => char_slice(&text, &offsets, start, end),
                _ => None,
            }
            .ok_or_else(|| {
                StoreError::Corrupt(format!("{what}: a turn has no text and no valid offsets"))
            })?;
            turn.insert("text".into(), serde_json::Value::String(slice.to_owned()));
        }
    }
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The byte offset of every character of `text`, plus `text.len()` at the end, so a
/// character range maps to a byte range in O(1).
fn char_offsets(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect()
}

/// The characters `start..end` of `text` (`offsets` from [`char_offsets`]); `None` when the
/// range is not inside the text.
fn char_slice<'t>(text: &'t str, offsets: &[usize], start: usize, end: usize) -> Option<&'t str> {
    if start > end {
        return None;
    }
    text.get(*offsets.get(start)?..*offsets.get(end)?)
}

pub(crate) fn parse_role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown role {s:?}")))
}

pub(crate) fn parse_stage(s: &str) -> Result<Stage, StoreError> {
    s.parse::<Stage>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse_status(s: &str) -> Result<SubmissionStatus, StoreError> {
    SubmissionStatus::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown submission status {s:?}")))
}

pub(crate) fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} out of range: {v}")))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every sqlx error not handled at its call site is a database error; the message keeps the
/// driver's text for the logs.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(crate) fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// Maps a failed insert: a UNIQUE violation is a `Conflict` on `what`, a foreign-key
/// violation means the tenant (or parent) named by `parent` does not exist.
pub(crate) fn insert_error(e: sqlx::Error, what: &str, parent: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(what.to_string())
    } else if is_fk_violation(&e) {
        StoreError::NotFound(parent.to_string())
    } else {
        e.into()
    }
}

/// A submission row as both backends read it: the dialects differ only in how timestamps
/// come back, so each backend fills this and the conversion to a record is shared.
pub(crate) struct RawSubmission {
    pub id: String,
    pub tenant_id: String,
    pub stage: String,
    pub status: String,
    pub source: String,
    pub delivery_id: Option<String>,
    pub prompt: Option<String>,
    pub submission: String,
    pub report: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RawSubmission {
    pub(crate) fn into_record(self) -> Result<SubmissionRecord, StoreError> {
        let what = |field: &str| format!("submission {} {field}", self.id);
        Ok(SubmissionRecord {
            stage: parse_stage(&self.stage)?,
            status: parse_status(&self.status)?,
            submission: decode_submission(&self.submission, &what("body"))?,
            report: match &self.report {
                Some(r) => Some(from_json(r, &what("report"))?),
                None => None,
            },
            attempts: to_u32(self.attempts, &what("attempts"))?,
            id: self.id,
            tenant_id: self.tenant_id,
            source: self.source,
            delivery_id: self.delivery_id,
            prompt: self.prompt,
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// What `enqueue` answers: the record and whether this call created it.
pub(crate) type Answer = Result<(SubmissionRecord, bool), StoreError>;

/// One `enqueue`, prepared (ids, time, JSON body) before it joins a group commit.
pub(crate) struct PendingEnqueue {
    pub new: NewSubmission,
    pub id: String,
    pub body: String,
    pub at: DateTime<Utc>,
}

impl PendingEnqueue {
    pub(crate) fn new(new: NewSubmission) -> Result<Self, StoreError> {
        Ok(PendingEnqueue {
            id: new_id(),
            body: encode_submission(&new.submission)?,
            at: now(),
            new,
        })
    }

    /// The record of a freshly created submission, without reading it back.
    pub(crate) fn record(&self) -> SubmissionRecord {
        let new = &self.new;
        SubmissionRecord {
            id: self.id.clone(),
            tenant_id: new.tenant_id.clone(),
            stage: new.submission.stage,
            status: SubmissionStatus::Queued,
            source: new.source.clone(),
            delivery_id: new.delivery_id.clone(),
            prompt: new.prompt.clone(),
            submission: new.submission.clone(),
            report: None,
            attempts: 0,
            error: None,
            created_at: self.at,
            updated_at: self.at,
        }
    }
}

struct Waiting {
    item: PendingEnqueue,
    reply: oneshot::Sender<Answer>,
}

/// Group commit for `enqueue`, the write behind every 202.
///
/// Each caller queues its submission, then waits for one of `lanes` permits. Whoever gets a
/// permit takes *everything* queued so far and writes it in one batch (one transaction on
/// SQLite, one statement per 64 on PostgreSQL), then every caller in the batch is answered
/// after its commit. While a batch commits, the next one gathers, so under load one commit
/// (one WAL flush) carries dozens of submissions; alone, a caller's batch is just itself.
/// A caller whose submission an earlier leader took stops waiting for a permit at once.
///
/// The batch runs in a spawned task, so a caller that goes away (a client hanging up) does
/// not roll back the other callers' submissions; a caller that goes away before its
/// submission was taken withdraws it, so nothing is stored for a request nobody answered.
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Waiting>>,
    lanes: Arc<Semaphore>,
}

impl GroupCommit {
    pub(crate) fn new(lanes: usize) -> Self {
        GroupCommit {
            queue: Mutex::new(Vec::new()),
            lanes: Arc::new(Semaphore::new(lanes)),
        }
    }

    /// A poisoned lock is still usable: push, take and retain are each one step, so a panic
    /// elsewhere cannot leave the queue half-updated.
    fn queue(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` and returns its answer once the batch carrying it has committed.
    /// `write` is called by the leader with the whole batch and must answer each item in
    /// order; its error (a failed commit) becomes every item's error.
    pub(crate) async fn submit<F, Fut>(&self, item: PendingEnqueue, write: F) -> Answer
    where
        F: FnOnce(Vec<PendingEnqueue>) -> Fut,
        Fut: Future<Output = Result<Vec<Answer>, StoreError>> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        let withdraw = Withdraw {
            commit: self,
            id: item.id.clone(),
        };
        self.queue().push(Waiting { item, reply });
        let permit = tokio::select! {
            biased;
            done = &mut answer => return interrupted_or(done),
            permit = self.lanes.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            return Err(StoreError::Database("enqueue lanes closed".into()));
        };
        // No await from here to the spawn: a cancelled caller cannot strand the batch.
        let batch = std::mem::take(&mut *self.queue());
        drop(withdraw);
        if !batch.is_empty() {
            let (items, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|w| (w.item, w.reply)).unzip();
            let written = write(items);
            tokio::spawn(async move {
                let results = written.await;
                drop(permit);
                match results {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Database(msg.clone())));
                        }
                    }
                }
            });
        }
        interrupted_or(answer.await)
    }
}

/// Takes a cancelled caller's submission back out of the queue if no leader took it yet.
struct Withdraw<'a> {
    commit: &'a GroupCommit,
    id: String,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.commit.queue().retain(|w| w.item.id != self.id);
    }
}

/// A batch whose task died before answering rolled back: nothing of it was stored.
fn interrupted_or(received: Result<Answer, oneshot::error::RecvError>) -> Answer {
    received.unwrap_or_else(|_| {
        Err(StoreError::Database(
            "the batch carrying this submission was interrupted; nothing was stored".into(),
        ))
    })
}

/// One embedded migration. `version` orders them; `sql` may hold several statements.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// Recorded when applied and compared on every start: an applied migration whose text
    /// changed afterwards is an error, not a silent drift between replicas.
    pub(crate) fn checksum(&self) -> String {
        sha256_hex(self.sql.as_bytes())
    }
}

/// Compares what the database says was applied with the embedded list and returns the
/// migrations still to apply, in order.
pub(crate) fn pending<'a>(
    all: &'a [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'a Migration>, StoreError> {
    for (version, checksum) in applied {
        match all.iter().find(|m| m.version == *version) {
            Some(m) if m.checksum() == *checksum => {}
            Some(m) => {
                return Err(StoreError::Migration(format!(
                "migration {} ({}) was changed after it was applied; add a new migration instead",
                m.version, m.name
            )))
            }
            None => {
                return Err(StoreError::Migration(format!(
                    "the database has migration {version}, which this build does not know: \
                     it was migrated by a newer version"
                )))
            }
        }
    }
    let mut todo: Vec<&Migration> = all
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect();
    todo.sort_by_key(|m| m.version);
    Ok(todo)
}

/// The audit entry written in the same transaction as a finished grading: which prompt
/// version and model produced the report, over which input, and a hash of the output, so a
/// later reader can prove what the system decided and from what (EU AI Act record keeping).
pub(crate) fn completion_audit(
    tenant_id: &str,
    submission_id: &str,
    worker: &str,
    input_sha256: &str,
    report: &GradeReport,
    report_json: &str,
    at: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant_id.to_string(),
        actor: format!("worker:{worker}"),
        action: "grading.completed".to_string(),
        subject: Some(submission_id.to_string()),
        detail: serde_json::json!({
            "report_id": report.id,
            "prompt": format!("{}@{}", report.prompt.id, report.prompt.version),
            "prompt_sha256": report.prompt.sha256,
            "model": report.judge.model,
            "tier": report.judge.tier,
            "samples": report.judge.samples,
            "input_sha256": input_sha256,
            "output_sha256": sha256_hex(report_json.as_bytes()),
            "status": report.status,
            "recommendation": report.recommendation,
            "needs_review": report.needs_review,
        }),
        at,
    }
}

/// A submission graded synchronously (`Store::store_graded`), prepared before its one
/// transaction: the submission id is the report's id, so `GET /v1/submissions/{report.id}`
/// finds it.
pub(crate) struct PendingGraded {
    pub item: PendingEnqueue,
    pub report_json: String,
}

impl PendingGraded {
    pub(crate) fn new(new: NewSubmission, report: &GradeReport) -> Result<Self, StoreError> {
        let mut item = PendingEnqueue::new(new)?;
        item.id = report.id.clone();
        Ok(PendingGraded {
            item,
            report_json: to_json(report)?,
        })
    }

    /// The record as stored: `graded`, one attempt, with its report.
    pub(crate) fn record(&self, report: &GradeReport) -> SubmissionRecord {
        SubmissionRecord {
            status: SubmissionStatus::Graded,
            report: Some(report.clone()),
            attempts: 1,
            ..self.item.record()
        }
    }

    /// The `grading.completed` entry written with it: the same detail as a worker's, with
    /// actor `sync:<source>` and `"sync": true`.
    pub(crate) fn audit(&self, report: &GradeReport) -> AuditEntry {
        let new = &self.item.new;
        let mut entry = completion_audit(
            &new.tenant_id,
            &self.item.id,
            "",
            &new.input_sha256,
            report,
            &self.report_json,
            self.item.at,
        );
        entry.actor = format!("sync:{}", new.source);
        if let Some(detail) = entry.detail.as_object_mut() {
            detail.insert("sync".into(), serde_json::Value::Bool(true));
        }
        entry
    }
}

/// A stored count back as `u64` (a negative one is corrupt).
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} out of range: {v}")))
}

/// A count as the databases' signed 64-bit integer, saturating (no real count gets there).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The half-open UTC windows `Store::usage_spent` sums over: `day` and its month.
pub(crate) struct UsageWindow {
    pub day_start: DateTime<Utc>,
    pub day_end: DateTime<Utc>,
    pub month_start: DateTime<Utc>,
    pub month_end: DateTime<Utc>,
}

pub(crate) fn usage_window(day: NaiveDate) -> UsageWindow {
    let first = day.with_day(1).unwrap_or(day);
    let next_month = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(NaiveDate::MAX);
    UsageWindow {
        day_start: day_start(day),
        day_end: day.succ_opt().map(day_start).unwrap_or_else(far_future),
        month_start: day_start(first),
        month_end: day_start(next_month).min(far_future()),
    }
}

/// `[from, to)` for a usage summary: `since` and `until` are inclusive UTC days; absent,
/// the year 1 and the far future (so the SQL needs no optional bounds).
pub(crate) fn usage_bounds(
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = since
        .map(day_start)
        .unwrap_or_else(|| day_start(NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default()));
    let to = until
        .and_then(|u| u.succ_opt())
        .map(day_start)
        .unwrap_or_else(far_future)
        .min(far_future());
    (from, to)
}

/// The part of a stored report calibration needs; parsing only this keeps the join cheap and
/// tolerant of report fields added later.
#[derive(Deserialize)]
struct ReportSummary {
    prompt: PromptSummary,
    judge: JudgeSummary,
    #[serde(default)]
    scores: Vec<ScoreSummary>,
}

#[derive(Deserialize)]
struct PromptSummary {
    id: String,
    version: String,
}

#[derive(Deserialize)]
struct JudgeSummary {
    model: String,
}

#[derive(Deserialize)]
struct ScoreSummary {
    dimension: String,
    score: Option<f64>,
}

/// One human grade joined with its submission, as read by either backend before the
/// per-dimension expansion.
pub(crate) struct RawCalibration {
    pub submission_id: String,
    pub stage: String,
    pub rater: String,
    pub scores: String,
    pub report: String,
    pub graded_at: DateTime<Utc>,
}

/// Whether `filter` (`id@version`, or a bare `id` for every version) names the report's prompt.
fn prompt_matches(filter: &str, id: &str, version: &str) -> bool {
    match filter.split_once('@') {
        Some((fid, fver)) => fid == id && fver == version,
        None => filter == id,
    }
}

/// Expands one human grade into a row per dimension the person scored, with the AI's score
/// for that dimension (None when the AI left it unscored or has no such dimension). The
/// stage and time filters are applied in SQL; prompt and model live inside the report JSON,
/// so they are applied here, identically for both backends.
pub(crate) fn calibration_rows(
    raw: RawCalibration,
    filter: &CalibrationFilter,
) -> Result<Vec<CalibrationRow>, StoreError> {
    let report: ReportSummary = from_json(
        &raw.report,
        &format!("submission {} report", raw.submission_id),
    )?;
    if let Some(p) = &filter.prompt {
        if !prompt_matches(p, &report.prompt.id, &report.prompt.version) {
            return Ok(Vec::new());
        }
    }
    if let Some(m) = &filter.model {
        if *m != report.judge.model {
            return Ok(Vec::new());
        }
    }
    let stage = parse_stage(&raw.stage)?;
    let human: std::collections::BTreeMap<String, f64> = from_json(
        &raw.scores,
        &format!("human grade scores of submission {}", raw.submission_id),
    )?;
    let prompt = format!("{}@{}", report.prompt.id, report.prompt.version);
    Ok(human
        .into_iter()
        .map(|(dimension, score)| CalibrationRow {
            submission_id: raw.submission_id.clone(),
            stage,
            prompt: prompt.clone(),
            model: report.judge.model.clone(),
            ai: report
                .scores
                .iter()
                .find(|s| s.dimension == dimension)
                .and_then(|s| s.score),
            dimension,
            rater: raw.rater.clone(),
            human: score,
            graded_at: raw.graded_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_timestamps_are_fixed_width_and_sort_as_time() {
        let a = DateTime::from_timestamp(1_700_000_000, 5_000).unwrap();
        let b = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        let c = DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        let (sa, sb, sc) = (ts(&a), ts(&b), ts(&c));
        assert_eq!(sa, "2023-11-14T22:13:20.000005Z");
        assert_eq!(sa.len(), sb.len());
        assert!(sa < sb && sb < sc);
        assert_eq!(parse_ts(&sb).unwrap(), b);
        assert!(parse_ts("yesterday").is_err());
    }

    #[test]
    fn later_saturates_instead_of_overflowing() {
        let t = now();
        assert_eq!(later(t, Duration::from_secs(2)), t + TimeDelta::seconds(2));
        let far = later(t, Duration::from_secs(u64::MAX));
        assert_eq!(ts(&far), "9999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn ids_are_uuid_v7_and_time_ordered() {
        let a = new_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_id();
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(a < b, "{a} < {b}");
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn pending_applies_new_and_rejects_edited_or_unknown() {
        let all = [
            Migration {
                version: 2,
                name: "b",
                sql: "select 2",
            },
            Migration {
                version: 1,
                name: "a",
                sql: "select 1",
            },
        ];
        let todo = pending(&all, &[]).unwrap();
        assert_eq!(todo.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2]);
        let done = [(1, all[1].checksum())];
        assert_eq!(pending(&all, &done).unwrap().len(), 1);
        let edited = [(1, "0".repeat(64))];
        assert!(matches!(
            pending(&all, &edited),
            Err(StoreError::Migration(_))
        ));
        let unknown = [(9, "x".to_string())];
        assert!(matches!(
            pending(&all, &unknown),
            Err(StoreError::Migration(_))
        ));
    }

    fn submission(text: &str, turns: Vec<crate::domain::Turn>) -> Submission {
        Submission {
            tenant: "t".into(),
            stage: Stage::SystemDesign,
            question: None,
            transcript: crate::domain::Transcript {
                format: crate::domain::Format::Speaker,
                text: text.into(),
                turns,
            },
            candidate: None,
            external_id: None,
            metadata: serde_json::Value::Null,
        }
    }

    fn turn(
        speaker: crate::domain::Speaker,
        text: &str,
        start: usize,
        end: usize,
    ) -> crate::domain::Turn {
        crate::domain::Turn {
            speaker,
            text: text.into(),
            start,
            end,
            start_ms: None,
            end_ms: Some(7),
        }
    }

    #[test]
    fn stored_submissions_keep_turn_text_once_and_round_trip() {
        use crate::domain::Speaker;
        // Offsets are characters: "é" and "→" are one character, several bytes.
        let text = "Interviewer: Pourquoi é?\nCandidate: Parce que → RAG.\n";
        let sub = submission(
            text,
            vec![
                turn(Speaker::Interviewer, "Pourquoi é?", 13, 24),
                turn(Speaker::Candidate, "Parce que → RAG.", 36, 52),
            ],
        );
        let stored = encode_submission(&sub).unwrap();
        assert_eq!(stored.matches("Parce que").count(), 1, "{stored}");
        assert_eq!(decode_submission(&stored, "s").unwrap(), sub);
        // The older shape (every turn with its text) still decodes.
        let old = to_json(&sub).unwrap();
        assert_eq!(old.matches("Parce que").count(), 2);
        assert_eq!(decode_submission(&old, "s").unwrap(), sub);
    }

    #[test]
    fn turns_that_do_not_match_their_offsets_keep_their_text() {
        use crate::domain::Speaker;
        let sub = submission(
            "Candidate: abc\n",
            vec![
                turn(Speaker::Candidate, "", 11, 14),
                turn(Speaker::Candidate, "elsewhere", 11, 99),
                turn(Speaker::Candidate, "abc", 11, 14),
            ],
        );
        let stored = encode_submission(&sub).unwrap();
        assert_eq!(stored.matches("\"text\"").count(), 3, "{stored}");
        assert_eq!(decode_submission(&stored, "s").unwrap(), sub);
        // A turn stored without text and with offsets outside the text is corrupt.
        let bad = stored
            .replace("\"text\":\"elsewhere\",", "")
            .replace(",\"text\":\"elsewhere\"", "");
        assert_ne!(bad, stored);
        assert!(matches!(
            decode_submission(&bad, "s"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn prompt_filter_takes_a_version_or_a_bare_id() {
        assert!(prompt_matches("sd@v2", "sd", "v2"));
        assert!(!prompt_matches("sd@v1", "sd", "v2"));
        assert!(prompt_matches("sd", "sd", "v2"));
        assert!(!prompt_matches("s", "sd", "v2"));
    }
}
