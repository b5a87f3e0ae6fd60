-- A tenant's AI provider chain, in failover order, as a JSON array of provider names
-- (e.g. ["deepseek","openai"]); NULL means every provider the platform has configured, in
-- the platform's order; [] means the offline assistant only. The offline assistant always
-- ends the chain.
ALTER TABLE tenants ADD COLUMN provider_chain TEXT;
