-- Anonymized aggregates (privacy policy s.2 usage data, s.9 analytics after deletion):
-- counts per tenant, UTC day and hour (hour 24 = the whole day), metric and a coarse
-- dimension (an author kind, a provider, a latency bucket). No subject ids, pseudonyms,
-- text or numbers: `subjects` is how many distinct customers a cell was built from, so
-- that cells from fewer than five are suppressed when read. Written as events happen;
-- never rebuilt from raw data, so deletions elsewhere leave it unchanged.
CREATE TABLE analytics_cells (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    hour INTEGER NOT NULL,
    metric TEXT NOT NULL,
    dimension TEXT NOT NULL,
    value BIGINT NOT NULL,
    subjects BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, hour, metric, dimension)
);
