-- The review queue's summary of each report, stored beside it so that a queue page reads a
-- few small columns instead of parsing every report (transcript included) of the tenant.
-- Mirrors migrations/sqlite/0005_queue_summary.sql.
--
-- Written by the store from the GradeReport in the statement that stores the report
-- (store::ReportSummary: complete_job, store_graded); NULL / false / 0 while there is no
-- report.
--   report_prompt        the report's prompt `id@version`
--   report_prompt_id     the report's prompt id
--   injection_suspected  guard.injection_suspected
--   red_flags            how many raised flags are `red`
--   needs_review         needs_review
--   min_confidence       the lowest dimension confidence; NULL when there are no scores.
--                        "Low confidence" compares it with a threshold at query time.
--   escalated            judge.escalated
-- Constant defaults: PostgreSQL adds these columns without rewriting the table.
ALTER TABLE submissions
    ADD COLUMN report_prompt TEXT,
    ADD COLUMN report_prompt_id TEXT,
    ADD COLUMN injection_suspected BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN red_flags INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN needs_review BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN min_confidence DOUBLE PRECISION,
    ADD COLUMN escalated BOOLEAN NOT NULL DEFAULT false;

-- Rows graded before this migration: the same values, from the stored report. The report
-- is `json` (lz4 text): cast to jsonb once per row in `x`, then read from that.
UPDATE submissions s SET
    report_prompt = (x.r->'prompt'->>'id') || '@' || (x.r->'prompt'->>'version'),
    report_prompt_id = x.r->'prompt'->>'id',
    injection_suspected = COALESCE((x.r->'guard'->>'injection_suspected')::boolean, false),
    red_flags = (SELECT COUNT(*) FROM jsonb_array_elements(
                     CASE WHEN jsonb_typeof(x.r->'flags') = 'array'
                          THEN x.r->'flags' ELSE '[]'::jsonb END) f
                 WHERE f->>'kind' = 'red'),
    needs_review = COALESCE((x.r->>'needs_review')::boolean, false),
    min_confidence = (SELECT MIN((c->>'confidence')::float8) FROM jsonb_array_elements(
                          CASE WHEN jsonb_typeof(x.r->'scores') = 'array'
                               THEN x.r->'scores' ELSE '[]'::jsonb END) c),
    escalated = COALESCE((x.r->'judge'->>'escalated')::boolean, false)
FROM (SELECT id, report::jsonb AS r FROM submissions WHERE report IS NOT NULL) x
WHERE s.id = x.id;

-- No new index: a queue page is a range scan of submissions_tenant_created_idx
-- (tenant_id, created_at), and the heap rows it visits are small (the body and the report
-- are TOASTed out of line), so the summary columns come without touching the report.
