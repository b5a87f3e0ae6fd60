DROP FUNCTION smartchat_expect_rows(BIGINT, BIGINT, TEXT);
