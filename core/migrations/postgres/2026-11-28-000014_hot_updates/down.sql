ALTER TABLE messages RESET (fillfactor);
ALTER TABLE conversations RESET (fillfactor);
DROP INDEX conversations_tenant;
CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);
