-- A tenant's follow-up rules: when (trigger), what (a free text sealed under the tenant's
-- data key), how often (limits) and when not (outside opening hours).
CREATE TABLE follow_up_rules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    trigger_stage TEXT,
    after_minutes BIGINT NOT NULL,
    message_ct BYTEA NOT NULL,
    max_per_lead INTEGER NOT NULL,
    min_gap_minutes BIGINT NOT NULL,
    respect_hours BOOLEAN NOT NULL,
    catch_up BOOLEAN NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX follow_up_rules_tenant ON follow_up_rules (tenant_id);

-- Each follow-up of a rule for a lead: the n-th (seq) exists once, whichever process
-- scheduled it; its state only moves from scheduled to sent, skipped or cancelled.
CREATE TABLE follow_ups (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule_id TEXT NOT NULL REFERENCES follow_up_rules (id),
    lead_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    anchor_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    message_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (rule_id, lead_id, seq)
);
CREATE INDEX follow_ups_tenant ON follow_ups (tenant_id, status);
CREATE INDEX follow_ups_lead ON follow_ups (lead_id);
