-- Every query of the Postgres broker, each under a "-- name: <name>" header.
--
-- __schema__ is replaced once, at load time, by the validated and quoted schema name; every
-- value is a $n parameter. "now" is always a parameter: time comes from the injected clock.
-- Statements that make jobs ready end with a NOTIFY per distinct queue (the payload is the
-- queue name), skipped when the notify parameter is false.

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS __schema__;

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS __schema__.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
);

-- name: migration_lock
-- Serialises migrators of this schema until the migrating transaction ends.
SELECT pg_advisory_xact_lock($1::bigint);

-- name: applied_migrations
SELECT version FROM __schema__.migrations ORDER BY version;

-- name: record_migration
INSERT INTO __schema__.migrations (version, name, applied_at)
VALUES ($1::integer, $2::text, $3::double precision);

-- name: schema_version
-- NULL when the migrations table is missing: the schema was never migrated.
SELECT CASE
    WHEN to_regclass('__schema__.migrations') IS NULL THEN NULL
    ELSE (SELECT coalesce(max(version), 0) FROM __schema__.migrations)
END AS version;

-- name: enqueue
-- $1..$8: columns as arrays, $9: now, $10: channel, $11: notify.
-- An existing id is kept (ON CONFLICT) unless its record has expired, in which case the new
-- job replaces it. Returns the ids written; the caller maps them back to input order.
WITH new AS (
    SELECT *
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::bytea[], $5::integer[], $6::integer[],
        $7::double precision[], $8::double precision[]
    ) WITH ORDINALITY AS n(id, task, queue, payload, priority, max_retries, timeout, run_at, ord)
),
created AS (
    INSERT INTO __schema__.jobs AS j
        (id, task, queue, payload, status, priority, max_retries, timeout, run_at, created_at)
    SELECT id, task, queue, payload,
           CASE WHEN run_at > $9::double precision THEN 'scheduled' ELSE 'queued' END,
           priority, max_retries, timeout, run_at, $9::double precision
    FROM new
    ORDER BY ord
    ON CONFLICT (id) DO UPDATE SET
        seq = DEFAULT,
        task = EXCLUDED.task,
        queue = EXCLUDED.queue,
        payload = EXCLUDED.payload,
        status = EXCLUDED.status,
        priority = EXCLUDED.priority,
        attempts = 0,
        max_retries = EXCLUDED.max_retries,
        timeout = EXCLUDED.timeout,
        run_at = EXCLUDED.run_at,
        created_at = EXCLUDED.created_at,
        started_at = NULL,
        finished_at = NULL,
        lease_expires_at = NULL,
        worker = NULL,
        cancel_requested = false,
        expires_at = NULL,
        error = NULL,
        state = NULL,
        result = NULL
    WHERE j.expires_at <= $9::double precision
    RETURNING j.id, j.queue
)
SELECT
    coalesce(array_agg(id), '{}') AS ids,
    (SELECT count(pg_notify($10::text, queue))
     FROM (SELECT DISTINCT queue FROM created) AS q
     WHERE $11::boolean) AS woken
FROM created;

-- name: claim
-- $1: queue, $2: limit, $3: now, $4: lease seconds, $5: worker.
WITH picked AS (
    SELECT id
    FROM __schema__.jobs
    WHERE queue = $1::text
      AND status IN ('queued', 'scheduled')
      AND (status = 'queued' OR run_at <= $3::double precision)
    ORDER BY priority DESC, run_at, seq
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE __schema__.jobs AS j SET
        status = 'running',
        attempts = j.attempts + 1,
        token = j.token + 1,
        started_at = $3::double precision,
        lease_expires_at = $3::double precision + $4::double precision,
        worker = $5::text
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.*
)
SELECT * FROM claimed ORDER BY priority DESC, run_at, seq;

-- name: complete
-- $1..$7: outcomes as arrays, $8: now, $9: channel, $10: notify.
-- Applies only while the job is running with the outcome's token; returns the ordinals
-- (1-based input positions) of the outcomes applied.
WITH o AS (
    SELECT *
    FROM unnest(
        $1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[],
        $6::double precision[], $7::double precision[]
    ) WITH ORDINALITY AS o(job_id, token, kind, result, error, run_at, expires_at, ord)
),
done AS (
    UPDATE __schema__.jobs AS j SET
        status = CASE o.kind
            WHEN 'retry' THEN
                CASE WHEN coalesce(o.run_at, $8::double precision) > $8::double precision
                     THEN 'scheduled' ELSE 'queued' END
            WHEN 'release' THEN 'queued'
            ELSE o.kind
        END,
        -- A released lease hands the attempt back.
        attempts = CASE WHEN o.kind = 'release' THEN j.attempts - 1 ELSE j.attempts END,
        run_at = CASE WHEN o.kind = 'retry' THEN coalesce(o.run_at, $8::double precision) ELSE j.run_at END,
        -- A success without a result keeps the one saved during the run.
        result = CASE WHEN o.kind = 'succeeded' THEN coalesce(o.result, j.result) ELSE j.result END,
        error = CASE WHEN o.kind IN ('failed', 'cancelled', 'retry') THEN o.error ELSE j.error END,
        finished_at = CASE WHEN o.kind IN ('succeeded', 'failed', 'cancelled')
                           THEN $8::double precision ELSE j.finished_at END,
        expires_at = CASE WHEN o.kind IN ('succeeded', 'failed', 'cancelled')
                          THEN o.expires_at ELSE j.expires_at END,
        lease_expires_at = NULL
    FROM o
    WHERE j.id = o.job_id AND j.token = o.token AND j.status = 'running'
    RETURNING o.ord, j.queue, j.status
)
SELECT
    coalesce(array_agg(ord), '{}') AS ords,
    (SELECT count(pg_notify($9::text, queue))
     FROM (SELECT DISTINCT queue FROM done WHERE status IN ('queued', 'scheduled')) AS q
     WHERE $10::boolean) AS woken
FROM done;

-- name: extend_leases
-- $1, $2: job ids and tokens, $3: the new lease expiry. Returns the ordinals still held.
WITH l AS (
    SELECT * FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS l(job_id, token, ord)
)
UPDATE __schema__.jobs AS j SET lease_expires_at = $3::double precision
FROM l
WHERE j.id = l.job_id AND j.token = l.token AND j.status = 'running'
RETURNING l.ord, j.cancel_requested;

-- name: save
UPDATE __schema__.jobs SET
    state = coalesce($3::bytea, state),
    result = coalesce($4::bytea, result)
WHERE id = $1::text AND token = $2::bigint AND status = 'running'
RETURNING id;

-- name: readiness
-- Is a job of queue $1 ready at $2, and if not, when is the next scheduled one due?
SELECT
    EXISTS (
        SELECT 1 FROM __schema__.jobs
        WHERE queue = $1::text
          AND status IN ('queued', 'scheduled')
          AND (status = 'queued' OR run_at <= $2::double precision)
    ) AS ready,
    (SELECT min(run_at) FROM __schema__.jobs
     WHERE queue = $1::text AND status = 'scheduled' AND run_at > $2::double precision) AS next_run_at;

-- name: promote_due
-- $1: now, $2: limit, $3: channel, $4: notify.
WITH due AS (
    SELECT id FROM __schema__.jobs
    WHERE status = 'scheduled' AND run_at <= $1::double precision
    ORDER BY run_at
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
moved AS (
    UPDATE __schema__.jobs AS j SET status = 'queued'
    FROM due
    WHERE j.id = due.id
    RETURNING j.queue
)
SELECT
    count(*) AS moved,
    (SELECT count(pg_notify($3::text, queue))
     FROM (SELECT DISTINCT queue FROM moved) AS q
     WHERE $4::boolean) AS woken
FROM moved;

-- name: rescue_expired
-- $1: now, $2: limit, $3: channel, $4: notify. The lost attempt stays counted; with no
-- retries left the job fails (and is kept, like any failure, for inspection).
WITH expired AS (
    SELECT id FROM __schema__.jobs
    WHERE status = 'running' AND lease_expires_at <= $1::double precision
    ORDER BY lease_expires_at
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE __schema__.jobs AS j SET
        status = CASE WHEN j.attempts > j.max_retries THEN 'failed' ELSE 'queued' END,
        error = 'lease expired at ' || round(j.lease_expires_at::numeric, 3)::text
                || ': the worker running attempt ' || j.attempts::text || ' was lost',
        finished_at = CASE WHEN j.attempts > j.max_retries
                           THEN $1::double precision ELSE j.finished_at END,
        lease_expires_at = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.queue, j.status
)
SELECT
    count(*) AS rescued,
    (SELECT count(pg_notify($3::text, queue))
     FROM (SELECT DISTINCT queue FROM rescued WHERE status = 'queued') AS q
     WHERE $4::boolean) AS woken
FROM rescued;

-- name: prune
-- $1: now, $2: limit.
WITH gone AS (
    SELECT id FROM __schema__.jobs
    WHERE expires_at <= $1::double precision
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM __schema__.jobs AS j USING gone WHERE j.id = gone.id RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: get
SELECT * FROM __schema__.jobs
WHERE id = $1::text AND (expires_at IS NULL OR expires_at > $2::double precision);

-- name: list_jobs
-- $1..$3: optional status, queue and task filters, $4: now, $5: limit.
SELECT * FROM __schema__.jobs
WHERE ($1::text IS NULL OR status = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
  AND ($3::text IS NULL OR task = $3::text)
  AND (expires_at IS NULL OR expires_at > $4::double precision)
ORDER BY created_at DESC, seq DESC
LIMIT $5::integer;

-- name: cancel
-- $1: id, $2: now, $3: expires_at. Waiting jobs are cancelled at once; a running one gets
-- cancel_requested; a finished one is returned unchanged.
WITH changed AS (
    UPDATE __schema__.jobs SET
        status = CASE WHEN status = 'running' THEN status ELSE 'cancelled' END,
        finished_at = CASE WHEN status = 'running' THEN finished_at ELSE $2::double precision END,
        expires_at = CASE WHEN status = 'running' THEN expires_at ELSE $3::double precision END,
        cancel_requested = cancel_requested OR status = 'running'
    WHERE id = $1::text
      AND status IN ('scheduled', 'queued', 'paused', 'waiting', 'running')
      AND (expires_at IS NULL OR expires_at > $2::double precision)
    RETURNING *
)
SELECT * FROM changed
UNION ALL
SELECT * FROM __schema__.jobs
WHERE id = $1::text
  AND (expires_at IS NULL OR expires_at > $2::double precision)
  AND NOT EXISTS (SELECT 1 FROM changed);

-- name: retry
-- $1: id, $2: now, $3: channel, $4: notify. A failed or cancelled job is queued again with a
-- fresh attempt count; any other job is returned unchanged.
WITH changed AS (
    UPDATE __schema__.jobs SET
        status = 'queued',
        attempts = 0,
        run_at = $2::double precision,
        finished_at = NULL,
        expires_at = NULL,
        cancel_requested = false
    WHERE id = $1::text
      AND status IN ('failed', 'cancelled')
      AND (expires_at IS NULL OR expires_at > $2::double precision)
    RETURNING *
)
SELECT *, (SELECT count(pg_notify($3::text, queue)) FROM changed WHERE $4::boolean) AS woken
FROM changed
UNION ALL
SELECT *, 0 AS woken FROM __schema__.jobs
WHERE id = $1::text
  AND (expires_at IS NULL OR expires_at > $2::double precision)
  AND NOT EXISTS (SELECT 1 FROM changed);

-- name: delete
DELETE FROM __schema__.jobs WHERE id = $1::text RETURNING id;
