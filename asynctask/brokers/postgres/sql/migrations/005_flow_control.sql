-- 005: flow control (issue #13): queue settings, the token buckets of rate-limited tasks, and
-- unique jobs.

-- One row per queue whose settings differ from the default (paused, or with a limit). A queue
-- without a row is plain: the claim's only extra work is to see that it has none.
CREATE TABLE __schema__.queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    -- At most this many jobs of the queue running, cluster-wide; NULL: no limit.
    concurrency integer,
    -- At most rate_count starts per rate_per seconds, a token bucket of rate_burst tokens;
    -- all NULL: no rate limit.
    rate_count  integer,
    rate_per    double precision,
    rate_burst  integer,
    -- The bucket: tokens left at refilled_at (NULL: never used, full).
    tokens      double precision,
    refilled_at double precision,
    CONSTRAINT queues_concurrency_check CHECK (concurrency >= 1),
    CONSTRAINT queues_rate_check CHECK (
        (rate_count IS NULL AND rate_per IS NULL AND rate_burst IS NULL)
        OR (rate_count >= 1 AND rate_per > 0 AND rate_burst >= 1)
    )
);

-- The token buckets of rate-limited tasks (the limits themselves come with each claim).
CREATE TABLE __schema__.task_buckets (
    task        text PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at double precision NOT NULL
);

-- unique="active": the key a job holds while it is unfinished.
ALTER TABLE __schema__.jobs ADD COLUMN unique_key text;

-- One unfinished job per key. Partial, so jobs without a key (and finished ones) cost nothing.
CREATE UNIQUE INDEX jobs_unique_idx ON __schema__.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'running', 'waiting', 'paused');
