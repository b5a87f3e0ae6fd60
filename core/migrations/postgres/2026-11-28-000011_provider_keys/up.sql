-- A tenant's own API key per AI provider (issue 8), sealed under the tenant data key
-- (XChaCha20-Poly1305, AAD "provider_keys.key_ct|<tenant>|<provider>"), so shredding the
-- tenant makes it unreadable with everything else. The pipeline uses it instead of the
-- platform's key for that provider. Never returned by the API.
CREATE TABLE provider_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    key_ct BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);
