-- smartchat key store, PostgreSQL. Kept apart from the main database so that backups of
-- the main database never contain a tenant key (docs/ARCHITECTURE.md, "Key hierarchy").
CREATE TABLE keystore_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    master_recipient TEXT NOT NULL,
    check_ct BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE tenant_keys (
    tenant_id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    wrapped_identity BYTEA,
    created_at BIGINT NOT NULL,
    shredded_at BIGINT
);
CREATE TABLE service_keys (
    name TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    wrapped_secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
