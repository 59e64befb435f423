-- The review queue's summary of each report, stored beside it so that a queue page reads a
-- few small columns instead of parsing every report (transcript included) of the tenant.
-- Mirrors migrations/postgres/0005_queue_summary.sql.
--
-- Written by the store from the GradeReport in the statement that stores the report
-- (store::ReportSummary: complete_job, store_graded); NULL / 0 while there is no report.
--   report_prompt        the report's prompt `id@version`
--   report_prompt_id     the report's prompt id
--   injection_suspected  guard.injection_suspected (0/1)
--   red_flags            how many raised flags are `red`
--   needs_review         needs_review (0/1)
--   min_confidence       the lowest dimension confidence; NULL when there are no scores.
--                        "Low confidence" compares it with a threshold at query time.
--   escalated            judge.escalated (0/1)
ALTER TABLE submissions ADD COLUMN report_prompt TEXT;
ALTER TABLE submissions ADD COLUMN report_prompt_id TEXT;
ALTER TABLE submissions ADD COLUMN injection_suspected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN red_flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN needs_review INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN min_confidence REAL;
ALTER TABLE submissions ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0;

-- Rows graded before this migration: the same values, from the stored report JSON (once).
UPDATE submissions SET
    report_prompt = json_extract(report, '$.prompt.id') || '@'
        || json_extract(report, '$.prompt.version'),
    report_prompt_id = json_extract(report, '$.prompt.id'),
    injection_suspected = COALESCE(json_extract(report, '$.guard.injection_suspected'), 0),
    red_flags = (SELECT COUNT(*) FROM json_each(report, '$.flags') f
                 WHERE json_extract(f.value, '$.kind') = 'red'),
    needs_review = COALESCE(json_extract(report, '$.needs_review'), 0),
    min_confidence = (SELECT MIN(json_extract(c.value, '$.confidence'))
                      FROM json_each(report, '$.scores') c),
    escalated = COALESCE(json_extract(report, '$.judge.escalated'), 0)
WHERE report IS NOT NULL;

-- The queue's index, covering every column a queue page reads from `submissions`: the page
-- is one range scan of the tenant's (and stage's) entries, never a table row. Table rows
-- would cost more than their size: SQLite appends added columns to the end of the record,
-- behind the submission body and the report, so reading them from the table walks each
-- row's overflow pages.
CREATE INDEX submissions_queue_idx ON submissions (
    tenant_id, stage, created_at, id, status, prompt, report_prompt, report_prompt_id,
    injection_suspected, red_flags, needs_review, min_confidence, escalated
);
