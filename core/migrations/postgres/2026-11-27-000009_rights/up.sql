-- Data-subject requests (privacy policy s.8): who asked for which right, through which
-- channel, under which regime, when it is due, and where it stands. The subject is named
-- by id only; what a correction asks for is sealed under the tenant data key and cleared
-- once it is carried out. An open request is unique per (tenant, subject, right, what).
CREATE TABLE dsr_requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT,
    right_kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    regime TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    extended_at BIGINT,
    extension_reason TEXT,
    completed_at BIGINT,
    reason TEXT,
    record_count BIGINT,
    details_ct BYTEA,
    open_key TEXT UNIQUE
);
CREATE INDEX dsr_requests_tenant ON dsr_requests (tenant_id, status, due_at);

-- One-time codes sent to a number through the tenant's WhatsApp sender, to prove control
-- of it before a request made on the public endpoint proceeds. The number is held as a
-- blind index, the code as a keyed digest.
CREATE TABLE dsr_challenges (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    right_kind TEXT NOT NULL,
    regime TEXT NOT NULL,
    number_blind BYTEA NOT NULL,
    code_digest BYTEA NOT NULL,
    attempts INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    request_id TEXT,
    download_digest BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX dsr_challenges_number ON dsr_challenges (tenant_id, number_blind, created_at);

-- Legal holds: while one is active on a tenant (subject_id NULL) or a subject, deletion of
-- that data waits.
CREATE TABLE legal_holds (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT,
    reason TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    released_at BIGINT
);
CREATE INDEX legal_holds_tenant ON legal_holds (tenant_id);
