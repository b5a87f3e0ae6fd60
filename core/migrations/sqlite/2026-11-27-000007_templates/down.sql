ALTER TABLE messages DROP COLUMN template_ct;
ALTER TABLE follow_up_rules DROP COLUMN template_ct;
DROP TABLE message_templates;
DROP INDEX phone_numbers_waba;
ALTER TABLE phone_numbers DROP COLUMN waba_id;
