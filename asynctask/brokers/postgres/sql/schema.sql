-- The schema that applying every migration produces, kept by hand as the reference.
-- tests/postgres/test_migrations.py proves the two agree; update both in the same change.
--
-- Times are double precision POSIX seconds taken from the application's injected clock (never
-- SQL now()), so they round-trip exactly; use to_timestamp(run_at) to read them as timestamps.
-- __schema__ is replaced by the validated, quoted schema name when the file is loaded.

CREATE TABLE __schema__.jobs (
    id               text PRIMARY KEY,
    -- Publish order: the last tie-breaker of the claim order.
    seq              bigserial NOT NULL,
    task             text NOT NULL,
    queue            text NOT NULL,
    status           text NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL DEFAULT 0,
    timeout          double precision,
    run_at           double precision NOT NULL,
    created_at       double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    lease_expires_at double precision,
    -- Fencing token: bumped by every claim, never reset, so a stale owner can never match.
    token            bigint NOT NULL DEFAULT 0,
    -- The worker holding (or that last held) the lease; for operators only.
    worker           text,
    cancel_requested boolean NOT NULL DEFAULT false,
    pause_requested  boolean NOT NULL DEFAULT false,
    expires_at       double precision,
    error            text,
    payload          bytea NOT NULL,
    state            bytea,
    result           bytea,
    -- Workflows: the job waiting for this one, and how many children this one waits for.
    parent_id        text,
    pending          integer NOT NULL DEFAULT 0,
    -- Opaque workflow data, stored and returned, never read here.
    meta             bytea,
    -- String headers published with the job (a JSON object), NULL for none.
    headers          jsonb,
    -- unique="active": the key a job holds while it is unfinished.
    unique_key       text,
    CONSTRAINT jobs_status_check CHECK (
        status IN ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'waiting', 'paused')
    )
-- Every job is updated several times in its life; free space on each page lets many of those
-- updates stay on the page.
) WITH (fillfactor = 75);

-- The ready set, in claim order. Scheduled jobs are included because a claim also takes
-- scheduled jobs whose time has come (before the promoter gets to them).
CREATE INDEX jobs_ready_idx ON __schema__.jobs (queue, priority DESC, run_at, seq)
    WHERE status IN ('queued', 'scheduled');

-- promote_due and the next wake-up time of an idle queue.
CREATE INDEX jobs_scheduled_idx ON __schema__.jobs (run_at) WHERE status = 'scheduled';

-- rescue_expired.
CREATE INDEX jobs_lease_idx ON __schema__.jobs (lease_expires_at) WHERE status = 'running';

-- prune.
CREATE INDEX jobs_expires_idx ON __schema__.jobs (expires_at) WHERE expires_at IS NOT NULL;

-- Children of a workflow job (list_jobs(parent_id=...)).
CREATE INDEX jobs_parent_idx ON __schema__.jobs (parent_id) WHERE parent_id IS NOT NULL;

-- list_jobs: newest first by (created_at, id), ids in byte order whatever the database's
-- collation; the pair is the keyset cursor of the next page.
CREATE INDEX jobs_list_idx ON __schema__.jobs (created_at, id COLLATE "C");

-- list_jobs(status=...) for the statuses a job settles in (see queries.sql, list_jobs_settled).
CREATE INDEX jobs_settled_idx ON __schema__.jobs (status, created_at, id COLLATE "C")
    WHERE status IN ('succeeded', 'failed', 'cancelled', 'waiting', 'paused');

-- One unfinished job per unique key. Partial, so jobs without a key (and finished ones) cost
-- nothing.
CREATE UNIQUE INDEX jobs_unique_idx ON __schema__.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'running', 'waiting', 'paused');

-- Flow control: one row per queue whose settings differ from the default (paused, or with a
-- limit). A queue without a row is plain: the claim's only extra work is to see that it has none.
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

-- Live workers, each recording itself at start and at every heartbeat; a record past
-- expires_at is a worker that died (never listed, deleted by the next record_worker).
CREATE TABLE __schema__.workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       text[] NOT NULL,
    concurrency  integer NOT NULL,
    version      text NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    expires_at   double precision NOT NULL,
    running      integer NOT NULL,
    -- What it did so far, by outcome: {"claimed": n, "succeeded": n, ...}.
    counts       jsonb NOT NULL
);
