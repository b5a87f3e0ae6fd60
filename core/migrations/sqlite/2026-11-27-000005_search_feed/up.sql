-- What the search indexer still has to apply, written in the same transaction as the change
-- it mirrors: 'add' (ref: message id), 'delete_subject' (ref: subject pseudonym, hex),
-- 'drop_tenant' (ref: tenant id). A row is deleted once the index commit that applied it is
-- durable. No personal data: ids and pseudonyms only.
CREATE TABLE search_feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    op TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX search_feed_tenant ON search_feed (tenant_id, seq);
