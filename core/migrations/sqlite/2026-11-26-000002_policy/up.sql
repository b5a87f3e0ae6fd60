-- Policies as code: tenant overrides, platform policy versions, sub-processor registry
-- changes with their notices and objections (GDPR Art. 28(2) general authorisation).
ALTER TABLE tenants ADD COLUMN policy_overrides TEXT;

CREATE TABLE policy_versions (
    version TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE TABLE registry_changes (
    id TEXT PRIMARY KEY,
    processor TEXT NOT NULL,
    body TEXT NOT NULL,
    announced_at BIGINT NOT NULL,
    effective_at BIGINT NOT NULL
);

CREATE TABLE registry_notices (
    change_id TEXT NOT NULL REFERENCES registry_changes (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    notified_at BIGINT NOT NULL,
    PRIMARY KEY (change_id, tenant_id)
);

CREATE TABLE registry_objections (
    change_id TEXT NOT NULL REFERENCES registry_changes (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    objected_at BIGINT NOT NULL,
    PRIMARY KEY (change_id, tenant_id)
);
