DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (queue, status, run_at);
