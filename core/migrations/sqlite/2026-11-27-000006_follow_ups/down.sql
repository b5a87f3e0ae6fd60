DROP TABLE follow_ups;
DROP TABLE follow_up_rules;
