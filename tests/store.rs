//! The `Store` contract, written once and run against both backends: every test below is an
//! async fn over a fresh database, and `store_tests!` instantiates it as `<name>::sqlite` (a
//! temporary file) and `<name>::postgres` (a database of its own on the local server).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use chrono::{TimeDelta, Utc};
use grader::budget::{MemoryLedger, Spent, StoreLedger, UsageFilter, UsageLedger, UsageRecord};
use grader::domain::{
    CacheStatus, DimensionScore, Format, GradeReport, GuardInfo, JudgeInfo, PromptRef,
    Recommendation, ReportStatus, Scale, SkillProfile, Stage, Transcript, Usage,
};
use grader::store::{
    self, AuditEntry, CalibrationFilter, CalibrationMapRecord, CallbackAttempt, HumanGrade,
    NewSubmission, Role, Store, StoreError, SubmissionStatus, TenantSettings,
};
use support::db::TestDb;
use support::fixtures::submission;

/// Runs each named test against SQLite and PostgreSQL.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::support::db::{Backend, TestDb};

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = TestDb::new(Backend::Sqlite).await;
                super::$name(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = TestDb::new(Backend::Postgres).await;
                super::$name(&db).await;
            }
        }
    )*};
}

store_tests!(
    migrations_are_idempotent_and_concurrency_safe,
    tenants_keys_and_webhook_secrets,
    reads_are_scoped_by_tenant,
    enqueue_is_atomic_and_idempotent_on_delivery_id,
    concurrent_enqueues_of_one_delivery_create_one_submission,
    concurrent_enqueues_share_commits_and_fail_alone,
    list_submissions_newest_first_with_filter_and_paging,
    concurrent_workers_lease_each_job_exactly_once,
    expired_lease_is_taken_over_and_the_old_worker_cannot_complete,
    failed_jobs_retry_then_dead_letter_with_reason,
    released_job_is_requeued_without_counting_the_attempt,
    human_grades_and_calibration_rows_with_filters,
    callbacks_are_logged_per_submission,
    callback_outbox_is_filled_by_complete_job_and_leased_to_one_loop,
    audit_log_appends_and_lists_newest_first,
    response_cache_get_put_and_purge_by_prompt,
    store_graded_writes_a_graded_submission_and_its_audit_without_a_job,
    queue_depth_counts_queued_and_leased_jobs,
    usage_is_summed_per_prompt_version_and_model_and_spent_per_window,
    calibration_maps_are_replaced_per_key_and_scoped_by_tenant,
    add_human_grades_is_all_or_nothing,
);

// ---------------------------------------------------------------- fixtures

fn new_sub(tenant_id: &str, source: &str, delivery: Option<&str>) -> NewSubmission {
    NewSubmission {
        tenant_id: tenant_id.to_string(),
        submission: submission("acme", Stage::SystemDesign, "I would chunk by section."),
        source: source.to_string(),
        delivery_id: delivery.map(str::to_string),
        prompt: Some("system_design@v1".into()),
        input_sha256: "ab".repeat(32),
    }
}

fn report(
    stage: Stage,
    prompt: (&str, &str),
    model: &str,
    scores: &[(&str, Option<f64>)],
) -> GradeReport {
    GradeReport {
        id: uuid::Uuid::new_v4().to_string(),
        created_at: Utc::now().to_rfc3339(),
        stage,
        prompt: PromptRef {
            id: prompt.0.into(),
            version: prompt.1.into(),
            sha256: "cd".repeat(32),
        },
        judge: JudgeInfo {
            model: model.into(),
            tier: "standard".into(),
            samples: 1,
            cached: false,
            cache: CacheStatus::Miss,
            escalated: false,
            repairs: 0,
        },
        status: ReportStatus::Scored,
        unscored_reason: None,
        scores: scores
            .iter()
            .map(|(d, s)| DimensionScore {
                dimension: d.to_string(),
                score: *s,
                scale: Scale { min: 1, max: 5 },
                confidence: 1.0,
                rationale: "because".into(),
                evidence: vec![],
                samples: vec![],
                calibrated: None,
            })
            .collect(),
        flags: vec![],
        skill_profile: SkillProfile {
            layers: BTreeMap::new(),
            competent: 0,
            excellent: 0,
            assessed: 0,
            meets_bar: None,
        },
        rag_maturity: None,
        overall: Some(0.5),
        recommendation: Recommendation::Hire,
        needs_review: false,
        review_reasons: vec![],
        dropped_quotes: 0,
        usage: Usage::default(),
        guard: GuardInfo::default(),
        transcript: Transcript {
            format: Format::Text,
            text: "Candidate: hi\n".into(),
            turns: vec![],
        },
        notice: "AI-generated and advisory.".into(),
    }
}

fn simple_report() -> GradeReport {
    report(
        Stage::SystemDesign,
        ("system_design", "v1"),
        "gpt-test",
        &[("retrieval", Some(4.0))],
    )
}

const LONG: Duration = Duration::from_secs(600);

/// Leases, completes and returns the submission id of the next job.
async fn grade_next(store: &dyn Store, worker: &str, r: &GradeReport) -> String {
    let job = store
        .lease_job(worker, LONG)
        .await
        .unwrap()
        .expect("a job to lease");
    assert!(store.complete_job(&job.job_id, worker, r).await.unwrap());
    job.submission.id
}

// ---------------------------------------------------------------- tests

async fn migrations_are_idempotent_and_concurrency_safe(db: &TestDb) {
    let store = &db.store;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    // Several "replicas" starting at once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let other = db.open_another().await;
        tasks.push(tokio::spawn(async move { other.migrate().await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    store.ping().await.unwrap();
    let t = store.create_tenant("acme").await.unwrap();
    assert_eq!(store.tenant(&t.id).await.unwrap(), Some(t));
}

async fn tenants_keys_and_webhook_secrets(db: &TestDb) {
    let s = &*db.store;
    let acme = s.create_tenant("acme").await.unwrap();
    assert!(matches!(
        s.create_tenant("acme").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.tenant_by_name("acme").await.unwrap().as_ref(),
        Some(&acme)
    );
    assert_eq!(s.tenant(&acme.id).await.unwrap().as_ref(), Some(&acme));
    assert_eq!(s.tenant_by_name("nope").await.unwrap(), None);
    assert_eq!(s.tenant("not-an-id").await.unwrap(), None);

    let settings = TenantSettings {
        callback_url: Some("https://ats.example/cb".into()),
        callback_secret: Some("whsec_abc".into()),
        blind_review: Some(false),
        keep_original: None,
        review_everything: Some(true),
    };
    s.update_tenant_settings(&acme.id, &settings).await.unwrap();
    assert_eq!(
        s.tenant(&acme.id).await.unwrap().unwrap().settings,
        settings
    );
    assert!(matches!(
        s.update_tenant_settings("missing", &settings).await,
        Err(StoreError::NotFound(_))
    ));

    let hash = "11".repeat(32);
    let key = s
        .create_api_key(&acme.id, Role::Grader, &hash, "gk_1234")
        .await
        .unwrap();
    assert_eq!((key.role, key.prefix.as_str()), (Role::Grader, "gk_1234"));
    let (found, tenant) = s.api_key_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found, key);
    assert_eq!(tenant.id, acme.id);
    assert_eq!(tenant.settings, settings);
    assert_eq!(s.api_key_by_hash(&"22".repeat(32)).await.unwrap(), None);
    assert!(matches!(
        s.create_api_key(&acme.id, Role::Admin, &hash, "x").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_api_key("missing", Role::Admin, &"33".repeat(32), "x")
            .await,
        Err(StoreError::NotFound(_))
    ));

    let other = s.create_tenant("globex").await.unwrap();
    s.set_webhook_secret(&acme.id, "greenhouse", "s1")
        .await
        .unwrap();
    assert_eq!(
        s.webhook_secret(&acme.id, "greenhouse")
            .await
            .unwrap()
            .as_deref(),
        Some("s1")
    );
    s.set_webhook_secret(&acme.id, "greenhouse", "s2")
        .await
        .unwrap();
    assert_eq!(
        s.webhook_secret(&acme.id, "greenhouse")
            .await
            .unwrap()
            .as_deref(),
        Some("s2")
    );
    assert_eq!(s.webhook_secret(&acme.id, "lever").await.unwrap(), None);
    assert_eq!(
        s.webhook_secret(&other.id, "greenhouse").await.unwrap(),
        None
    );
    assert!(matches!(
        s.set_webhook_secret("missing", "lever", "x").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn reads_are_scoped_by_tenant(db: &TestDb) {
    let s = &*db.store;
    let a = s.create_tenant("a").await.unwrap();
    let b = s.create_tenant("b").await.unwrap();
    let (rec, _) = s.enqueue(new_sub(&a.id, "api", Some("d1"))).await.unwrap();
    assert!(s.submission(&a.id, &rec.id).await.unwrap().is_some());
    assert_eq!(s.submission(&b.id, &rec.id).await.unwrap(), None);
    assert!(s
        .list_submissions(&b.id, None, 10, 0)
        .await
        .unwrap()
        .is_empty());
    // The same delivery id under another tenant is another submission.
    let (rec_b, created) = s.enqueue(new_sub(&b.id, "api", Some("d1"))).await.unwrap();
    assert!(created);
    assert_ne!(rec_b.id, rec.id);

    let grade = HumanGrade {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: b.id.clone(),
        submission_id: rec.id.clone(),
        rater: "bob".into(),
        scores: BTreeMap::from([("retrieval".to_string(), 3.0)]),
        flags: vec![],
        override_reason: None,
        comment: None,
        created_at: Utc::now(),
    };
    assert!(matches!(
        s.add_human_grade(&grade).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.human_grades(&b.id, &rec.id).await.unwrap().is_empty());
    let cb = CallbackAttempt {
        tenant_id: b.id.clone(),
        submission_id: rec.id.clone(),
        attempt: 1,
        status: Some(200),
        error: None,
        at: Utc::now(),
    };
    assert!(matches!(
        s.record_callback(&cb).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.callbacks(&b.id, &rec.id).await.unwrap().is_empty());

    // A graded submission stays invisible to the other tenant, and so does its audit trail.
    let id = grade_next(s, "w1", &simple_report()).await;
    let id2 = grade_next(s, "w1", &simple_report()).await;
    assert_eq!(
        HashSet::from([id, id2]),
        HashSet::from([rec.id.clone(), rec_b.id.clone()])
    );
    assert_eq!(s.submission(&b.id, &rec.id).await.unwrap(), None);
    let b_audit = s.audit_log(&b.id, 100).await.unwrap();
    assert_eq!(b_audit.len(), 1);
    assert_eq!(b_audit[0].subject.as_deref(), Some(rec_b.id.as_str()));
    assert!(s
        .calibration_rows(&b.id, &CalibrationFilter::default())
        .await
        .unwrap()
        .is_empty());
}

async fn enqueue_is_atomic_and_idempotent_on_delivery_id(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let (first, created) = s
        .enqueue(new_sub(&t.id, "greenhouse", Some("d1")))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.status, SubmissionStatus::Queued);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.report, None);
    assert_eq!(first.stage, Stage::SystemDesign);
    // What enqueue returned is exactly what is stored.
    assert_eq!(
        s.submission(&t.id, &first.id).await.unwrap().as_ref(),
        Some(&first)
    );

    // Redelivery: the first record, not a new one, and no second job.
    let mut again = new_sub(&t.id, "greenhouse", Some("d1"));
    again.input_sha256 = "ff".repeat(32);
    let (second, created) = s.enqueue(again).await.unwrap();
    assert!(!created);
    assert_eq!(second, first);

    // Same delivery id from another source, and no delivery id at all: new submissions.
    let (lever, created) = s
        .enqueue(new_sub(&t.id, "lever", Some("d1")))
        .await
        .unwrap();
    assert!(created);
    let (n1, c1) = s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();
    let (n2, c2) = s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();
    assert!(c1 && c2 && n1.id != n2.id);

    // An enqueue that fails (unknown tenant) leaves neither a submission nor a job.
    assert!(s
        .enqueue(new_sub("no-such-tenant", "api", Some("x")))
        .await
        .is_err());

    let mut leased = HashSet::new();
    while let Some(job) = s.lease_job("w", LONG).await.unwrap() {
        assert_eq!(job.attempt, 1);
        assert_eq!(job.submission.status, SubmissionStatus::Grading);
        leased.insert(job.submission.id);
    }
    let expected = HashSet::from([first.id, lever.id, n1.id, n2.id]);
    assert_eq!(leased, expected, "exactly one job per created submission");
}

async fn concurrent_enqueues_of_one_delivery_create_one_submission(db: &TestDb) {
    let t = db.store.create_tenant("acme").await.unwrap();
    // Two independent stores: the race is between connections, not only tasks.
    let stores: Vec<Arc<dyn Store>> = vec![db.store.clone(), db.open_another().await];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = stores[i % 2].clone();
        let sub = new_sub(&t.id, "ashby", Some("same-delivery"));
        tasks.push(tokio::spawn(async move { s.enqueue(sub).await }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for task in tasks {
        let (rec, c) = task.await.unwrap().unwrap();
        created += usize::from(c);
        ids.insert(rec.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert!(db.store.lease_job("w", LONG).await.unwrap().is_some());
    assert!(
        db.store.lease_job("w", LONG).await.unwrap().is_none(),
        "one job only"
    );
}

/// Concurrent enqueues are committed together (group commit); one bad submission in the
/// crowd (an unknown tenant) fails alone, and every other one is stored with its job.
async fn concurrent_enqueues_share_commits_and_fail_alone(db: &TestDb) {
    let t = db.store.create_tenant("acme").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = db.store.clone();
        let tenant = if i == 17 {
            "no-such-tenant".to_string()
        } else {
            t.id.clone()
        };
        // Every fifth is a redelivery of the one before it.
        let delivery = format!("d{}", i - usize::from(i % 5 == 4));
        let sub = new_sub(&tenant, "lever", Some(&delivery));
        tasks.push(tokio::spawn(async move { (i, s.enqueue(sub).await) }));
    }
    let mut ok = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok((rec, c)) => {
                assert_eq!(rec.tenant_id, t.id);
                created += usize::from(c);
                ok.insert(rec.id);
            }
            Err(e) => assert_eq!(i, 17, "only the unknown tenant fails: {e}"),
        }
    }
    // 40 calls: 8 redeliveries, and #17 failed (so #18's original stands alone).
    assert_eq!(created, 31);
    assert_eq!(ok.len(), 31);
    let listed = db
        .store
        .list_submissions(&t.id, None, 100, 0)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.clone()).collect::<HashSet<_>>(),
        ok
    );
    let mut leased = HashSet::new();
    while let Some(job) = db.store.lease_job("w", LONG).await.unwrap() {
        assert!(leased.insert(job.submission.id), "one job per submission");
    }
    assert_eq!(leased, ok);
}

async fn list_submissions_newest_first_with_filter_and_paging(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (rec, _) = s
            .enqueue(new_sub(&t.id, "api", Some(&format!("d{i}"))))
            .await
            .unwrap();
        ids.push(rec.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = s.list_submissions(&t.id, None, 10, 0).await.unwrap();
    let listed: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    let page: Vec<_> = s
        .list_submissions(&t.id, None, 2, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, newest_first[1..3]);

    let graded = grade_next(s, "w", &simple_report()).await;
    assert_eq!(graded, ids[0], "the oldest job is leased first");
    let done = s
        .list_submissions(&t.id, Some(SubmissionStatus::Graded), 10, 0)
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, graded);
    assert!(done[0].report.is_some());
    let queued = s
        .list_submissions(&t.id, Some(SubmissionStatus::Queued), 10, 0)
        .await
        .unwrap();
    assert_eq!(queued.len(), 4);
}

async fn concurrent_workers_lease_each_job_exactly_once(db: &TestDb) {
    let t = db.store.create_tenant("acme").await.unwrap();
    let mut expected = HashSet::new();
    for i in 0..50 {
        let (rec, _) = db
            .store
            .enqueue(new_sub(&t.id, "api", Some(&format!("d{i}"))))
            .await
            .unwrap();
        expected.insert(rec.id);
    }
    // Four workers over two independent stores (think: two replicas, two workers each).
    let stores: Vec<Arc<dyn Store>> = vec![db.store.clone(), db.open_another().await];
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut mine = Vec::new();
            while let Some(job) = s.lease_job(&worker, LONG).await.unwrap() {
                assert_eq!(job.worker, worker);
                assert_eq!(job.attempt, 1, "no job is leased twice");
                assert!(s
                    .complete_job(&job.job_id, &worker, &simple_report())
                    .await
                    .unwrap());
                mine.push(job.submission.id);
            }
            mine
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    assert_eq!(seen.len(), 50, "every job leased exactly once");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    let graded = db
        .store
        .list_submissions(&t.id, Some(SubmissionStatus::Graded), 100, 0)
        .await
        .unwrap();
    assert_eq!(graded.len(), 50);
    assert_eq!(db.store.audit_log(&t.id, 100).await.unwrap().len(), 50);
}

async fn expired_lease_is_taken_over_and_the_old_worker_cannot_complete(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let (rec, _) = s.enqueue(new_sub(&t.id, "api", Some("d1"))).await.unwrap();

    let a = s
        .lease_job("worker-a", Duration::from_millis(700))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.attempt, 1);
    assert!(a.lease_until > Utc::now() - TimeDelta::seconds(1));
    // While A's lease runs, nobody else gets the job.
    assert!(s.lease_job("worker-b", LONG).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(900)).await;

    // Worker A "died": its lease expired, so B takes the job over.
    let b = s
        .lease_job("worker-b", LONG)
        .await
        .unwrap()
        .expect("expired lease re-leased");
    assert_eq!(b.job_id, a.job_id);
    assert_eq!(b.attempt, 2);
    assert_eq!(b.submission.id, rec.id);

    // A comes back: it can neither complete, fail nor release the job any more.
    let late = report(Stage::SystemDesign, ("system_design", "v1"), "model-a", &[]);
    assert!(!s.complete_job(&a.job_id, "worker-a", &late).await.unwrap());
    s.fail_job(&a.job_id, "worker-a", "late failure", None)
        .await
        .unwrap();
    s.release_job(&a.job_id, "worker-a").await.unwrap();
    let now = s.submission(&t.id, &rec.id).await.unwrap().unwrap();
    assert_eq!(now.status, SubmissionStatus::Grading);
    assert_eq!(now.report, None);
    assert_eq!(now.error, None);

    let good = report(
        Stage::SystemDesign,
        ("system_design", "v2"),
        "model-b",
        &[("retrieval", Some(4.0))],
    );
    assert!(s.complete_job(&b.job_id, "worker-b", &good).await.unwrap());
    assert!(
        !s.complete_job(&b.job_id, "worker-b", &good).await.unwrap(),
        "only once"
    );
    let done = s.submission(&t.id, &rec.id).await.unwrap().unwrap();
    assert_eq!(done.status, SubmissionStatus::Graded);
    assert_eq!(done.report.as_ref(), Some(&good));
    assert_eq!(done.attempts, 2);
    assert!(s
        .lease_job("worker-c", Duration::ZERO)
        .await
        .unwrap()
        .is_none());

    // The grading is in the audit log, once, with what produced it.
    let audit = s.audit_log(&t.id, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    let e = &audit[0];
    assert_eq!(e.action, "grading.completed");
    assert_eq!(e.actor, "worker:worker-b");
    assert_eq!(e.subject.as_deref(), Some(rec.id.as_str()));
    assert_eq!(e.detail["prompt"], "system_design@v2");
    assert_eq!(e.detail["model"], "model-b");
    assert_eq!(e.detail["report_id"], good.id.as_str());
    assert_eq!(e.detail["input_sha256"], "ab".repeat(32).as_str());
    assert_eq!(e.detail["output_sha256"].as_str().map(str::len), Some(64));
}

async fn failed_jobs_retry_then_dead_letter_with_reason(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let (rec, _) = s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();

    // Retry later: queued again, with the error visible, not leasable before run_at.
    let j1 = s.lease_job("w", LONG).await.unwrap().unwrap();
    s.fail_job(
        &j1.job_id,
        "w",
        "provider 503",
        Some(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let now = s.submission(&t.id, &rec.id).await.unwrap().unwrap();
    assert_eq!(now.status, SubmissionStatus::Queued);
    assert_eq!(now.error.as_deref(), Some("provider 503"));
    assert_eq!(now.attempts, 1);
    assert!(
        s.lease_job("w", LONG).await.unwrap().is_none(),
        "backoff respected"
    );

    // A second submission whose retry is due at once.
    let (rec2, _) = s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();
    let j2 = s.lease_job("w", LONG).await.unwrap().unwrap();
    assert_eq!(j2.submission.id, rec2.id);
    s.fail_job(&j2.job_id, "w", "timeout", Some(Duration::ZERO))
        .await
        .unwrap();
    let j2b = s.lease_job("w2", LONG).await.unwrap().unwrap();
    assert_eq!((j2b.job_id.as_str(), j2b.attempt), (j2.job_id.as_str(), 2));

    // Out of attempts: dead, with the reason GET shows, and never leased again.
    s.fail_job(&j2b.job_id, "w2", "invalid output after 2 attempts", None)
        .await
        .unwrap();
    let dead = s.submission(&t.id, &rec2.id).await.unwrap().unwrap();
    assert_eq!(dead.status, SubmissionStatus::Dead);
    assert_eq!(
        dead.error.as_deref(),
        Some("invalid output after 2 attempts")
    );
    assert_eq!(dead.attempts, 2);
    assert!(s.lease_job("w", Duration::ZERO).await.unwrap().is_none());
    let dead_list = s
        .list_submissions(&t.id, Some(SubmissionStatus::Dead), 10, 0)
        .await
        .unwrap();
    assert_eq!(dead_list.len(), 1);
    // Completing a dead job is refused.
    assert!(!s
        .complete_job(&j2b.job_id, "w2", &simple_report())
        .await
        .unwrap());
}

async fn released_job_is_requeued_without_counting_the_attempt(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let (rec, _) = s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();
    let j = s.lease_job("w1", LONG).await.unwrap().unwrap();
    assert_eq!(j.attempt, 1);
    // Someone else's release is ignored.
    s.release_job(&j.job_id, "intruder").await.unwrap();
    assert!(s.lease_job("w2", LONG).await.unwrap().is_none());

    s.release_job(&j.job_id, "w1").await.unwrap();
    let now = s.submission(&t.id, &rec.id).await.unwrap().unwrap();
    assert_eq!(now.status, SubmissionStatus::Queued);
    assert_eq!(now.attempts, 0);
    let again = s.lease_job("w2", LONG).await.unwrap().unwrap();
    assert_eq!(again.job_id, j.job_id);
    assert_eq!(again.attempt, 1, "the released attempt did not count");
    assert!(!s
        .complete_job(&j.job_id, "w1", &simple_report())
        .await
        .unwrap());
    assert!(s
        .complete_job(&j.job_id, "w2", &simple_report())
        .await
        .unwrap());
}

async fn human_grades_and_calibration_rows_with_filters(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let mut sd = new_sub(&t.id, "api", Some("sd"));
    sd.submission.stage = Stage::SystemDesign;
    let mut ho = new_sub(&t.id, "api", Some("ho"));
    ho.submission.stage = Stage::HandsOn;
    let mut open = new_sub(&t.id, "api", Some("open"));
    open.submission.stage = Stage::SystemDesign;
    let (sd, _) = s.enqueue(sd).await.unwrap();
    let (ho, _) = s.enqueue(ho).await.unwrap();
    let r_sd = report(
        Stage::SystemDesign,
        ("system_design", "v2"),
        "gpt-a",
        &[("retrieval", Some(4.0)), ("chunking", None)],
    );
    let r_ho = report(
        Stage::HandsOn,
        ("hands_on", "v1"),
        "gpt-b",
        &[("prompting", Some(2.0))],
    );
    assert_eq!(grade_next(s, "w", &r_sd).await, sd.id);
    assert_eq!(grade_next(s, "w", &r_ho).await, ho.id);
    // Enqueued after the others were graded: stays ungraded.
    let (open, _) = s.enqueue(open).await.unwrap();

    let t0 = Utc::now() - TimeDelta::hours(3);
    let grade = |sub: &str, rater: &str, scores: &[(&str, f64)], hours_ago: i64| HumanGrade {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: t.id.clone(),
        submission_id: sub.to_string(),
        rater: rater.to_string(),
        scores: scores.iter().map(|(d, v)| (d.to_string(), *v)).collect(),
        flags: vec!["strong_evals".into()],
        override_reason: (rater == "carol").then(|| "AI missed the eval plan".to_string()),
        comment: Some("ok".into()),
        // Whole microseconds, as the store keeps them.
        created_at: chrono::DateTime::from_timestamp_micros(
            (Utc::now() - TimeDelta::hours(hours_ago)).timestamp_micros(),
        )
        .unwrap(),
    };
    let g1 = grade(
        &sd.id,
        "alice",
        &[("retrieval", 3.0), ("chunking", 2.0), ("scaling", 4.0)],
        2,
    );
    let g2 = grade(&sd.id, "carol", &[("retrieval", 5.0)], 1);
    let g3 = grade(&ho.id, "alice", &[("prompting", 2.0)], 0);
    let g_open = grade(&open.id, "alice", &[("retrieval", 1.0)], 0);
    for g in [&g1, &g2, &g3, &g_open] {
        s.add_human_grade(g).await.unwrap();
    }
    assert!(matches!(
        s.add_human_grade(&g1).await,
        Err(StoreError::Conflict(_))
    ));
    let mut missing = g1.clone();
    missing.id = uuid::Uuid::new_v4().to_string();
    missing.submission_id = "no-such-submission".into();
    assert!(matches!(
        s.add_human_grade(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.human_grades(&t.id, &sd.id).await.unwrap(),
        vec![g1.clone(), g2.clone()]
    );

    let rows = s
        .calibration_rows(&t.id, &CalibrationFilter::default())
        .await
        .unwrap();
    // One row per (human grade, dimension), ungraded submissions left out.
    assert_eq!(rows.len(), 5);
    let find = |rater: &str, dim: &str| {
        rows.iter()
            .find(|r| r.rater == rater && r.dimension == dim)
            .unwrap_or_else(|| panic!("row {rater}/{dim}"))
    };
    let r = find("alice", "retrieval");
    assert_eq!((r.human, r.ai), (3.0, Some(4.0)));
    assert_eq!(
        (r.prompt.as_str(), r.model.as_str()),
        ("system_design@v2", "gpt-a")
    );
    assert_eq!(
        (r.stage, r.submission_id.as_str()),
        (Stage::SystemDesign, sd.id.as_str())
    );
    assert_eq!(r.graded_at, g1.created_at);
    assert_eq!(
        find("alice", "chunking").ai,
        None,
        "the AI left it unscored"
    );
    assert_eq!(
        find("alice", "scaling").ai,
        None,
        "the AI has no such dimension"
    );
    assert_eq!(find("carol", "retrieval").ai, Some(4.0));
    assert_eq!(find("alice", "prompting").ai, Some(2.0));

    let tid = t.id.as_str();
    let count =
        |f: CalibrationFilter| async move { s.calibration_rows(tid, &f).await.unwrap().len() };
    let stage = |st| CalibrationFilter {
        stage: Some(st),
        ..Default::default()
    };
    assert_eq!(count(stage(Stage::SystemDesign)).await, 4);
    assert_eq!(count(stage(Stage::HandsOn)).await, 1);
    assert_eq!(count(stage(Stage::DeepDive)).await, 0);
    let prompt = |p: &str| CalibrationFilter {
        prompt: Some(p.into()),
        ..Default::default()
    };
    assert_eq!(count(prompt("system_design@v2")).await, 4);
    assert_eq!(count(prompt("system_design@v1")).await, 0);
    assert_eq!(count(prompt("hands_on")).await, 1);
    let model = |m: &str| CalibrationFilter {
        model: Some(m.into()),
        ..Default::default()
    };
    assert_eq!(count(model("gpt-b")).await, 1);
    assert_eq!(count(model("gpt-z")).await, 0);
    let since = CalibrationFilter {
        since: Some(t0 + TimeDelta::minutes(90)),
        ..Default::default()
    };
    assert_eq!(count(since).await, 2, "carol's and the hands-on grade");
    let window = CalibrationFilter {
        since: Some(t0),
        until: Some(g1.created_at),
        stage: Some(Stage::SystemDesign),
        ..Default::default()
    };
    assert_eq!(count(window).await, 3, "until is inclusive");
}

async fn callbacks_are_logged_per_submission(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let (rec, _) = s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();
    let at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let a1 = CallbackAttempt {
        tenant_id: t.id.clone(),
        submission_id: rec.id.clone(),
        attempt: 1,
        status: None,
        error: Some("connection refused".into()),
        at,
    };
    let a2 = CallbackAttempt {
        attempt: 2,
        status: Some(204),
        error: None,
        at: at + TimeDelta::seconds(2),
        ..a1.clone()
    };
    s.record_callback(&a2).await.unwrap();
    s.record_callback(&a1).await.unwrap();
    assert_eq!(s.callbacks(&t.id, &rec.id).await.unwrap(), vec![a1, a2]);
    assert!(s.callbacks(&t.id, "other").await.unwrap().is_empty());
}

async fn callback_outbox_is_filled_by_complete_job_and_leased_to_one_loop(db: &TestDb) {
    use grader::store::{CallbackNext, PendingCallback};
    let s = &*db.store;
    let with = s.create_tenant("with-callback").await.unwrap();
    s.update_tenant_settings(
        &with.id,
        &TenantSettings {
            callback_url: Some("http://127.0.0.1:9/cb".into()),
            callback_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let without = s.create_tenant("without-callback").await.unwrap();
    s.enqueue(new_sub(&with.id, "api", None)).await.unwrap();
    let graded = grade_next(s, "w", &simple_report()).await;
    s.enqueue(new_sub(&without.id, "api", None)).await.unwrap();
    grade_next(s, "w", &simple_report()).await;

    // complete_job queued exactly one delivery: the tenant with a callback URL's, due now.
    let leased = s.lease_callbacks("cb-1", LONG, 10).await.unwrap();
    assert_eq!(leased.len(), 1, "{leased:?}");
    let d = &leased[0];
    assert_eq!(
        (d.tenant_id.as_str(), d.submission_id.as_str(), d.attempts),
        (with.id.as_str(), graded.as_str(), 0)
    );
    // Leased: another loop (another replica's store) gets nothing.
    let other = db.open_another().await;
    assert!(other
        .lease_callbacks("cb-2", LONG, 10)
        .await
        .unwrap()
        .is_empty());
    let attempt = |n: u32, status: Option<u16>| CallbackAttempt {
        tenant_id: with.id.clone(),
        submission_id: graded.clone(),
        attempt: n,
        status,
        error: status.filter(|s| *s >= 300).map(|s| format!("HTTP {s}")),
        at: chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
    };
    // A loop that does not hold the lease can settle nothing.
    let stranger = PendingCallback {
        worker: "cb-2".into(),
        ..d.clone()
    };
    assert!(!s
        .finish_callback(&stranger, &attempt(1, Some(500)), CallbackNext::Failed)
        .await
        .unwrap());
    assert!(s.callbacks(&with.id, &graded).await.unwrap().is_empty());

    // Attempt 1 fails, retry due at once: logged, and leased again with one attempt counted.
    let a1 = attempt(1, Some(500));
    assert!(s
        .finish_callback(d, &a1, CallbackNext::Retry(Duration::ZERO))
        .await
        .unwrap());
    let again = other.lease_callbacks("cb-2", LONG, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    // The old holder lost it: its late settle writes nothing.
    assert!(!s
        .finish_callback(d, &attempt(1, Some(204)), CallbackNext::Delivered)
        .await
        .unwrap());
    // Attempt 2 fails, retry far away: not due for anyone now.
    let a2 = attempt(2, Some(503));
    assert!(other
        .finish_callback(&again[0], &a2, CallbackNext::Retry(LONG))
        .await
        .unwrap());
    assert!(s
        .lease_callbacks("cb-1", LONG, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.callbacks(&with.id, &graded).await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );

    // An expired lease (a loop that died mid-POST) is taken over; then delivered, done.
    s.enqueue(new_sub(&with.id, "api", None)).await.unwrap();
    let second = grade_next(s, "w", &simple_report()).await;
    let dying = s.lease_callbacks("cb-1", Duration::ZERO, 10).await.unwrap();
    assert_eq!(dying.len(), 1);
    assert_eq!(dying[0].submission_id, second);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let taken = other.lease_callbacks("cb-2", LONG, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    let ok = CallbackAttempt {
        submission_id: second.clone(),
        ..attempt(1, Some(204))
    };
    assert!(other
        .finish_callback(&taken[0], &ok, CallbackNext::Delivered)
        .await
        .unwrap());
    assert!(!s
        .finish_callback(&dying[0], &ok, CallbackNext::Delivered)
        .await
        .unwrap());
    assert_eq!(s.callbacks(&with.id, &second).await.unwrap(), vec![ok]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(s
        .lease_callbacks("cb-1", LONG, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn audit_log_appends_and_lists_newest_first(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let other = s.create_tenant("globex").await.unwrap();
    let base = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let entry = |i: i64, tenant: &str| AuditEntry {
        tenant_id: tenant.to_string(),
        actor: format!("key:{i}"),
        action: "report.viewed".into(),
        subject: Some(format!("sub-{i}")),
        detail: serde_json::json!({"i": i, "ip": null, "nested": {"ok": true}}),
        // Equal timestamps must still keep append order.
        at: base,
    };
    for i in 0..5 {
        s.audit(&entry(i, &t.id)).await.unwrap();
    }
    s.audit(&entry(99, &other.id)).await.unwrap();
    let log = s.audit_log(&t.id, 100).await.unwrap();
    assert_eq!(
        log,
        (0..5).rev().map(|i| entry(i, &t.id)).collect::<Vec<_>>()
    );
    let last_two = s.audit_log(&t.id, 2).await.unwrap();
    assert_eq!(last_two, vec![entry(4, &t.id), entry(3, &t.id)]);
    assert_eq!(
        s.audit_log(&other.id, 100).await.unwrap(),
        vec![entry(99, &other.id)]
    );
    let bad = AuditEntry {
        tenant_id: "missing".into(),
        ..entry(1, &t.id)
    };
    assert!(
        s.audit(&bad).await.is_err(),
        "every entry belongs to a tenant"
    );
}

async fn response_cache_get_put_and_purge_by_prompt(db: &TestDb) {
    let s = &*db.store;
    let (p1, p2) = ("a1".repeat(32), "b2".repeat(32));
    assert_eq!(s.cache_get("k1").await.unwrap(), None);
    s.cache_put("k1", &p1, "gpt-a", "{\"v\":1}").await.unwrap();
    s.cache_put("k2", &p1, "gpt-a", "two").await.unwrap();
    s.cache_put("k3", &p2, "gpt-b", "three").await.unwrap();
    assert_eq!(
        s.cache_get("k1").await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    s.cache_put("k1", &p1, "gpt-a", "one again").await.unwrap();
    assert_eq!(
        s.cache_get("k1").await.unwrap().as_deref(),
        Some("one again")
    );
    assert_eq!(s.cache_purge_prompt(&p1).await.unwrap(), 2);
    assert_eq!(s.cache_get("k1").await.unwrap(), None);
    assert_eq!(s.cache_get("k2").await.unwrap(), None);
    assert_eq!(s.cache_get("k3").await.unwrap().as_deref(), Some("three"));
    assert_eq!(s.cache_purge_prompt(&p1).await.unwrap(), 0);
}

// ---------------------------------------------------------------- single-backend checks

#[tokio::test]
async fn in_memory_sqlite_works_for_one_process() {
    let s = store::open("sqlite::memory:").await.unwrap();
    s.migrate().await.unwrap();
    let t = s.create_tenant("acme").await.unwrap();
    let (rec, created) = s.enqueue(new_sub(&t.id, "api", Some("d"))).await.unwrap();
    assert!(created);
    assert_eq!(s.submission(&t.id, &rec.id).await.unwrap(), Some(rec));
}

#[tokio::test]
async fn unknown_database_urls_are_refused() {
    for url in ["mysql://localhost/db", "grader.db", ""] {
        assert!(
            matches!(
                store::connect(url).await,
                Err(StoreError::UnsupportedUrl(_))
            ),
            "{url}"
        );
    }
    match store::connect("redis://user:hunter2@host/0").await {
        Err(StoreError::UnsupportedUrl(u)) => assert!(!u.contains("hunter2"), "{u}"),
        _ => panic!("expected UnsupportedUrl"),
    }
}

#[tokio::test]
async fn sqlite_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/grader.db");
    let s = store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    s.ping().await.unwrap();
    assert!(path.exists());
}

#[test]
fn test_database_urls_replace_only_the_database_name() {
    use support::db::with_database;
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
        "postgres://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
}

async fn store_graded_writes_a_graded_submission_and_its_audit_without_a_job(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    let other = s.create_tenant("other").await.unwrap();
    let r = simple_report();
    let stored = s
        .store_graded(new_sub(&t.id, "api", Some("k1")), &r)
        .await
        .unwrap();
    assert_eq!(stored.id, r.id, "the submission id is the report id");
    assert_eq!(stored.status, SubmissionStatus::Graded);
    assert_eq!(stored.report.as_ref(), Some(&r));
    assert_eq!(stored.attempts, 1);
    // What it returned is exactly what is stored; another tenant does not see it.
    assert_eq!(
        s.submission(&t.id, &r.id).await.unwrap().as_ref(),
        Some(&stored)
    );
    assert_eq!(s.submission(&other.id, &r.id).await.unwrap(), None);

    // One grading.completed entry, marked sync, with the worker's detail.
    let log = s.audit_log(&t.id, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "grading.completed");
    assert_eq!(log[0].actor, "sync:api");
    assert_eq!(log[0].subject.as_deref(), Some(r.id.as_str()));
    assert_eq!(log[0].detail["sync"], true);
    assert_eq!(log[0].detail["report_id"], r.id.as_str());
    assert_eq!(log[0].detail["prompt"], "system_design@v1");

    // The same delivery key again: the first record, nothing new written.
    let again = s
        .store_graded(new_sub(&t.id, "api", Some("k1")), &simple_report())
        .await
        .unwrap();
    assert_eq!(again, stored);
    assert_eq!(s.audit_log(&t.id, 10).await.unwrap().len(), 1);
    // ...and an enqueue with that key finds the graded submission too.
    let (found, created) = s.enqueue(new_sub(&t.id, "api", Some("k1"))).await.unwrap();
    assert!(!created);
    assert_eq!(found, stored);

    // No job was created: nothing to lease, the queue is empty.
    assert!(s.lease_job("w", LONG).await.unwrap().is_none());
    assert_eq!(s.queue_depth().await.unwrap(), 0);

    // A second report id taken again is a conflict; an unknown tenant is NotFound.
    assert!(matches!(
        s.store_graded(new_sub(&t.id, "api", None), &r).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.store_graded(new_sub("no-such-tenant", "api", None), &simple_report())
            .await,
        Err(StoreError::NotFound(_))
    ));
    let listed = s.list_submissions(&t.id, None, 10, 0).await.unwrap();
    assert_eq!(listed, vec![stored]);
}

async fn queue_depth_counts_queued_and_leased_jobs(db: &TestDb) {
    let s = &*db.store;
    let t = s.create_tenant("acme").await.unwrap();
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    for _ in 0..3 {
        s.enqueue(new_sub(&t.id, "api", None)).await.unwrap();
    }
    assert_eq!(s.queue_depth().await.unwrap(), 3);
    // A leased job still counts; a finished one does not.
    let job = s.lease_job("w", LONG).await.unwrap().unwrap();
    assert_eq!(s.queue_depth().await.unwrap(), 3);
    assert!(s
        .complete_job(&job.job_id, "w", &simple_report())
        .await
        .unwrap());
    assert_eq!(s.queue_depth().await.unwrap(), 2);
}

fn usage(at: &str, tenant: &str, prompt: &str, model: &str, cost: f64) -> UsageRecord {
    UsageRecord {
        at: at.parse().unwrap(),
        tenant: tenant.into(),
        stage: "system_design".into(),
        prompt: prompt.into(),
        prompt_sha256: "cd".repeat(32),
        model: model.into(),
        tier: "cheap".into(),
        samples: 3,
        cached_samples: 1,
        prompt_tokens: 1000,
        completion_tokens: 100,
        cached_tokens: 24,
        cost_usd: cost,
    }
}

async fn usage_is_summed_per_prompt_version_and_model_and_spent_per_window(db: &TestDb) {
    let s = &*db.store;
    let records = [
        usage("2026-11-28T10:00:00Z", "a", "system_design@v1", "mini", 1.0),
        usage("2026-11-29T10:00:00Z", "a", "system_design@v1", "mini", 2.0),
        usage("2026-11-29T11:00:00Z", "a", "system_design@v2", "mini", 0.5),
        usage("2026-11-29T12:00:00Z", "b", "system_design@v1", "big", 4.0),
        usage(
            "2026-10-31T23:59:59.999999Z",
            "a",
            "system_design@v1",
            "mini",
            8.0,
        ),
        usage(
            "2026-12-01T00:00:00Z",
            "a",
            "system_design@v1",
            "mini",
            16.0,
        ),
    ];
    s.record_usage(&records[..3]).await.unwrap();
    s.record_usage(&records[3..]).await.unwrap();
    s.record_usage(&[]).await.unwrap();

    // The store answers exactly what the in-memory ledger does for the same records.
    let memory = MemoryLedger::new();
    memory.add(&records);
    let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let spent = s.usage_spent("a", day).await.unwrap();
    assert_eq!(
        spent,
        Spent {
            tenant_day: 2.5,
            tenant_month: 3.5,
            global_day: 6.5,
            global_month: 7.5,
        }
    );
    assert_eq!(spent, memory.spent("a", day).await.unwrap());
    let nobody = s
        .usage_spent("c", NaiveDate::from_ymd_opt(2020, 1, 1).unwrap())
        .await
        .unwrap();
    assert_eq!(nobody, Spent::default());

    let filters = [
        UsageFilter::default(),
        UsageFilter {
            tenant: Some("a".into()),
            ..UsageFilter::default()
        },
        UsageFilter {
            since: Some(day),
            until: Some(day),
            ..UsageFilter::default()
        },
        UsageFilter {
            tenant: Some("nobody".into()),
            ..UsageFilter::default()
        },
    ];
    for f in &filters {
        assert_eq!(
            s.usage_summary(f).await.unwrap(),
            memory.summary(f).await.unwrap(),
            "{f:?}"
        );
    }
    let all = s.usage_summary(&UsageFilter::default()).await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.prompt.as_str(), r.model.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("system_design@v1", "big"),
            ("system_design@v1", "mini"),
            ("system_design@v2", "mini")
        ]
    );
    let v1_mini = &all[1];
    assert_eq!(
        (
            v1_mini.gradings,
            v1_mini.samples,
            v1_mini.cached_samples,
            v1_mini.prompt_tokens,
            v1_mini.completion_tokens,
            v1_mini.cached_tokens,
            v1_mini.cost_usd
        ),
        (4, 12, 4, 4000, 400, 96, 27.0)
    );
    // The ledger over the store answers the same through the budget's trait.
    let ledger = StoreLedger::new(db.store.clone());
    assert_eq!(ledger.spent("a", day).await.unwrap(), spent);
    assert_eq!(ledger.summary(&UsageFilter::default()).await.unwrap(), all);
}

fn whole_micros(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

async fn calibration_maps_are_replaced_per_key_and_scoped_by_tenant(db: &TestDb) {
    use grader::calibration::IsotonicMap;
    let s = &*db.store;
    let a = s.create_tenant("acme").await.unwrap();
    let b = s.create_tenant("other").await.unwrap();
    let map =
        |tenant: &str, stage: Stage, dim: &str, prompt: &str, y: &[f64]| CalibrationMapRecord {
            tenant_id: tenant.to_string(),
            stage,
            dimension: dim.to_string(),
            prompt: prompt.to_string(),
            map: IsotonicMap::fit(&[1.0, 3.0, 5.0][..y.len()], y).unwrap(),
            n_pairs: 12,
            fitted_at: whole_micros(Utc::now()),
        };
    let retrieval = map(
        &a.id,
        Stage::SystemDesign,
        "retrieval",
        "sd@v1",
        &[1.5, 2.0, 4.5],
    );
    let chunking = map(&a.id, Stage::SystemDesign, "chunking", "sd@v1", &[1.0, 3.0]);
    let other_prompt = map(&a.id, Stage::SystemDesign, "retrieval", "sd@v2", &[2.0]);
    let other_stage = map(&a.id, Stage::HandsOn, "retrieval", "sd@v1", &[2.0]);
    let other_tenant = map(&b.id, Stage::SystemDesign, "retrieval", "sd@v1", &[3.0]);
    for m in [
        &retrieval,
        &chunking,
        &other_prompt,
        &other_stage,
        &other_tenant,
    ] {
        s.put_calibration_map(m).await.unwrap();
    }
    assert_eq!(
        s.calibration_maps(&a.id, Stage::SystemDesign, "sd@v1")
            .await
            .unwrap(),
        vec![chunking.clone(), retrieval.clone()]
    );
    // A refit replaces the row of its key.
    let mut refit = map(
        &a.id,
        Stage::SystemDesign,
        "retrieval",
        "sd@v1",
        &[2.0, 2.5, 3.0],
    );
    refit.n_pairs = 30;
    s.put_calibration_map(&refit).await.unwrap();
    let got = s
        .calibration_maps(&a.id, Stage::SystemDesign, "sd@v1")
        .await
        .unwrap();
    assert_eq!(got, vec![chunking, refit]);
    assert_eq!(got[1].map.apply(4.0), 2.75);
    assert_eq!(
        s.calibration_maps(&b.id, Stage::SystemDesign, "sd@v1")
            .await
            .unwrap(),
        vec![other_tenant]
    );
    assert!(s
        .calibration_maps(&b.id, Stage::HandsOn, "sd@v1")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        s.put_calibration_map(&map("no-such-tenant", Stage::HandsOn, "x", "p@v1", &[1.0]))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn add_human_grades_is_all_or_nothing(db: &TestDb) {
    let s = &*db.store;
    let a = s.create_tenant("acme").await.unwrap();
    let b = s.create_tenant("other").await.unwrap();
    let (sub_a, _) = s.enqueue(new_sub(&a.id, "api", Some("a"))).await.unwrap();
    let (sub_b, _) = s.enqueue(new_sub(&b.id, "api", Some("b"))).await.unwrap();
    let grade = |sub: &str, rater: &str| HumanGrade {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: a.id.clone(),
        submission_id: sub.to_string(),
        rater: rater.to_string(),
        scores: BTreeMap::from([("retrieval".to_string(), 3.0)]),
        flags: vec![],
        override_reason: None,
        comment: None,
        created_at: whole_micros(Utc::now()),
    };
    // Another tenant's submission in the batch: nothing of the batch is stored.
    let bad = [grade(&sub_a.id, "alice"), grade(&sub_b.id, "bob")];
    assert!(matches!(
        s.add_human_grades(&bad).await,
        Err(StoreError::NotFound(m)) if m.contains(&sub_b.id)
    ));
    assert!(s.human_grades(&a.id, &sub_a.id).await.unwrap().is_empty());
    let good = [grade(&sub_a.id, "alice"), grade(&sub_a.id, "bob")];
    s.add_human_grades(&good).await.unwrap();
    assert_eq!(s.human_grades(&a.id, &sub_a.id).await.unwrap().len(), 2);
    s.add_human_grades(&[]).await.unwrap();
}
