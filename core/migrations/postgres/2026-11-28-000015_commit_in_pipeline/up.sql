-- The webhook batch sends its COMMIT in the same pipeline as its writes (one round trip
-- fewer), so every check that decides whether the batch may commit has to fail inside the
-- transaction, before the COMMIT runs: a statement that raises aborts the transaction and
-- the pipelined COMMIT then rolls it back. The status moves are guarded by the status they
-- were decided on; this function turns "fewer rows moved than decided" into an error
-- (SQLSTATE 40001, serialization_failure: a concurrent change), where before the client
-- counted the rows and rolled back itself.
CREATE FUNCTION smartchat_expect_rows(got BIGINT, want BIGINT, what TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF got <> want THEN
        RAISE EXCEPTION '% moved % of % rows', what, got, want
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN got;
END
$$;
