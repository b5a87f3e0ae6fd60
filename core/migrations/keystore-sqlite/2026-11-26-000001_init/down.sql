DROP TABLE service_keys;
DROP TABLE tenant_keys;
DROP TABLE keystore_meta;
