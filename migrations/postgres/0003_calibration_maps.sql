-- Isotonic calibration maps (calibration::IsotonicMap as JSON), one per tenant x stage x
-- dimension x prompt version (`id@version`); a refit replaces the row. Mirrors
-- migrations/sqlite/0003_calibration_maps.sql.
CREATE TABLE calibration_maps (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    stage       TEXT NOT NULL,
    dimension   TEXT NOT NULL,
    -- `id@version`
    prompt      TEXT NOT NULL,
    map         JSONB NOT NULL,
    n_pairs     INTEGER NOT NULL,
    fitted_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, stage, dimension, prompt)
);
