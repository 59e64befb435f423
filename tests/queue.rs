//! The review queue (`Store::review_queue`) read from the summary columns of `submissions`
//! (migration 0005): the columns written with every report, the backfill of rows graded
//! before the migration, and a timing of the queue at 2,000 graded submissions (ignored by
//! default: `cargo test --test queue -- --ignored --nocapture`).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use grader::domain::{
    CacheStatus, DimensionScore, Evidence, FlagKind, Format, GradeReport, GuardInfo, JudgeInfo,
    PromptRef, RaisedFlag, Recommendation, ReportStatus, Scale, Severity, SkillProfile, Speaker,
    Stage, Submission, Transcript, Turn, Usage,
};
use grader::store::{HumanGrade, NewSubmission, QueueFilter, QueueItem, QueueStatus, Store};
use sqlx::{Connection, Row};
use support::db::{Backend, TestDb};

both_backends!(
    summary_columns_are_written_with_every_report,
    backfill_of_rows_graded_before_0005_gives_the_same_queue,
);

/// The shipped 11 KB system-design transcript, as speaker-labelled turns.
const TRANSCRIPT: &str = include_str!("../examples/transcripts/system_design_strong.txt");

fn transcript() -> Transcript {
    let mut turns = Vec::new();
    let mut offset = 0;
    for line in TRANSCRIPT.lines() {
        let len = line.chars().count();
        if let Some((who, said)) = line.split_once(": ") {
            let start = offset + who.chars().count() + 2;
            turns.push(Turn {
                speaker: if who.eq_ignore_ascii_case("candidate") {
                    Speaker::Candidate
                } else {
                    Speaker::Interviewer
                },
                text: said.to_string(),
                start,
                end: start + said.chars().count(),
                start_ms: None,
                end_ms: None,
            });
        }
        offset += len + 1;
    }
    Transcript {
        format: Format::Speaker,
        text: TRANSCRIPT.to_string(),
        turns,
    }
}

fn evidence(quote: &str) -> Evidence {
    Evidence {
        quote: quote.to_string(),
        start: 10,
        end: 10 + quote.chars().count(),
        start_ms: None,
    }
}

/// A realistic report: the 11 KB transcript, five scored dimensions with rationales and
/// evidence, a green flag; everything that moves the queue off.
fn plain_report(stage: Stage) -> GradeReport {
    GradeReport {
        id: uuid::Uuid::new_v4().to_string(),
        created_at: Utc::now().to_rfc3339(),
        stage,
        prompt: PromptRef {
            id: "system_design".into(),
            version: "v1".into(),
            sha256: "cd".repeat(32),
        },
        judge: JudgeInfo {
            model: "gpt-test".into(),
            tier: "standard".into(),
            samples: 3,
            cached: false,
            cache: CacheStatus::Miss,
            escalated: false,
            repairs: 0,
        },
        status: ReportStatus::Scored,
        unscored_reason: None,
        scores: [
            "retrieval",
            "chunking",
            "evaluation",
            "grounding",
            "operations",
        ]
        .iter()
        .map(|d| DimensionScore {
            dimension: d.to_string(),
            score: Some(4.0),
            scale: Scale { min: 1, max: 5 },
            confidence: 1.0,
            rationale: "The candidate explains the trade-off and backs it with a concrete \
                        measurement plan and a fallback."
                .into(),
            evidence: vec![evidence("hybrid retrieval with BM25 and dense vectors")],
            samples: vec![4, 4, 4],
            calibrated: None,
        })
        .collect(),
        flags: vec![RaisedFlag {
            id: "measures_quality".into(),
            kind: FlagKind::Green,
            label: "Measures retrieval quality".into(),
            severity: Severity::Low,
            evidence: vec![],
        }],
        skill_profile: SkillProfile {
            layers: BTreeMap::new(),
            competent: 0,
            excellent: 0,
            assessed: 0,
            meets_bar: None,
        },
        rag_maturity: Some(3),
        overall: Some(0.75),
        recommendation: Recommendation::Hire,
        needs_review: false,
        review_reasons: vec![],
        dropped_quotes: 0,
        usage: Usage::default(),
        guard: GuardInfo::default(),
        transcript: transcript(),
        notice: "AI-generated and advisory.".into(),
    }
}

fn red_flag() -> RaisedFlag {
    RaisedFlag {
        id: "no_evaluation".into(),
        kind: FlagKind::Red,
        label: "No evaluation plan".into(),
        severity: Severity::High,
        evidence: vec![],
    }
}

/// The report of the i-th submission of a mixed tenant: every priority class occurs, in a
/// pattern that does not follow the insertion order.
fn mixed_report(i: usize) -> GradeReport {
    let stage = if i % 7 == 3 {
        Stage::HandsOn
    } else {
        Stage::SystemDesign
    };
    let mut r = plain_report(stage);
    match i % 11 {
        0 => r.guard.injection_suspected = true,
        1 => r.flags.push(red_flag()),
        2 => {
            r.flags.push(red_flag());
            r.flags.push(red_flag());
            r.needs_review = true;
        }
        3 | 4 => r.needs_review = true,
        5 => r.scores[2].confidence = 0.3,
        6 => r.scores[4].confidence = 0.55,
        7 => r.judge.escalated = true,
        8 => {
            r.scores.clear();
            r.status = ReportStatus::Unscored;
        }
        _ => {}
    }
    if i % 5 == 0 {
        r.prompt.version = "v2".into();
    }
    r
}

fn new_submission(tenant_id: &str, stage: Stage, prompt: Option<&str>) -> NewSubmission {
    NewSubmission {
        tenant_id: tenant_id.to_string(),
        submission: Submission {
            tenant: tenant_id.to_string(),
            stage,
            question: Some("Design a RAG system for support tickets.".into()),
            transcript: transcript(),
            candidate: None,
            external_id: None,
            metadata: serde_json::Value::Null,
        },
        source: "api".into(),
        delivery_id: None,
        prompt: prompt.map(str::to_string),
        input_sha256: "ab".repeat(32),
    }
}

/// Stores `n` graded submissions of the mixed pattern through `store_graded`.
async fn fill(store: &dyn Store, tenant_id: &str, n: usize) {
    for i in 0..n {
        let r = mixed_report(i);
        store
            .store_graded(new_submission(tenant_id, r.stage, None), &r)
            .await
            .expect("store graded");
    }
}

fn filter(low: f64) -> QueueFilter {
    QueueFilter {
        low_confidence: low,
        ..QueueFilter::default()
    }
}

async fn bench(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = &*db.store;
    let tenant = store.create_tenant("bench").await.unwrap();
    // A second tenant of the same size: the queue must not pay for other tenants' rows.
    let other = store.create_tenant("other").await.unwrap();
    let t = Instant::now();
    fill(store, &tenant.id, 2_000).await;
    fill(store, &other.id, 2_000).await;
    let report_bytes = serde_json::to_string(&mixed_report(10)).unwrap().len();
    eprintln!(
        "{backend:?}: stored 2 x 2,000 graded submissions ({report_bytes} B reports) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let all = filter(0.5);
    let unreviewed = QueueFilter {
        stage: Some(Stage::SystemDesign),
        status: Some(QueueStatus::Unreviewed),
        prompt: Some("system_design".into()),
        rater: Some("Ada".into()),
        low_confidence: 0.5,
    };
    for (name, f, offset) in [
        ("first page, no filter", all.clone(), 0u32),
        (
            "first page, stage+status+prompt+rater",
            unreviewed.clone(),
            0,
        ),
        ("page 40, no filter", all.clone(), 975),
    ] {
        // As web::queue asks: a page of 25 plus one to know whether there is a next page.
        // Warm up once, then the median of 7.
        store
            .review_queue(&tenant.id, &f, 26, offset)
            .await
            .unwrap();
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let page = store
                .review_queue(&tenant.id, &f, 26, offset)
                .await
                .unwrap();
            times.push(t.elapsed());
            assert!(!page.is_empty());
        }
        times.sort();
        eprintln!(
            "{backend:?}: review_queue {name}: median {:.2} ms (min {:.2}, max {:.2})",
            times[3].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[6].as_secs_f64() * 1e3
        );
    }
    if std::env::var_os("QUEUE_BENCH_KEEP").is_some() {
        // For EXPLAIN by hand: the database outlives the test (drop it yourself).
        eprintln!("{backend:?}: kept {} (tenant {})", db.url, tenant.id);
        std::mem::forget(db);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "timing, not a check: run with --ignored --nocapture"]
async fn bench_review_queue_sqlite() {
    bench(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "timing, not a check: run with --ignored --nocapture"]
async fn bench_review_queue_postgres() {
    bench(Backend::Postgres).await;
}

// ---------------------------------------------------------------- summary columns

/// The summary columns of one submission, read with raw SQL and normalized across backends:
/// (report_prompt, report_prompt_id, injection_suspected, red_flags, needs_review,
/// min_confidence, escalated).
type SummaryRow = (
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<f64>,
    i64,
);

const SUMMARY_SQL: &str = "SELECT report_prompt, report_prompt_id, \
     CAST(injection_suspected AS INTEGER) AS inj, CAST(red_flags AS BIGINT) AS reds, \
     CAST(needs_review AS INTEGER) AS nr, min_confidence, CAST(escalated AS INTEGER) AS esc \
     FROM submissions WHERE id = $1";

fn summary_of<R: Row>(row: &R) -> SummaryRow
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    // PostgreSQL's CAST(bool AS INTEGER) is int4; SQLite's integers are i64.
    let int = |name: &str| -> i64 {
        row.try_get::<i64, _>(name)
            .or_else(|_| row.try_get::<i32, _>(name).map(i64::from))
            .unwrap_or_else(|e| panic!("column {name}: {e}"))
    };
    (
        row.try_get("report_prompt").unwrap(),
        row.try_get("report_prompt_id").unwrap(),
        int("inj"),
        int("reds"),
        int("nr"),
        row.try_get("min_confidence").unwrap(),
        int("esc"),
    )
}

async fn summary_row(db: &TestDb, id: &str) -> SummaryRow {
    match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let row = sqlx::query(SUMMARY_SQL)
                .bind(id)
                .fetch_one(&mut c)
                .await
                .unwrap();
            summary_of(&row)
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let row = sqlx::query(SUMMARY_SQL)
                .bind(id)
                .fetch_one(&mut c)
                .await
                .unwrap();
            summary_of(&row)
        }
    }
}

/// Everything that moves a submission up the queue, at once.
fn loud_report() -> GradeReport {
    let mut r = plain_report(Stage::SystemDesign);
    r.prompt.version = "v3".into();
    r.guard.injection_suspected = true;
    r.flags.push(red_flag());
    r.flags.push(red_flag());
    r.needs_review = true;
    r.scores[0].confidence = 0.9;
    r.scores[1].confidence = 0.25;
    r.scores[3].confidence = 0.6;
    r.judge.escalated = true;
    r
}

/// No scores, nothing raised: the quietest report (min confidence NULL).
fn quiet_report() -> GradeReport {
    let mut r = plain_report(Stage::HandsOn);
    r.prompt.id = "hands_on".into();
    r.flags.clear();
    r.scores.clear();
    r.status = ReportStatus::Unscored;
    r
}

const LONG: Duration = Duration::from_secs(600);

/// Enqueues a submission and completes its job with `report`; returns the submission id.
async fn complete_with(store: &dyn Store, tenant_id: &str, report: &GradeReport) -> String {
    let (record, created) = store
        .enqueue(new_submission(
            tenant_id,
            report.stage,
            Some("requested@v0"),
        ))
        .await
        .unwrap();
    assert!(created);
    let job = store.lease_job("w1", LONG).await.unwrap().expect("a job");
    assert_eq!(job.submission.id, record.id);
    assert!(store.complete_job(&job.job_id, "w1", report).await.unwrap());
    record.id
}

async fn summary_columns_are_written_with_every_report(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = &*db.store;
    let tenant = store.create_tenant("acme").await.unwrap();
    let loud = (
        Some("system_design@v3".to_string()),
        Some("system_design".to_string()),
        1,
        2,
        1,
        Some(0.25),
        1,
    );
    let quiet = (
        Some("hands_on@v1".to_string()),
        Some("hands_on".to_string()),
        0,
        0,
        0,
        None,
        0,
    );

    // complete_job (the workers' path), both reports.
    let a = complete_with(store, &tenant.id, &loud_report()).await;
    let b = complete_with(store, &tenant.id, &quiet_report()).await;
    assert_eq!(summary_row(&db, &a).await, loud, "complete_job, loud");
    assert_eq!(summary_row(&db, &b).await, quiet, "complete_job, quiet");

    // store_graded (POST /v1/grade), both reports, then an idempotent replay with another
    // report: nothing is written, the first report's summary stays.
    let mut keyed = new_submission(&tenant.id, Stage::SystemDesign, None);
    keyed.delivery_id = Some("idem-1".into());
    let c = store
        .store_graded(keyed.clone(), &loud_report())
        .await
        .unwrap()
        .id;
    let d = store
        .store_graded(
            new_submission(&tenant.id, Stage::HandsOn, None),
            &quiet_report(),
        )
        .await
        .unwrap()
        .id;
    assert_eq!(summary_row(&db, &c).await, loud, "store_graded, loud");
    assert_eq!(summary_row(&db, &d).await, quiet, "store_graded, quiet");
    let replay = store.store_graded(keyed, &quiet_report()).await.unwrap();
    assert_eq!(replay.id, c);
    assert_eq!(summary_row(&db, &c).await, loud, "replay writes nothing");

    // A non-finite confidence is stored as JSON null, so it does not count as the minimum.
    let mut odd = plain_report(Stage::SystemDesign);
    odd.scores[0].confidence = f64::NAN;
    odd.scores[1].confidence = 0.7;
    let e = store
        .store_graded(new_submission(&tenant.id, Stage::SystemDesign, None), &odd)
        .await
        .unwrap()
        .id;
    assert_eq!(summary_row(&db, &e).await.5, Some(0.7));

    // A queued submission has no report: no prompt, nothing raised.
    let (queued, _) = store
        .enqueue(new_submission(
            &tenant.id,
            Stage::SystemDesign,
            Some("x@v1"),
        ))
        .await
        .unwrap();
    assert_eq!(
        summary_row(&db, &queued.id).await,
        (None, None, 0, 0, 0, None, 0)
    );

    // The queue reads exactly these.
    let items = store
        .review_queue(&tenant.id, &filter(0.3), 50, 0)
        .await
        .unwrap();
    let item = |id: &str| items.iter().find(|i| i.id == id).unwrap().clone();
    for id in [&a, &c] {
        let i = item(id);
        assert_eq!(i.prompt.as_deref(), Some("system_design@v3"));
        assert!(i.injection_suspected && i.needs_review && i.low_confidence && i.escalated);
        assert_eq!((i.red_flags, i.priority), (2, 0));
    }
    for id in [&b, &d] {
        let i = item(id);
        assert_eq!(i.prompt.as_deref(), Some("hands_on@v1"));
        assert!(!i.injection_suspected && !i.needs_review && !i.low_confidence && !i.escalated);
        assert_eq!((i.red_flags, i.priority), (0, 5));
    }
    // The threshold is applied at query time: 0.25 is not below 0.25.
    let items = store
        .review_queue(&tenant.id, &filter(0.25), 50, 0)
        .await
        .unwrap();
    assert!(!items.iter().find(|i| i.id == a).unwrap().low_confidence);
    // Prompt filter by id and by id@version, from the columns.
    let by = |p: &str| QueueFilter {
        prompt: Some(p.into()),
        ..filter(0.5)
    };
    let hits = store
        .review_queue(&tenant.id, &by("system_design@v3"), 50, 0)
        .await
        .unwrap();
    let mut got: Vec<String> = hits.into_iter().map(|i| i.id).collect();
    got.sort();
    let mut want = vec![a.clone(), c.clone()];
    want.sort();
    assert_eq!(got, want);
    let hits = store
        .review_queue(&tenant.id, &by("hands_on"), 50, 0)
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
}

// ---------------------------------------------------------------- backfill

/// Undoes migration 0005 by hand (drops its index and columns, forgets it was applied), so
/// the database is what 0001–0004 made of it, with the reports the store wrote.
async fn roll_back_to_0004(db: &TestDb) {
    const SQLITE: &str = "DROP INDEX submissions_queue_idx; \
        ALTER TABLE submissions DROP COLUMN report_prompt; \
        ALTER TABLE submissions DROP COLUMN report_prompt_id; \
        ALTER TABLE submissions DROP COLUMN injection_suspected; \
        ALTER TABLE submissions DROP COLUMN red_flags; \
        ALTER TABLE submissions DROP COLUMN needs_review; \
        ALTER TABLE submissions DROP COLUMN min_confidence; \
        ALTER TABLE submissions DROP COLUMN escalated; \
        DELETE FROM schema_migrations WHERE version = 5;";
    const POSTGRES: &str = "ALTER TABLE submissions DROP COLUMN report_prompt, \
        DROP COLUMN report_prompt_id, DROP COLUMN injection_suspected, \
        DROP COLUMN red_flags, DROP COLUMN needs_review, DROP COLUMN min_confidence, \
        DROP COLUMN escalated; \
        DELETE FROM schema_migrations WHERE version = 5;";
    match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(SQLITE).execute(&mut c).await.unwrap();
            let cols: Vec<String> =
                sqlx::query("SELECT name FROM pragma_table_info('submissions')")
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get("name"))
                    .collect();
            assert!(!cols.iter().any(|c| c == "red_flags"), "{cols:?}");
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(POSTGRES).execute(&mut c).await.unwrap();
        }
    }
}

/// Every queue view the UI can ask for, for comparing two stores page by page.
fn views() -> Vec<(QueueFilter, u32, u32)> {
    let mut out = Vec::new();
    for low in [0.5, 0.3, 0.0] {
        out.push((filter(low), 200, 0));
        out.push((filter(low), 7, 13));
    }
    for status in [
        QueueStatus::NeedsReview,
        QueueStatus::Unreviewed,
        QueueStatus::Reviewed,
        QueueStatus::Submission(grader::store::SubmissionStatus::Queued),
        QueueStatus::Submission(grader::store::SubmissionStatus::Graded),
    ] {
        out.push((
            QueueFilter {
                status: Some(status),
                rater: Some("Ada".into()),
                ..filter(0.5)
            },
            200,
            0,
        ));
    }
    for prompt in [
        "system_design",
        "system_design@v2",
        "requested",
        "requested@v0",
    ] {
        out.push((
            QueueFilter {
                prompt: Some(prompt.into()),
                ..filter(0.5)
            },
            200,
            0,
        ));
    }
    out.push((
        QueueFilter {
            stage: Some(Stage::HandsOn),
            ..filter(0.5)
        },
        200,
        0,
    ));
    out
}

async fn all_views(store: &dyn Store, tenant_id: &str) -> Vec<Vec<QueueItem>> {
    let mut out = Vec::new();
    for (f, limit, offset) in views() {
        out.push(
            store
                .review_queue(tenant_id, &f, limit, offset)
                .await
                .unwrap(),
        );
    }
    out
}

async fn backfill_of_rows_graded_before_0005_gives_the_same_queue(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = &*db.store;
    let tenant = store.create_tenant("acme").await.unwrap();
    // Graded through both write paths, every priority class, two prompt versions, no
    // scores, a NaN confidence; plus submissions without a report (requested prompt only)
    // and human grades.
    fill(store, &tenant.id, 40).await;
    let mut odd = plain_report(Stage::SystemDesign);
    odd.scores[0].confidence = f64::NAN;
    odd.scores[1].confidence = 0.4;
    store
        .store_graded(new_submission(&tenant.id, odd.stage, None), &odd)
        .await
        .unwrap();
    let worked = complete_with(store, &tenant.id, &loud_report()).await;
    complete_with(store, &tenant.id, &quiet_report()).await;
    for _ in 0..3 {
        store
            .enqueue(new_submission(
                &tenant.id,
                Stage::SystemDesign,
                Some("requested@v0"),
            ))
            .await
            .unwrap();
    }
    let graded = store
        .review_queue(&tenant.id, &filter(0.5), 200, 0)
        .await
        .unwrap();
    for (i, id) in [worked.as_str(), &graded[5].id, &graded[20].id]
        .into_iter()
        .enumerate()
    {
        store
            .add_human_grade(&HumanGrade {
                id: uuid::Uuid::new_v4().to_string(),
                tenant_id: tenant.id.clone(),
                submission_id: id.to_string(),
                rater: if i == 1 { "Ada" } else { "Bob" }.into(),
                scores: BTreeMap::from([("retrieval".to_string(), 3.0)]),
                flags: vec![],
                override_reason: None,
                comment: None,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let ids: Vec<String> = graded.iter().map(|i| i.id.clone()).collect();
    let mut written = Vec::new();
    for id in &ids {
        written.push(summary_row(&db, id).await);
    }
    // The queue from columns written in Rust by the store.
    let before = all_views(store, &tenant.id).await;
    assert_eq!(before[0].len(), 46);

    roll_back_to_0004(&db).await;
    // A new process starts on the 0004 database: `open` migrates, applying 0005 through
    // the store's own runner (checksum recorded), which backfills from the report JSON.
    let reopened = db.open_another().await;
    let mut backfilled = Vec::new();
    for id in &ids {
        backfilled.push(summary_row(&db, id).await);
    }
    assert_eq!(
        backfilled, written,
        "backfilled columns equal the written ones"
    );
    let after = all_views(&*reopened, &tenant.id).await;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b, a, "view {i}: {:?}", views()[i].0);
    }
    // And the reopened store is fully migrated: a second migrate finds nothing to do.
    reopened.migrate().await.unwrap();
}
