-- Room for heap-only (HOT) updates, which write no index entries. Every inbound message
-- moves its conversation's window (`last_inbound_at`, `updated_at`), and every status Meta
-- reports moves one of our messages (`status`, `status_at`): with `updated_at` indexed,
-- each window move wrote a new entry in all three indexes of `conversations`; now no index
-- holds a column those updates change, so an update stays on its page when the page has
-- room, which the fill factors keep (pages filled by inserts only to 80 % and 90 %).
-- The inbox (`list_conversations`) walks a tenant's conversations and sorts them by
-- `updated_at` itself (a top-N sort over one tenant's rows).
DROP INDEX conversations_tenant;
CREATE INDEX conversations_tenant ON conversations (tenant_id);
ALTER TABLE conversations SET (fillfactor = 80);
ALTER TABLE messages SET (fillfactor = 90);
