DROP TABLE registry_objections;
DROP TABLE registry_notices;
DROP TABLE registry_changes;
DROP TABLE policy_versions;
ALTER TABLE tenants DROP COLUMN policy_overrides;
