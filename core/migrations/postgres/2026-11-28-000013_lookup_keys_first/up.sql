-- The webhook batch finds stored messages by Meta's id and subjects by blind index, for
-- several tenants at once, with `= ANY($1)` on the leading column of a unique index. Led
-- by that column, the index is the only one that can serve the lookup, so the statement
-- keeps one generic plan per connection (see docs/ARCHITECTURE.md, "Storage"); led by
-- the tenant, the planner could also walk another tenant-led index. Uniqueness is
-- unchanged: still per (tenant, identifier).
CREATE UNIQUE INDEX messages_wamid_tenant ON messages (wamid, tenant_id);
ALTER TABLE messages DROP CONSTRAINT messages_tenant_id_wamid_key;
CREATE UNIQUE INDEX subjects_wa_id_blind_tenant ON subjects (wa_id_blind, tenant_id);
CREATE UNIQUE INDEX subjects_bsuid_blind_tenant ON subjects (bsuid_blind, tenant_id);
ALTER TABLE subjects DROP CONSTRAINT subjects_tenant_id_wa_id_blind_key,
    DROP CONSTRAINT subjects_tenant_id_bsuid_blind_key;
