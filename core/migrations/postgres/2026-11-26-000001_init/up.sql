-- smartchat main database, PostgreSQL. Every column that can hold personal data is *_ct
-- (ciphertext) or *_blind (keyed hash); see docs/ARCHITECTURE.md.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    profile_ct BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    terminated_at BIGINT,
    purge_after BIGINT
);

CREATE TABLE phone_numbers (
    phone_number_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    access_token_ct BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX phone_numbers_tenant ON phone_numbers (tenant_id);

CREATE TABLE members (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    login_blind BYTEA NOT NULL,
    login_ct BYTEA NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, login_blind)
);

CREATE TABLE subjects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    wa_id_blind BYTEA,
    bsuid_blind BYTEA,
    phone_blind BYTEA,
    contact_ct BYTEA NOT NULL,
    objected BOOLEAN NOT NULL DEFAULT FALSE,
    opted_out BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, wa_id_blind),
    UNIQUE (tenant_id, bsuid_blind)
);
CREATE INDEX subjects_phone ON subjects (tenant_id, phone_blind);

CREATE TABLE subject_keys (
    subject_id TEXT PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    wrapped_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    phone_number_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    last_inbound_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);
CREATE INDEX conversations_subject ON conversations (subject_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    wamid TEXT,
    body_ct BYTEA,
    author TEXT NOT NULL,
    error_code INTEGER,
    created_at BIGINT NOT NULL,
    status_at BIGINT NOT NULL,
    UNIQUE (tenant_id, wamid)
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at);
CREATE INDEX messages_subject ON messages (subject_id, created_at);

CREATE TABLE leads (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    conversation_id TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    stage TEXT NOT NULL,
    source TEXT NOT NULL,
    details_ct BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX leads_tenant ON leads (tenant_id, updated_at);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant_id TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at BIGINT NOT NULL,
    locked_until BIGINT,
    last_error TEXT,
    dedupe_key TEXT UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, status, run_at);

-- The audit ledger (format: ledger/docs/ledger-format.md). Data transactions insert into
-- ledger_pending; the sequencer moves drafts into ledger_entries in one total order.
CREATE TABLE ledger_pending (
    id BIGSERIAL PRIMARY KEY,
    draft BYTEA NOT NULL,
    created_micros BIGINT NOT NULL
);
CREATE TABLE ledger_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    last_hash BYTEA NOT NULL,
    last_time_micros BIGINT NOT NULL
);
CREATE TABLE ledger_entries (
    seq BIGINT PRIMARY KEY,
    tenant_id BYTEA,
    kind INTEGER NOT NULL,
    time_micros BIGINT NOT NULL,
    entry BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX ledger_entries_tenant ON ledger_entries (tenant_id, seq);
CREATE TABLE ledger_tree (
    id BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);
CREATE TABLE ledger_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_micros BIGINT NOT NULL
);
-- The head row always exists (size 0 = empty log); sequencers lock it.
INSERT INTO ledger_head (id, size, last_hash, last_time_micros)
VALUES (1, 0, decode('0000000000000000000000000000000000000000000000000000000000000000', 'hex'), 0);
