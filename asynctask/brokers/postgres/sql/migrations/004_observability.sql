-- 004: observability (issue #14): job headers, and the worker registry.

-- String headers published with the job (the user's, and the W3C trace context): a JSON
-- object, NULL when there are none.
ALTER TABLE __schema__.jobs ADD COLUMN headers jsonb;

-- Live workers, each recording itself at start and at every heartbeat. A record past
-- expires_at is a worker that died: never listed, deleted by the next record_worker.
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
