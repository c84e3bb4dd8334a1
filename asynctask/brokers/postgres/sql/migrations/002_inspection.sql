-- Inspection (web dashboard, metrics): keyset pagination of list_jobs.
--
-- Jobs are listed newest first by (created_at, id), a total order, so the last row of a page
-- is the cursor of the next one. Ids compare with the "C" collation (byte order, as on every
-- other broker), whatever the database's default collation.
DROP INDEX __schema__.jobs_created_idx;

CREATE INDEX jobs_list_idx ON __schema__.jobs (created_at, id COLLATE "C");

-- list_jobs(status=...) for the statuses a job settles in. Partial, so a job takes an entry
-- once (when it finishes), not at every claim and heartbeat.
CREATE INDEX jobs_settled_idx ON __schema__.jobs (status, created_at, id COLLATE "C")
    WHERE status IN ('succeeded', 'failed', 'cancelled', 'waiting', 'paused');
