-- The claim's ORDER BY run_at, id, whole in the index: a claim reads the first ready row
-- instead of sorting every ready one (which the planner chose when its statistics were
-- older than the backlog: a claim then cost time in proportion to the queue).
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (queue, status, run_at, id);
