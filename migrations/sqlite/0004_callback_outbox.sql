-- Durable callback deliveries (the outbox). Mirrors migrations/postgres/0004_callback_outbox.sql.
--
-- One row per report to deliver to the tenant's callback URL, inserted by complete_job in
-- the transaction that stores the report, so a delivery is never lost between "graded" and
-- "sent": a process that exits mid-backoff leaves the row, and the next process's delivery
-- loop picks it up when next_attempt_at comes. Leasing a row moves next_attempt_at to the
-- end of the lease (leased_by names the holder), so a delivery loop that dies mid-POST gives
-- the row back by simply not settling it. The attempts themselves are logged in `callbacks`.
CREATE TABLE callback_outbox (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    -- One delivery per graded submission (a report is produced once).
    submission_id    TEXT NOT NULL UNIQUE REFERENCES submissions (id),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Attempts made so far (the next one is attempts + 1 in the delivery log).
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    leased_by        TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
-- The delivery loop's poll reads the head of this small index: only pending rows.
CREATE INDEX callback_outbox_due_idx ON callback_outbox (next_attempt_at)
    WHERE status = 'pending';
