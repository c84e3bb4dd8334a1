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

-- fragment: on_conflict
-- What enqueue and enqueue_one do with an id that exists (written where ``__on_conflict__``
-- stands): the record is kept, unless it has expired, in which case the new job replaces it.
ON CONFLICT (id) DO UPDATE SET
    seq = EXCLUDED.seq,
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
    pause_requested = false,
    expires_at = NULL,
    error = NULL,
    state = NULL,
    result = NULL,
    parent_id = EXCLUDED.parent_id,
    pending = EXCLUDED.pending,
    meta = EXCLUDED.meta,
    unique_key = EXCLUDED.unique_key,
    headers = EXCLUDED.headers
WHERE j.expires_at <= $9::double precision

-- name: enqueue
-- $1..$8, $12..$16: columns as arrays, $9: now, $10: channel, $11: notify.
-- A job with pending children is stored as waiting. Enqueue never counts a child into its
-- parent's pending (spawning does: see add_pending).
-- A job whose unique_key an unfinished job holds is left out (flow control, issue #13); two
-- publishes racing for one key meet at jobs_unique_idx, and the loser runs again.
-- An existing id is kept (ON CONFLICT, the on_conflict fragment) unless its record has expired,
-- in which case the new job replaces it. enqueue_fresh is this statement without the fragment:
-- a plain insert, which a batch of new ids takes first (see publishing.py).
-- Returns the ids written, or NULL when every row sent was written (the common case: no array of
-- every id to send back); the caller maps them back to input order. Only the non-NULL parent ids
-- of the jobs written come back.
-- Columns a batch leaves empty come as NULL arrays (unnest pads them with NULLs): priority,
-- max_retries and pending then read as 0.
-- Publish order (seq) follows the input, but rows are inserted in id order: two batches that
-- share ids then wait for each other in the same order instead of deadlocking.
WITH new AS (
    SELECT id, task, queue, payload, coalesce(priority, 0) AS priority,
           coalesce(max_retries, 0) AS max_retries, timeout, run_at, parent_id,
           coalesce(pending, 0) AS pending, meta, unique_key, headers, ord
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::bytea[], $5::integer[], $6::integer[],
        $7::double precision[], $8::double precision[], $12::text[], $13::integer[], $14::bytea[],
        $15::text[], $16::jsonb[]
    ) WITH ORDINALITY AS n(
        id, task, queue, payload, priority, max_retries, timeout, run_at, parent_id, pending, meta,
        unique_key, headers, ord
    )
),
numbered AS (
    SELECT nextval('__schema__.jobs_seq_seq'::regclass) AS seq, n.*
    FROM (
        SELECT * FROM new
        WHERE unique_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM __schema__.jobs AS a
            WHERE a.unique_key = new.unique_key
              AND a.status IN ('scheduled', 'queued', 'running', 'waiting', 'paused')
        )
        ORDER BY ord
    ) AS n
),
created AS (
    INSERT INTO __schema__.jobs AS j
        (seq, id, task, queue, payload, status, priority, max_retries, timeout, run_at, created_at,
         parent_id, pending, meta, unique_key, headers)
    SELECT seq, id, task, queue, payload,
           CASE WHEN pending > 0 THEN 'waiting'
                WHEN run_at > $9::double precision THEN 'scheduled'
                ELSE 'queued' END,
           priority, max_retries, timeout, run_at, $9::double precision, parent_id, pending, meta,
           unique_key, headers
    FROM numbered
    ORDER BY id
    __on_conflict__
    RETURNING j.id, j.queue, j.parent_id
)
SELECT
    CASE WHEN count(*) < cardinality($1::text[]) THEN coalesce(array_agg(id), '{}') END AS ids,
    array_agg(parent_id) FILTER (WHERE parent_id IS NOT NULL) AS parent_ids,
    (SELECT count(pg_notify($10::text, queue))
     FROM (SELECT DISTINCT queue FROM created) AS q
     WHERE $11::boolean) AS woken
FROM created;

-- name: enqueue_one
-- enqueue for a batch of one job (the common publish), its columns as scalars, with the same
-- parameter numbers, rules and ON CONFLICT clause (the on_conflict fragment). The batch
-- statement's unnest, numbering, sort and aggregates cost the server more than the row itself.
-- seq comes from the column's default, in the INSERT.
-- One row (the job's parent_id) when the job was written, none when it was not.
WITH created AS (
    INSERT INTO __schema__.jobs AS j
        (id, task, queue, payload, status, priority, max_retries, timeout, run_at, created_at,
         parent_id, pending, meta, unique_key, headers)
    SELECT $1::text, $2::text, $3::text, $4::bytea,
           CASE WHEN $13::integer > 0 THEN 'waiting'
                WHEN $8::double precision > $9::double precision THEN 'scheduled'
                ELSE 'queued' END,
           $5::integer, $6::integer, $7::double precision, $8::double precision,
           $9::double precision, $12::text, $13::integer, $14::bytea, $15::text, $16::jsonb
    WHERE $15::text IS NULL OR NOT EXISTS (
        SELECT 1 FROM __schema__.jobs AS a
        WHERE a.unique_key = $15::text
          AND a.status IN ('scheduled', 'queued', 'running', 'waiting', 'paused')
    )
    __on_conflict__
    RETURNING j.queue, j.parent_id
)
SELECT parent_id, CASE WHEN $11::boolean THEN pg_notify($10::text, queue) IS NOT NULL END AS woken
FROM created;

-- name: claim
-- $1: queue, $2: limit, $3: now, $4: lease seconds, $5: worker, $6: the tasks with limits.
-- Flow control (issue #13): a queue with settings (a row in queues), or a picked job of a
-- limited task, diverts the claim to the flow path (flow_lock, flow_claim): nothing is claimed,
-- and one row of NULLs with diverted = true says so. Otherwise this is the whole claim.
-- Its commit does not wait for the WAL flush (synchronous_commit = off for this transaction
-- only, set by the statement itself; the session keeps its setting): the claim's round trip is
-- then the statement alone (about 1.2 -> 0.4 ms at the median). A server crash can forget a
-- claim made in the last moments (3 x wal_writer_delay at most) if nothing durable was committed
-- after it: the job is queued again with its previous token and runs again (at least once). The
-- next claim's token cannot repeat the forgotten one, see the token column below. Any later
-- durable commit (the job's heartbeat, completion, saved state, a publish) flushes the claim too.
WITH picked AS (
    SELECT id, task
    FROM __schema__.jobs
    WHERE queue = $1::text
      AND status IN ('queued', 'scheduled')
      AND (status = 'queued' OR run_at <= $3::double precision)
    ORDER BY priority DESC, run_at, seq
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
flow AS (
    SELECT EXISTS (SELECT 1 FROM __schema__.queues WHERE name = $1::text)
        OR EXISTS (SELECT 1 FROM picked WHERE task = ANY ($6::text[])) AS diverted
),
-- Every row updated below passed this test, so the setting is in place before the commit.
async_commit AS (
    SELECT set_config('synchronous_commit', 'off', true) AS setting
),
claimed AS (
    UPDATE __schema__.jobs AS j SET
        status = 'running',
        -- Kept within 1..ATTEMPTS_LIMIT whatever the row says (asynctask/brokers/rules.py).
        attempts = greatest(least(j.attempts, 2147483646), 0) + 1,
        -- The server's clock in microseconds, or the previous token + 1 if that is larger: a
        -- claim the server forgot in a crash (see above) left the previous token in the row, and
        -- the claim after the restart reads a later clock, so its token differs from the
        -- forgotten one (the same token twice would let two live workers write to the job).
        -- Saturates too: only a corrupt row gets near it (fencing then stops for that job).
        token = greatest(
            least(j.token, 9223372036854775806) + 1,
            (extract(epoch FROM statement_timestamp()) * 1000000)::bigint
        ),
        started_at = $3::double precision,
        lease_expires_at = $3::double precision + $4::double precision,
        worker = $5::text
    -- = ANY(ARRAY(...)): probe the primary key for each picked id, never a scan-and-hash.
    WHERE j.id = ANY (ARRAY(SELECT id FROM picked)) AND NOT (SELECT diverted FROM flow)
      AND (SELECT setting FROM async_commit) IS NOT NULL
    -- The fields of a Job, in its order (rows.claimed_job reads them by position), then seq.
    RETURNING j.id, j.task, j.queue, j.payload, j.status, j.priority, j.attempts, j.max_retries,
              j.timeout, j.run_at, j.created_at, j.started_at, j.finished_at, j.lease_expires_at,
              j.token, j.error, j.state, j.result, j.expires_at, j.cancel_requested,
              j.pause_requested, j.parent_id, j.pending, j.meta, j.headers, j.unique_key, j.seq
)
SELECT *, false AS diverted FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true
FROM flow WHERE diverted
ORDER BY diverted, priority DESC, run_at, seq;

-- name: held
-- $1, $2: job ids and tokens. Locks the jobs still held with these tokens (in id order) and
-- returns their ordinals; the first step of a completion that spawns jobs.
-- One primary-key probe per job whatever the plan's statistics (the status a join value, as in
-- complete).
WITH o AS MATERIALIZED (
    SELECT *, 'running'::text AS held
    FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS o(job_id, token, ord)
)
SELECT o.ord
FROM o
JOIN __schema__.jobs AS j ON j.id = o.job_id AND j.token = o.token AND j.status = o.held
ORDER BY j.id
FOR UPDATE OF j;

-- name: add_pending
-- $1: parent ids, one per child just spawned. Counts the children into their parents.
UPDATE __schema__.jobs AS p SET pending = p.pending + c.n
FROM (SELECT parent_id, count(*)::integer AS n FROM unnest($1::text[]) AS c(parent_id) GROUP BY parent_id) AS c
WHERE p.id = c.parent_id;

-- name: complete
-- $1..$7, $11: outcomes as arrays, $8: now, $9: channel, $10: notify. $4..$7 and $11 may be
-- NULL (every value NULL: unnest pads them), which is cheaper to send than arrays of NULLs; so
-- may $3, meaning that every outcome is a success (the common batch).
-- Applies only while the job is running with the outcome's token; returns the ordinals
-- (1-based input positions) of the outcomes applied. A success whose job still has pending
-- children leaves it waiting. A job entering a finished status counts out of its parent,
-- and a waiting parent whose last child finished is queued for its finishing phase.
-- The plan is the same whatever the statistics (the pool uses generic plans, see pool.py): one
-- primary-key probe per outcome, in input (id) order. The running status comes from o, a join
-- value, so that no plan can walk jobs_lease_idx instead: that walk reads every running job and
-- every dead entry the index still holds, and a plan made while the table was nearly empty picks
-- it (server CPU per completed job, batches of 100 on 20,000 jobs: 80-120 us -> 43-46 us).
WITH o AS MATERIALIZED (
    SELECT job_id, token, coalesce(kind, 'succeeded') AS kind, result, error, run_at, expires_at,
           meta, ord, 'running'::text AS held
    FROM unnest(
        $1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[],
        $6::double precision[], $7::double precision[], $11::bytea[]
    ) WITH ORDINALITY AS o(job_id, token, kind, result, error, run_at, expires_at, meta, ord)
),
done AS (
    UPDATE __schema__.jobs AS j SET
        status = CASE o.kind
            WHEN 'retry' THEN
                CASE WHEN coalesce(o.run_at, $8::double precision) > $8::double precision
                     THEN 'scheduled' ELSE 'queued' END
            WHEN 'release' THEN 'queued'
            WHEN 'pause' THEN 'paused'
            -- Children spawned, or still running: wait for them.
            WHEN 'succeeded' THEN CASE WHEN j.pending > 0 THEN 'waiting' ELSE 'succeeded' END
            ELSE o.kind
        END,
        -- A released or paused lease hands the attempt back.
        attempts = CASE WHEN o.kind IN ('release', 'pause') THEN j.attempts - 1 ELSE j.attempts END,
        run_at = CASE WHEN o.kind = 'retry' THEN coalesce(o.run_at, $8::double precision) ELSE j.run_at END,
        -- A success without a result keeps the one saved during the run.
        result = CASE WHEN o.kind = 'succeeded' THEN coalesce(o.result, j.result) ELSE j.result END,
        error = CASE WHEN o.kind IN ('failed', 'cancelled', 'retry') THEN o.error ELSE j.error END,
        -- Set when the job enters a finished status (the status CASE above, restated).
        finished_at = CASE WHEN o.kind IN ('failed', 'cancelled') OR (o.kind = 'succeeded' AND j.pending = 0)
                           THEN $8::double precision ELSE j.finished_at END,
        expires_at = CASE WHEN o.kind IN ('failed', 'cancelled') OR (o.kind = 'succeeded' AND j.pending = 0)
                          THEN o.expires_at ELSE j.expires_at END,
        pause_requested = CASE WHEN o.kind = 'pause' THEN false ELSE j.pause_requested END,
        meta = coalesce(o.meta, j.meta),
        lease_expires_at = NULL
    FROM o
    WHERE j.id = o.job_id AND j.token = o.token AND j.status = o.held
    RETURNING o.ord, j.id, j.queue, j.status, j.parent_id
),
released AS (
    UPDATE __schema__.jobs AS p SET
        pending = greatest(p.pending - c.n, 0),
        status = CASE WHEN p.status = 'waiting' AND p.pending - c.n <= 0 THEN 'queued' ELSE p.status END,
        attempts = CASE WHEN p.status = 'waiting' AND p.pending - c.n <= 0 THEN 0 ELSE p.attempts END,
        run_at = CASE WHEN p.status = 'waiting' AND p.pending - c.n <= 0
                      THEN $8::double precision ELSE p.run_at END
    FROM (
        SELECT parent_id, count(*)::integer AS n FROM done
        WHERE parent_id IS NOT NULL AND status IN ('succeeded', 'failed', 'cancelled')
        GROUP BY parent_id
    ) AS c
    WHERE p.id = c.parent_id AND p.id NOT IN (SELECT id FROM done)
    RETURNING p.queue, p.status
)
SELECT
    (SELECT coalesce(array_agg(ord), '{}') FROM done) AS ords,
    (SELECT count(pg_notify($9::text, queue))
     FROM (
         SELECT queue FROM done WHERE status IN ('queued', 'scheduled')
         UNION
         SELECT queue FROM released WHERE status = 'queued'
     ) AS q
     WHERE $10::boolean) AS woken;

-- name: extend_leases
-- $1, $2: job ids and tokens, $3: the new lease expiry. Returns the ordinals still held.
-- One primary-key probe per lease whatever the plan's statistics (the status a join value, as
-- in complete).
WITH l AS MATERIALIZED (
    SELECT *, 'running'::text AS held
    FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS l(job_id, token, ord)
)
UPDATE __schema__.jobs AS j SET lease_expires_at = $3::double precision
FROM l
WHERE j.id = l.job_id AND j.token = l.token AND j.status = l.held
RETURNING l.ord, j.cancel_requested, j.pause_requested;

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
    WHERE j.id = ANY (ARRAY(SELECT id FROM due))
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
-- retries left the job fails (and is kept, like any failure, for inspection), counting out
-- of its parent.
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
        -- The text of asynctask/brokers/rules.py (LEASE_EXPIRED).
        error = 'lease expired at ' || round(j.lease_expires_at::numeric, 3)::text
                || ' while attempt ' || j.attempts::text || ' was running (the worker crashed, '
                || 'was killed, or lost its broker connection)',
        finished_at = CASE WHEN j.attempts > j.max_retries
                           THEN $1::double precision ELSE j.finished_at END,
        lease_expires_at = NULL
    WHERE j.id = ANY (ARRAY(SELECT id FROM expired))
    RETURNING j.id, j.queue, j.status, j.parent_id
),
released AS (
    UPDATE __schema__.jobs AS p SET
        pending = greatest(p.pending - c.n, 0),
        status = CASE WHEN p.status = 'waiting' AND p.pending - c.n <= 0 THEN 'queued' ELSE p.status END,
        attempts = CASE WHEN p.status = 'waiting' AND p.pending - c.n <= 0 THEN 0 ELSE p.attempts END,
        run_at = CASE WHEN p.status = 'waiting' AND p.pending - c.n <= 0
                      THEN $1::double precision ELSE p.run_at END
    FROM (
        SELECT parent_id, count(*)::integer AS n FROM rescued
        WHERE parent_id IS NOT NULL AND status = 'failed'
        GROUP BY parent_id
    ) AS c
    WHERE p.id = c.parent_id AND p.id NOT IN (SELECT id FROM rescued)
    RETURNING p.queue, p.status
)
SELECT
    (SELECT count(*) FROM rescued) AS rescued,
    (SELECT count(pg_notify($3::text, queue))
     FROM (
         SELECT queue FROM rescued WHERE status = 'queued'
         UNION
         SELECT queue FROM released WHERE status = 'queued'
     ) AS q
     WHERE $4::boolean) AS woken;

-- name: prune
-- $1: now, $2: limit.
WITH gone AS (
    SELECT id FROM __schema__.jobs
    WHERE expires_at <= $1::double precision
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM __schema__.jobs WHERE id = ANY (ARRAY(SELECT id FROM gone)) RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: get
SELECT * FROM __schema__.jobs
WHERE id = $1::text AND (expires_at IS NULL OR expires_at > $2::double precision);

-- name: cancel
-- $1: id, $2: now, $3: expires_at, $4: channel, $5: notify. Waiting jobs are cancelled at
-- once (counting out of their parent); a running one gets cancel_requested; a finished one is
-- returned unchanged.
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
),
released AS (
    UPDATE __schema__.jobs AS p SET
        pending = greatest(p.pending - 1, 0),
        status = CASE WHEN p.status = 'waiting' AND p.pending <= 1 THEN 'queued' ELSE p.status END,
        attempts = CASE WHEN p.status = 'waiting' AND p.pending <= 1 THEN 0 ELSE p.attempts END,
        run_at = CASE WHEN p.status = 'waiting' AND p.pending <= 1 THEN $2::double precision ELSE p.run_at END
    FROM changed AS c
    WHERE p.id = c.parent_id AND c.status = 'cancelled' AND p.id <> c.id
    RETURNING p.queue, p.status
)
SELECT *, (SELECT count(pg_notify($4::text, queue)) FROM released WHERE status = 'queued' AND $5::boolean)
    AS woken
FROM changed
UNION ALL
SELECT *, 0 AS woken FROM __schema__.jobs
WHERE id = $1::text
  AND (expires_at IS NULL OR expires_at > $2::double precision)
  AND NOT EXISTS (SELECT 1 FROM changed);

-- name: retry
-- $1: id, $2: now, $3: channel, $4: notify. A failed or cancelled job is queued again with a
-- fresh attempt count (and counted back into its parent if that still waits); any other job
-- is returned unchanged.
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
      -- Its unique key, taken meanwhile by another unfinished job, leaves it finished.
      AND (unique_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM __schema__.jobs AS a
          WHERE a.unique_key = jobs.unique_key AND a.id <> jobs.id
            AND a.status IN ('scheduled', 'queued', 'running', 'waiting', 'paused')
      ))
    RETURNING *
),
recounted AS (
    UPDATE __schema__.jobs AS p SET pending = p.pending + 1
    FROM changed AS c
    WHERE p.id = c.parent_id AND p.status = 'waiting' AND p.id <> c.id
)
SELECT *, (SELECT count(pg_notify($3::text, queue)) FROM changed WHERE $4::boolean) AS woken
FROM changed
UNION ALL
SELECT *, 0 AS woken FROM __schema__.jobs
WHERE id = $1::text
  AND (expires_at IS NULL OR expires_at > $2::double precision)
  AND NOT EXISTS (SELECT 1 FROM changed);

-- name: pause
-- $1: id, $2: now. A scheduled or queued job is parked as paused; a running one is asked to
-- pause after its current step; any other job is returned unchanged.
WITH changed AS (
    UPDATE __schema__.jobs SET
        status = CASE WHEN status = 'running' THEN status ELSE 'paused' END,
        pause_requested = pause_requested OR status = 'running'
    WHERE id = $1::text
      AND status IN ('scheduled', 'queued', 'running')
      AND (expires_at IS NULL OR expires_at > $2::double precision)
    RETURNING *
)
SELECT * FROM changed
UNION ALL
SELECT * FROM __schema__.jobs
WHERE id = $1::text
  AND (expires_at IS NULL OR expires_at > $2::double precision)
  AND NOT EXISTS (SELECT 1 FROM changed);

-- name: resume
-- $1: id, $2: now, $3: channel, $4: notify. A paused job is queued again (scheduled, if its
-- run_at is still ahead: a delayed job keeps its time); any other job is returned unchanged.
WITH changed AS (
    UPDATE __schema__.jobs
    SET status = CASE WHEN run_at > $2::double precision THEN 'scheduled' ELSE 'queued' END,
        pause_requested = false
    WHERE id = $1::text
      AND status = 'paused'
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

-- ===========================================================================================
-- Inspection: keyset pagination of list_jobs, and queue statistics (web dashboard, metrics).
-- Jobs are listed newest first by (created_at, id COLLATE "C"). A page starts strictly after
-- the cursor ($5, $6) = (created_at, id) of the last job seen; the first page passes
-- ('Infinity', ''), so every query keeps one shape and one plan.
-- ===========================================================================================

-- name: list_jobs_page
-- $1, $2: optional queue and task filters, $3: now, $4: limit, $5, $6: cursor.
-- Walks jobs_list_idx from the cursor; a filter is checked on each row passed.
SELECT * FROM __schema__.jobs
WHERE (created_at, id COLLATE "C") < ($5::double precision, $6::text COLLATE "C")
  AND ($1::text IS NULL OR queue = $1::text)
  AND ($2::text IS NULL OR task = $2::text)
  AND (expires_at IS NULL OR expires_at > $3::double precision)
ORDER BY created_at DESC, id COLLATE "C" DESC
LIMIT $4::integer;

-- name: list_jobs_settled
-- $1, $2: optional queue and task filters, $3: now, $4: limit, $5, $6: cursor, $7: a status of
-- succeeded, failed, cancelled, waiting or paused. The literal IN list lets every plan (the
-- cached generic one too) use the partial jobs_settled_idx: a page of 100,000 failed jobs is
-- read straight from it. That index costs the hot path nothing: a job enters it once, when it
-- finishes, where a full (status, ...) index would take an entry at every claim and heartbeat.
SELECT * FROM __schema__.jobs
WHERE status = $7::text
  AND status IN ('succeeded', 'failed', 'cancelled', 'waiting', 'paused')
  AND (status, created_at, id COLLATE "C") < ($7::text, $5::double precision, $6::text COLLATE "C")
  AND ($1::text IS NULL OR queue = $1::text)
  AND ($2::text IS NULL OR task = $2::text)
  AND (expires_at IS NULL OR expires_at > $3::double precision)
ORDER BY status DESC, created_at DESC, id COLLATE "C" DESC
LIMIT $4::integer;

-- The active statuses, one query each: with the status a literal, the planner knows from the
-- table statistics how many such jobs there are, and walks jobs_list_idx when they are many or
-- sorts the few found through the claim path's partial indexes (jobs_ready_idx,
-- jobs_scheduled_idx, jobs_lease_idx). $1..$6 as above.

-- name: list_jobs_queued
SELECT * FROM __schema__.jobs
WHERE status = 'queued'
  AND (created_at, id COLLATE "C") < ($5::double precision, $6::text COLLATE "C")
  AND ($1::text IS NULL OR queue = $1::text)
  AND ($2::text IS NULL OR task = $2::text)
  AND (expires_at IS NULL OR expires_at > $3::double precision)
ORDER BY created_at DESC, id COLLATE "C" DESC
LIMIT $4::integer;

-- name: list_jobs_scheduled
SELECT * FROM __schema__.jobs
WHERE status = 'scheduled'
  AND (created_at, id COLLATE "C") < ($5::double precision, $6::text COLLATE "C")
  AND ($1::text IS NULL OR queue = $1::text)
  AND ($2::text IS NULL OR task = $2::text)
  AND (expires_at IS NULL OR expires_at > $3::double precision)
ORDER BY created_at DESC, id COLLATE "C" DESC
LIMIT $4::integer;

-- name: list_jobs_running
SELECT * FROM __schema__.jobs
WHERE status = 'running'
  AND (created_at, id COLLATE "C") < ($5::double precision, $6::text COLLATE "C")
  AND ($1::text IS NULL OR queue = $1::text)
  AND ($2::text IS NULL OR task = $2::text)
  AND (expires_at IS NULL OR expires_at > $3::double precision)
ORDER BY created_at DESC, id COLLATE "C" DESC
LIMIT $4::integer;

-- name: list_children
-- $1: parent id, $2: optional status, $3: now, $4: limit, $5, $6: cursor, $7, $8: optional
-- queue and task filters. A job's children (subtasks, group members, chain links) through
-- jobs_parent_idx.
SELECT * FROM __schema__.jobs
WHERE parent_id = $1::text
  AND (created_at, id COLLATE "C") < ($5::double precision, $6::text COLLATE "C")
  AND ($2::text IS NULL OR status = $2::text)
  AND ($7::text IS NULL OR queue = $7::text)
  AND ($8::text IS NULL OR task = $8::text)
  AND (expires_at IS NULL OR expires_at > $3::double precision)
ORDER BY created_at DESC, id COLLATE "C" DESC
LIMIT $4::integer;

-- name: queue_stats
-- $1: now. Live jobs counted per (queue, status), with the smallest run_at among the ready
-- ones; one pass over the table, reading no payload.
SELECT queue, status, count(*) AS jobs,
       min(run_at) FILTER (
           WHERE status = 'queued' OR (status = 'scheduled' AND run_at <= $1::double precision)
       ) AS oldest_ready_at
FROM __schema__.jobs
WHERE expires_at IS NULL OR expires_at > $1::double precision
GROUP BY queue, status;

-- --- Flow control (issue #13) ------------------------------------------------------------------
-- A claim that meets a limit (see claim) runs as one transaction: flow_lock, then flow_claim.
-- The advisory locks make the claims of one limited key take turns, and flow_claim, a statement
-- of its own, sees every claim committed before its lock was granted: counts and tokens are exact.

-- name: flow_lock
-- $1: queue, $2: the tasks with limits, $3: the lock namespace (the schema). Takes the
-- transaction's advisory locks of the keys a claim of $1 counts (the queue, when it has limits;
-- every limited task), in one order (the locks are taken after the sort), so claims never
-- deadlock.
SELECT pg_advisory_xact_lock(k)
FROM (
    SELECT DISTINCT hashtextextended($3::text || ':' || key, 0) AS k
    FROM (
        SELECT 'queue:' || name AS key FROM __schema__.queues
        WHERE name = $1::text AND (concurrency IS NOT NULL OR rate_count IS NOT NULL)
        UNION ALL
        SELECT 'task:' || task FROM unnest($2::text[]) AS t(task)
    ) AS keys
) AS ordered
ORDER BY k;

-- name: flow_claim
-- $1: queue, $2: limit, $3: now, $4: lease seconds, $5: worker, $6..$9: the task limits as
-- arrays (name, concurrency, tokens per second, burst; NULL: none), $10: clock slack (seconds),
-- $11: how many ready jobs the claim looks at (its head of the queue), held-back ones included.
-- Claims in order, skipping jobs of tasks at a limit, within the queue's own limits; spends the
-- tokens. Returns the claimed rows (summary = false), then one summary row (the job columns
-- NULL): held_back, retry_at, and flow (whether the next claim should come here directly).
WITH settings AS (
    SELECT * FROM __schema__.queues WHERE name = $1::text
),
limits AS (
    SELECT * FROM unnest($6::text[], $7::integer[], $8::double precision[], $9::double precision[])
        AS l(task, concurrency, rate, burst)
),
task_running AS (
    SELECT task, count(*)::integer AS n FROM __schema__.jobs
    WHERE status = 'running' AND task = ANY ($6::text[])
    GROUP BY task
),
task_quota AS (
    SELECT l.task, l.rate, l.burst,
           coalesce((l.concurrency - coalesce(r.n, 0))::double precision, 'Infinity') AS free,
           CASE WHEN l.rate IS NULL THEN 'Infinity'::double precision
                WHEN b.task IS NULL THEN l.burst
                ELSE least(l.burst, b.tokens + greatest($3::double precision - b.refilled_at
                                                        + $10::double precision, 0) * l.rate)
           END AS tokens
    FROM limits AS l
    LEFT JOIN task_running AS r ON r.task = l.task
    LEFT JOIN __schema__.task_buckets AS b ON b.task = l.task
),
queue_quota AS (
    SELECT coalesce(s.paused, false) AS paused,
           s.rate_count::double precision / s.rate_per AS rate, s.rate_burst AS burst,
           CASE WHEN s.concurrency IS NULL THEN 'Infinity'::double precision
                ELSE s.concurrency - (SELECT count(*) FROM __schema__.jobs
                                      WHERE status = 'running' AND queue = $1::text)
           END AS free,
           CASE WHEN s.rate_count IS NULL THEN 'Infinity'::double precision
                WHEN s.refilled_at IS NULL THEN s.rate_burst
                ELSE least(s.rate_burst, s.tokens + greatest($3::double precision - s.refilled_at
                                                             + $10::double precision, 0)
                                                    * s.rate_count / s.rate_per)
           END AS tokens
    FROM (SELECT 1) AS one LEFT JOIN settings AS s ON true
),
budget AS (
    SELECT CASE WHEN paused THEN 0
                ELSE greatest(least($2::double precision, floor(free), floor(tokens)), 0)::integer
           END AS n
    FROM queue_quota
),
blocked AS (
    SELECT task FROM task_quota WHERE free < 1 OR tokens < 1
),
-- The head of the queue, $11 ready jobs in claim order (an index scan, bounded however many
-- jobs of blocked tasks wait in the queue); the jobs of blocked tasks are left out, the others
-- locked (those another claim holds are skipped; a job claimed meanwhile fails the re-check).
head AS (
    SELECT id, task FROM __schema__.jobs
    WHERE queue = $1::text
      AND status IN ('queued', 'scheduled')
      AND (status = 'queued' OR run_at <= $3::double precision)
      AND (SELECT n FROM budget) > 0
    ORDER BY priority DESC, run_at, seq
    LIMIT $11::integer
),
candidates AS (
    SELECT id, task, priority, run_at, seq
    FROM __schema__.jobs
    WHERE id = ANY (ARRAY(SELECT id FROM head WHERE NOT (task = ANY (ARRAY(SELECT task FROM blocked)))))
      AND queue = $1::text
      AND status IN ('queued', 'scheduled')
      AND (status = 'queued' OR run_at <= $3::double precision)
    FOR UPDATE SKIP LOCKED
),
ranked AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.task ORDER BY c.priority DESC, c.run_at, c.seq) AS nth
    FROM candidates AS c
),
chosen AS (
    SELECT r.id
    FROM ranked AS r LEFT JOIN task_quota AS q ON q.task = r.task
    WHERE q.task IS NULL OR r.nth <= least(q.free, q.tokens)
    ORDER BY r.priority DESC, r.run_at, r.seq
    LIMIT (SELECT n FROM budget)
),
claimed AS (
    UPDATE __schema__.jobs AS j SET
        status = 'running',
        -- Kept within 1..ATTEMPTS_LIMIT whatever the row says (asynctask/brokers/rules.py).
        attempts = greatest(least(j.attempts, 2147483646), 0) + 1,
        -- As in claim, whichever path claims the job (this commit is durable: it writes buckets).
        token = greatest(
            least(j.token, 9223372036854775806) + 1,
            (extract(epoch FROM statement_timestamp()) * 1000000)::bigint
        ),
        started_at = $3::double precision,
        lease_expires_at = $3::double precision + $4::double precision,
        worker = $5::text
    WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
    RETURNING j.*
),
taken AS (
    SELECT task, count(*)::integer AS n FROM claimed GROUP BY task
),
task_left AS (
    SELECT q.task, q.rate, q.burst, q.free - coalesce(t.n, 0) AS free, q.tokens - coalesce(t.n, 0) AS tokens,
           coalesce(t.n, 0) AS n
    FROM task_quota AS q LEFT JOIN taken AS t ON t.task = q.task
),
spent_tasks AS (
    INSERT INTO __schema__.task_buckets AS b (task, tokens, refilled_at)
    SELECT task, tokens, $3::double precision FROM task_left WHERE rate IS NOT NULL AND n > 0
    ON CONFLICT (task) DO UPDATE SET tokens = EXCLUDED.tokens, refilled_at = EXCLUDED.refilled_at
    RETURNING 1
),
queue_left AS (
    SELECT paused, rate, burst, free - (SELECT count(*) FROM claimed) AS free,
           tokens - (SELECT count(*) FROM claimed) AS tokens
    FROM queue_quota
),
spent_queue AS (
    UPDATE __schema__.queues AS s SET
        tokens = (SELECT tokens FROM queue_left),
        refilled_at = $3::double precision
    WHERE s.name = $1::text AND s.rate_count IS NOT NULL AND EXISTS (SELECT 1 FROM claimed)
    RETURNING 1
),
summary AS (
    SELECT
        -- Over-reporting is harmless (the worker waits for a wake-up rather than polling at once).
        (q.paused OR q.free < 1 OR q.tokens < 1 OR (SELECT n FROM budget) < $2::integer
         OR EXISTS (SELECT 1 FROM blocked)
         OR EXISTS (SELECT 1 FROM ranked AS r JOIN task_quota AS t ON t.task = r.task
                    WHERE r.nth > least(t.free, t.tokens))) AS held_back,
        (SELECT min(due) FROM (
            SELECT $3::double precision + (greatest(least($2::double precision, burst) / 2, 1) - tokens) / rate AS due
            FROM queue_left WHERE rate IS NOT NULL AND free >= 1 AND tokens < 1
            UNION ALL
            SELECT $3::double precision + (greatest(least($2::double precision, burst) / 2, 1) - tokens) / rate
            FROM task_left WHERE rate IS NOT NULL AND free >= 1 AND tokens < 1
        ) AS dues) AS retry_at,
        -- A limited task at the head of the queue keeps the queue on the flow path.
        (EXISTS (SELECT 1 FROM settings)
         OR EXISTS (SELECT 1 FROM head WHERE task = ANY ($6::text[]))) AS flow
    FROM queue_left AS q
)
SELECT *, NULL::boolean AS held_back, NULL::double precision AS retry_at, NULL::boolean AS flow,
       false AS summary
FROM claimed
UNION ALL
SELECT (NULL::__schema__.jobs).*, held_back, retry_at, flow, true FROM summary
ORDER BY summary, priority DESC, run_at, seq;

-- name: queue_settings
SELECT * FROM __schema__.queues WHERE name = $1::text;

-- name: configured_queues
SELECT * FROM __schema__.queues ORDER BY name;

-- name: set_queue_limits
-- $1: queue, $2: concurrency, $3..$5: rate count, period and burst (all NULL: no rate). Keeps
-- the pause; a changed rate starts with a full bucket. Returns the row.
INSERT INTO __schema__.queues AS s (name, concurrency, rate_count, rate_per, rate_burst)
VALUES ($1::text, $2::integer, $3::integer, $4::double precision, $5::integer)
ON CONFLICT (name) DO UPDATE SET
    concurrency = EXCLUDED.concurrency,
    rate_count = EXCLUDED.rate_count,
    rate_per = EXCLUDED.rate_per,
    rate_burst = EXCLUDED.rate_burst,
    tokens = CASE WHEN (s.rate_count, s.rate_per, s.rate_burst)
                       IS NOT DISTINCT FROM (EXCLUDED.rate_count, EXCLUDED.rate_per, EXCLUDED.rate_burst)
                  THEN s.tokens END,
    refilled_at = CASE WHEN (s.rate_count, s.rate_per, s.rate_burst)
                            IS NOT DISTINCT FROM (EXCLUDED.rate_count, EXCLUDED.rate_per, EXCLUDED.rate_burst)
                       THEN s.refilled_at END
RETURNING *;

-- name: set_queue_paused
-- $1: queue, $2: paused. Keeps the limits. Returns the row.
INSERT INTO __schema__.queues AS s (name, paused) VALUES ($1::text, $2::boolean)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused
RETURNING *;

-- name: drop_default_queue
-- $1: queue, $2: channel, $3: notify. After a settings change: a queue back at the defaults loses
-- its row (so its claims take the plain path again), and its idle workers are woken either way.
WITH gone AS (
    DELETE FROM __schema__.queues
    WHERE name = $1::text AND NOT paused AND concurrency IS NULL AND rate_count IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS dropped,
       (SELECT count(pg_notify($2::text, $1::text)) WHERE $3::boolean) AS woken;

-- name: find_unique
SELECT * FROM __schema__.jobs
WHERE unique_key = $1::text AND status IN ('scheduled', 'queued', 'running', 'waiting', 'paused');

-- The worker registry (observability) ----------------------------------------------------------

-- name: record_worker
-- $1..$8, $11: the worker's record, $9: now, $10: seconds until it expires. Replaces the
-- previous record of this id, and deletes the records of workers that died.
WITH dead AS (
    DELETE FROM __schema__.workers WHERE expires_at <= $9::double precision AND id <> $1::text
)
INSERT INTO __schema__.workers AS w
    (id, host, pid, queues, concurrency, version, started_at, heartbeat_at, expires_at, running, counts)
VALUES (
    $1::text, $2::text, $3::integer, $4::text[], $5::integer, $6::text, $7::double precision,
    $9::double precision, $9::double precision + $10::double precision, $8::integer, $11::jsonb
)
ON CONFLICT (id) DO UPDATE SET
    host = EXCLUDED.host,
    pid = EXCLUDED.pid,
    queues = EXCLUDED.queues,
    concurrency = EXCLUDED.concurrency,
    version = EXCLUDED.version,
    started_at = EXCLUDED.started_at,
    heartbeat_at = EXCLUDED.heartbeat_at,
    expires_at = EXCLUDED.expires_at,
    running = EXCLUDED.running,
    counts = EXCLUDED.counts;

-- name: remove_worker
DELETE FROM __schema__.workers WHERE id = $1::text;

-- name: list_workers
-- $1: now. The live workers.
SELECT * FROM __schema__.workers WHERE expires_at > $1::double precision ORDER BY id COLLATE "C";
