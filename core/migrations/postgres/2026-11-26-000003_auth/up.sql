-- Authentication (issue 8): server-side portal sessions and short-lived OIDC login
-- attempts. Neither holds a credential: only BLAKE3 digests of the random secrets the
-- browser keeps in cookies (see api/src/auth/mod.rs).
CREATE TABLE sessions (
    id_hash BYTEA PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_member ON sessions (member_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE login_attempts (
    state_hash BYTEA PRIMARY KEY,
    binding_hash BYTEA NOT NULL,
    tenant_hint TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_expires ON login_attempts (expires_at);
