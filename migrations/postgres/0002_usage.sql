-- Usage accounting in the store: one row per model a grading used (budget::UsageRecord), so
-- spend caps and `grader usage` hold across replicas and restarts. Mirrors
-- migrations/sqlite/0002_usage.sql. tenant_id has no foreign key: CLI gradings record usage
-- under tenant names that are not API tenants.
CREATE TABLE usage (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    stage              TEXT NOT NULL,
    -- `id@version`
    prompt             TEXT NOT NULL,
    prompt_sha256      TEXT NOT NULL,
    model              TEXT NOT NULL,
    tier               TEXT NOT NULL,
    samples            INTEGER NOT NULL,
    cached_samples     INTEGER NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    at                 TIMESTAMPTZ NOT NULL
);
-- Global spend in a window, and summaries by time.
CREATE INDEX usage_at_idx ON usage (at);
-- One tenant's spend in a window.
CREATE INDEX usage_tenant_at_idx ON usage (tenant_id, at);
