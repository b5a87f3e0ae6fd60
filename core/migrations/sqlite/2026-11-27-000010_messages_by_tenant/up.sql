-- Purging a terminated tenant and expiring messages past their retention select a
-- tenant's messages in batches (oldest first for expiry): without this index each batch
-- scanned the whole table (1,000,000 rows purged at 9,300 rows/s on PostgreSQL).
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);
