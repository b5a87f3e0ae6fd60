-- The WhatsApp Business Account a number belongs to: template status webhooks name the
-- account (entry.id), not a number.
ALTER TABLE phone_numbers ADD COLUMN waba_id TEXT;
CREATE INDEX phone_numbers_waba ON phone_numbers (waba_id);

-- A tenant's message templates as Meta approved them (synced from the Graph API and kept
-- current by template status webhooks), or registered by hand for the sandbox. A template
-- is the business's own wording with numbered variables; the values (which may be
-- personal data) never live here.
CREATE TABLE message_templates (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    params INTEGER NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, language)
);

-- A follow-up rule's template (name, language, variables), sealed like its message.
ALTER TABLE follow_up_rules ADD COLUMN template_ct BLOB;

-- An outbound template message: which template and the values of its variables, sealed
-- under the subject's key like the body (the body holds the rendered text).
ALTER TABLE messages ADD COLUMN template_ct BLOB;
