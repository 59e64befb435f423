-- Isotonic calibration maps (calibration::IsotonicMap as JSON), one per tenant x stage x
-- dimension x prompt version (`id@version`); a refit replaces the row. Mirrors
-- migrations/postgres/0003_calibration_maps.sql. Timestamps as in 0001 (fixed-width text).
CREATE TABLE calibration_maps (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    stage       TEXT NOT NULL,
    dimension   TEXT NOT NULL,
    -- `id@version`
    prompt      TEXT NOT NULL,
    map         TEXT NOT NULL,
    n_pairs     INTEGER NOT NULL,
    fitted_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, stage, dimension, prompt)
);
