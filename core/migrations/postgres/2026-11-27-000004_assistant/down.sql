ALTER TABLE tenants DROP COLUMN provider_chain;
