-- grader schema, SQLite dialect. Mirrors migrations/postgres/0001_init.sql table for table.
-- Timestamps are TEXT in RFC 3339 UTC with exactly six fractional digits
-- ("2025-01-31T09:05:00.000000Z"): fixed width, so text order is time order.
-- JSON columns are TEXT holding a JSON document. Ids are TEXT (UUIDv7 strings).
-- Every row carries tenant_id, except response_cache (content-addressed, tenant-neutral).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    role        TEXT NOT NULL CHECK (role IN ('ingest', 'grader', 'admin')),
    -- sha256 hex of the full key; the key itself is never stored.
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

-- Webhook secrets are kept as given: verifying an HMAC needs the secret itself.
CREATE TABLE webhook_secrets (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    source      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, source)
);

CREATE TABLE submissions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    stage         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'grading', 'graded', 'dead')),
    source        TEXT NOT NULL,
    delivery_id   TEXT,
    prompt        TEXT,
    submission    TEXT NOT NULL,
    report        TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    input_sha256  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    -- Redelivery of the same webhook (or a repeated idempotency key) finds the first one.
    -- NULL delivery ids never conflict.
    UNIQUE (tenant_id, source, delivery_id)
);
CREATE INDEX submissions_tenant_created_idx ON submissions (tenant_id, created_at);
CREATE INDEX submissions_tenant_status_created_idx ON submissions (tenant_id, status, created_at);

CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    submission_id  TEXT NOT NULL REFERENCES submissions (id),
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    status         TEXT NOT NULL CHECK (status IN ('queued', 'leased', 'done', 'dead')),
    run_at         TEXT NOT NULL,
    leased_by      TEXT,
    lease_until    TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
-- The queue index: only unfinished jobs (status queued or leased), in run_at order, so a
-- lease reads the head of this small index however many finished jobs pile up; a full
-- (status, run_at) index would carry every done job forever and could not give one run_at
-- order across both runnable states.
CREATE INDEX jobs_pending_idx ON jobs (run_at) WHERE status IN ('queued', 'leased');
CREATE INDEX jobs_submission_idx ON jobs (submission_id);

CREATE TABLE human_grades (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    submission_id    TEXT NOT NULL REFERENCES submissions (id),
    rater            TEXT NOT NULL,
    scores           TEXT NOT NULL,
    flags            TEXT NOT NULL DEFAULT '[]',
    override_reason  TEXT,
    comment          TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX human_grades_submission_idx ON human_grades (tenant_id, submission_id);
CREATE INDEX human_grades_tenant_created_idx ON human_grades (tenant_id, created_at);

-- The delivery log of report callbacks.
CREATE TABLE callbacks (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    submission_id  TEXT NOT NULL REFERENCES submissions (id),
    attempt        INTEGER NOT NULL,
    status         INTEGER,
    error          TEXT,
    at             TEXT NOT NULL
);
CREATE INDEX callbacks_submission_idx ON callbacks (tenant_id, submission_id);

-- Append-only: the store has no API to change it and these triggers refuse to.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT,
    detail     TEXT NOT NULL DEFAULT 'null',
    at         TEXT NOT NULL
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- L2 response cache. Content-addressed and deliberately tenant-neutral: the key is a hash of
-- everything sent to the model (prompt version, model, rendered messages including the
-- candidate's text), so a hit returns exactly the answer the same request would get, and
-- replicas and tenants share paid answers without seeing each other's rows.
CREATE TABLE response_cache (
    key            TEXT PRIMARY KEY,
    prompt_sha256  TEXT NOT NULL,
    model          TEXT NOT NULL,
    value          TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX response_cache_prompt_idx ON response_cache (prompt_sha256);
