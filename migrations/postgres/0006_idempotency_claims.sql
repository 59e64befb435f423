-- Idempotency-key claims of `POST /v1/grade`. Mirrors migrations/sqlite/0006_idempotency_claims.sql.
--
-- A synchronous grading with an Idempotency-Key first inserts its `submissions` row as a
-- claim: status `grading`, source `api`, delivery id = the key, no job, no report, and these
-- two columns set. The unique (tenant_id, source, delivery_id) makes the insert the one
-- arbiter across replicas. The owner replaces the claim with the graded row in the
-- transaction that stores the report (`store_graded`), or deletes it when the grading fails;
-- a claim whose owner died expires and another request takes it over (new token, new expiry).
--   claim_token       the current owner's token; NULL on every row that is not a claim
--   claim_expires_at  the lease: after it, another request may take the claim over
-- Nullable columns without defaults: adding them rewrites no rows.
ALTER TABLE submissions ADD COLUMN claim_token TEXT;
ALTER TABLE submissions ADD COLUMN claim_expires_at TIMESTAMPTZ;
