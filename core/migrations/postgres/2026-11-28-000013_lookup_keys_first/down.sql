ALTER TABLE subjects ADD CONSTRAINT subjects_tenant_id_wa_id_blind_key
    UNIQUE (tenant_id, wa_id_blind),
    ADD CONSTRAINT subjects_tenant_id_bsuid_blind_key UNIQUE (tenant_id, bsuid_blind);
DROP INDEX subjects_wa_id_blind_tenant;
DROP INDEX subjects_bsuid_blind_tenant;
ALTER TABLE messages ADD CONSTRAINT messages_tenant_id_wamid_key UNIQUE (tenant_id, wamid);
DROP INDEX messages_wamid_tenant;
