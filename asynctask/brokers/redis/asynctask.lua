-- asynctask's Redis broker: every command in one file, dispatched by name in argv[1]. Python
-- calls it only through the typed wrappers in scripts.py, which loads it as a Redis Functions
-- library (FCALL; the file's top level runs once, at load) or, where Functions are not
-- available, as a script (EVALSHA; the top level runs at every call). scripts.py adds a
-- header setting ONLY (the command of this call under EVAL, false in a library) and the line
-- that calls or registers `main` below.
--
-- argv[1] = command, [2] = key prefix, [3] = now, [4] = sortable key of now, [5] = queue;
-- the command's own arguments follow (read in order with `take()`). `now` comes from the
-- app's injected clock, never Redis TIME, so tests can drive time.
--
-- keys[1] is the queue's ready key (keys.py): it declares the queue's slot. Every key of the
-- queue and its job hashes share the queue's {hash tag}, so a command on one queue stays in one
-- Cluster slot.
-- The exceptions are workflow links (a child's parent, spawned children), which may live in
-- other queues: `queue_keys` below mirrors keys.py to reach them.
--
-- Invariant: a job is in exactly one of ready / scheduled / leased / (none: waiting, paused,
-- finished), matching its status. Nothing is popped destructively: a claim moves a job from
-- ready to leased in the same script that sets its lease.

-- Per-call state, set by `main` at the start of every call. A library keeps its upvalues from
-- one call to the next, so every value that depends on a call lives here and is reset there;
-- everything else at the top level is constant.
local KEYS, ARGV, CMD, ROOT, NOW, NOW_KEY, now, IDS, QUEUES, UNIQUE, Q
local pos

local function take()
  pos = pos + 1
  return ARGV[pos - 1]
end

-- Idle workers block on the wake list; a few signals wake a few of them. Trimmed so a queue
-- nobody waits on cannot grow it.
local WAKE_MAX = 16

-- The keys of a queue; must match keys.py (Keys.queue).
local function queue_keys(queue)
  local base = ROOT .. ':{' .. queue .. '}:'
  return {
    name = queue, ready = base .. 'ready', scheduled = base .. 'scheduled',
    leased = base .. 'leased', finished = base .. 'finished', all = base .. 'all', -- (legacy)
    wake = base .. 'wake', seq = base .. 'seq', flow = base .. 'flow', job = base .. 'job:',
  }
end

-- Under EVAL each command is defined only when it is the one called
-- (`commands.x = want('x') and function() ... end`), and the rarely called ones (COLD) are
-- not even compiled into closures otherwise; a library defines them all, once.
local HOT = {enqueue = true, claim = true, complete = true, extend = true, save = true,
  promote = true, rescue = true, prune = true, peek = true, quarantine = true}
local function want(name)
  return not ONLY or ONLY == name
end
local COLD = not ONLY or not HOT[ONLY]

local function hex(n)
  return string.format('%016x', n)
end

-- Members of the ordered sets are fixed-width hex prefixes (16 digits each), then the job id:
--   ready:           priority key .. time key .. sequence .. id   (see make_ready, codec.py)
--   finished:        creation sequence .. id                      (see all_member)
-- (`all` held the same members as `finished` for every job; nothing ever read it, so new jobs
-- no longer enter it. Entries written by older versions are still removed with their job.)
local HEX = 16
local READY_ID_AT = 3 * HEX + 1   -- where the id starts in a `ready` member
local ALL_ID_AT = HEX + 1         -- where the id starts in a `finished` member
local function ready_id(member) return string.sub(member, READY_ID_AT) end
local function all_id(member) return string.sub(member, ALL_ID_AT) end

local function wake(K, n)
  if n <= 0 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  local ones = {}
  for i = 1, n do ones[i] = '1' end
  if redis.call('LPUSH', K.wake, unpack(ones)) > WAKE_MAX then
    redis.call('LTRIM', K.wake, 0, WAKE_MAX - 1)
  end
end

-- The member of the `finished` zset (and of the legacy `all`): creation sequence, then id.
local function all_member(key, id)
  -- A corrupt cseq (see `corrupt`) must not stop the record from being deleted.
  return hex(tonumber(redis.call('HGET', key, 'cseq')) or 0) .. id
end

-- Gone for readers: absent, or finished and past expires_at.
-- Whether a stored time is due (false for none, and for one that is not a number: a corrupt
-- record stays visible rather than failing the command that reads it).
local function past(v)
  local t = v and tonumber(v)
  return t and t <= now or false
end

local function live(key)
  local f = redis.call('HMGET', key, 'status', 'expires_at')
  if not f[1] then return false end
  return not past(f[2])
end

local function held(key, token)
  local f = redis.call('HMGET', key, 'status', 'token')
  return f[1] == 'running' and f[2] == token
end

-- ===========================================================================================
-- Inspection (web dashboard, metrics): two more per-queue indexes, kept up to date by
-- create (for a new job) and track / forget calls in the commands, and read by list_page and stats below.
--
--   P:{q}:created        zset  every job of the queue, scored by created_at, member = id
--   P:{q}:status:<s>     zset  the jobs in status s, scored by created_at, member = id, for
--                              the statuses no other index holds: waiting, paused, succeeded,
--                              failed, cancelled (queued, scheduled and running jobs are the
--                              members of ready, scheduled and leased)
--
-- Equal scores order by member, so a zset read in reverse is the listing order: created_at
-- descending, then id descending.
-- ===========================================================================================

local TRACKED = {waiting = true, paused = true, succeeded = true, failed = true, cancelled = true}
local TRACKED_LIST = {'waiting', 'paused', 'succeeded', 'failed', 'cancelled'}

-- Mirrors keys.py (QueueKeys.created, QueueKeys.status).
local function created_key(K)
  return string.sub(K.job, 1, -5) .. 'created'
end

local function status_key(K, status)
  return string.sub(K.job, 1, -5) .. 'status:' .. status
end

-- A job of queue K moved from status `from` to `to`.
local function track(K, key, id, from, to)
  if from == to then return end
  if from and TRACKED[from] then redis.call('ZREM', status_key(K, from), id) end
  if TRACKED[to] then redis.call('ZADD', status_key(K, to), redis.call('HGET', key, 'created_at'), id) end
end

-- A job left queue K (deleted, pruned, or replaced under its id).
local function forget(K, id)
  redis.call('ZREM', created_key(K), id)
  for _, status in ipairs(TRACKED_LIST) do redis.call('ZREM', status_key(K, status), id) end
end
-- ===========================================================================================

local function make_ready(K, key, id)
  local seq = redis.call('INCR', K.seq)
  local f = redis.call('HMGET', key, 'pkey', 'tkey')
  local member = f[1] .. f[2] .. hex(seq) .. id
  redis.call('ZADD', K.ready, '0', member)
  redis.call('HSET', key, 'status', 'queued', 'rmember', member)
end

-- Take a job out of ready / scheduled (it is about to be paused, cancelled or deleted).
local function unqueue(K, key, id)
  local rmember = redis.call('HGET', key, 'rmember')
  if rmember then redis.call('ZREM', K.ready, rmember) end
  redis.call('HDEL', key, 'rmember')
  redis.call('ZREM', K.scheduled, id)
end

-- Remove a job from every per-queue index (not from the ids index).
local function unlink(K, key, id)
  unqueue(K, key, id)
  redis.call('ZREM', K.leased, id)
  local member = all_member(key, id)
  redis.call('ZREM', K.finished, member)
  redis.call('ZREM', K.all, member) -- (legacy entry, if any)
  forget(K, id)
end

-- Set `field` to `value`, or delete it when `value` is nil.
local function set_or_clear(key, field, value)
  if value then
    redis.call('HSET', key, field, value)
  else
    redis.call('HDEL', key, field)
  end
end

-- Count a child in (+1) or out (-1) of its parent; a waiting parent at 0 is queued again
-- for its on-finish phase.
local sound -- defined with the corrupt-record checks below

local function add_pending(parent_id, delta)
  local pq = redis.call('HGET', IDS, parent_id)
  if not pq then return end
  local P = queue_keys(pq)
  local pkey = P.job .. parent_id
  local f = redis.call('HMGET', pkey, 'status', 'pending')
  if not f[1] then return end
  if not sound(P, pkey, parent_id) then return end -- a corrupt parent is failed, not counted
  local pending = math.max(tonumber(f[2] or '0') + delta, 0)
  if f[1] == 'waiting' and pending == 0 then
    redis.call('HSET', pkey, 'pending', 0, 'attempts', 0, 'run_at', NOW, 'tkey', NOW_KEY)
    track(P, pkey, parent_id, 'waiting', 'queued')
    make_ready(P, pkey, parent_id)
    wake(P, 1)
  else
    redis.call('HSET', pkey, 'pending', pending)
  end
end

-- Bookkeeping for a job that just entered a finished status.
local function finished(key)
  local parent_id = redis.call('HGET', key, 'parent_id')
  if parent_id then add_pending(parent_id, -1) end
end

local function finish(K, key, id, status, expires_at, ttl_ms)
  track(K, key, id, redis.call('HGET', key, 'status'), status)
  redis.call('HSET', key, 'status', status, 'finished_at', NOW)
  redis.call('HDEL', key, 'lease_expires_at', 'rmember')
  redis.call('ZREM', K.leased, id)
  if expires_at ~= '' then
    redis.call('HSET', key, 'expires_at', expires_at)
    redis.call('ZADD', K.finished, expires_at, all_member(key, id))
    -- A real TTL too, so records vanish even if nobody prunes; correctness still comes
    -- from expires_at (the TTL carries a margin and follows the wall clock).
    redis.call('PEXPIRE', key, ttl_ms)
  else
    redis.call('HDEL', key, 'expires_at')
  end
  finished(key)
end

local commands = {}

-- --- corrupt records (issue #11) ------------------------------------------------------------
-- Redis does not roll back a script that fails halfway, so a record the commands below cannot
-- read (a field edited by hand, a partial write, a bug) is checked *before* anything is changed,
-- where a command first meets it (promote, claim, rescue). Such a record is quarantined: it ends
-- `failed`, out of every queue index but in the `failed` listing, with error
-- "corrupt job record: <what is wrong>", and the command goes on with the next job. The rules
-- are those of asynctask/brokers/rules.py (CORRUPT_RECORD); codec.py decodes what passes them.

local STATUSES = {scheduled = true, queued = true, running = true, waiting = true, paused = true,
  succeeded = true, failed = true, cancelled = true}
local CHECKED = {'id', 'task', 'queue', 'payload', 'status', 'attempts', 'max_retries', 'token',
  'priority', 'cseq', 'run_at', 'created_at', 'pkey', 'tkey', 'pending', 'timeout', 'started_at',
  'finished_at', 'lease_expires_at', 'expires_at', 'headers'}
local REQUIRED = 14 -- the first fields of CHECKED; the others may be absent
local INTEGER = {attempts = true, max_retries = true, token = true, priority = true, cseq = true,
  pending = true}
local COUNT = {attempts = true, max_retries = true, token = true, pending = true}
local NUMBER = {run_at = true, created_at = true, timeout = true, started_at = true,
  finished_at = true, lease_expires_at = true, expires_at = true}
local SORT_KEY = {pkey = true, tkey = true}

-- An integer HINCRBY can add 1 to, written the way Python's int() reads it (18 digits at most).
local function integer(v)
  return string.find(v, '^%-?%d+$') ~= nil and (#v <= 18 or #v == 19 and string.byte(v) == 45)
end

-- A float Lua and Python read alike (Lua reads hex, Python does not).
local function number(v)
  return tonumber(v) ~= nil and string.find(v, '^%s*[-+]?[%d.]+[eE]?[-+]?%d*%s*$') ~= nil
end

local function headers(v)
  if v == '{}' then return true end
  if string.sub(v, 1, 1) ~= '{' then return false end
  local ok, decoded = pcall(cjson.decode, v)
  if not ok or type(decoded) ~= 'table' then return false end
  for name, value in pairs(decoded) do
    if type(name) ~= 'string' or type(value) ~= 'string' then return false end
  end
  return true
end

-- What each CHECKED field must be, by position (one lookup per field in `check`).
local KIND = {}
for i = 1, #CHECKED do -- (a library's load sees no ipairs)
  local name = CHECKED[i]
  KIND[i] = COUNT[name] and 'count' or INTEGER[name] and 'integer' or NUMBER[name] and 'number'
    or SORT_KEY[name] and 'sort' or name
end

-- What is wrong with a record, given its CHECKED fields (HMGET order), or false.
local function check(f)
  for i = 1, #CHECKED do
    local v = f[i]
    if not v then
      if i <= REQUIRED then return 'field ' .. CHECKED[i] .. ' is missing' end
    else
      local kind = KIND[i]
      if kind == 'count' or kind == 'integer' then
        if not integer(v) then return 'field ' .. CHECKED[i] .. ' is not an integer' end
        if kind == 'count' and string.byte(v) == 45 then return 'field ' .. CHECKED[i] .. ' is negative' end
      elseif kind == 'number' then
        if not number(v) then return 'field ' .. CHECKED[i] .. ' is not a number' end
      elseif kind == 'sort' then
        if #v ~= 16 or string.find(v, '%X') then
          return 'field ' .. CHECKED[i] .. ' is not a 16-digit sort key'
        end
      elseif kind == 'status' then
        if not STATUSES[v] then return 'field status is not a job status' end
      elseif kind == 'headers' then
        if not headers(v) then return 'field headers is not a JSON object of strings' end
      end
    end
  end
  if f[5] == 'running' and not f[19] then return 'a running job without lease_expires_at' end
  return false
end

-- What is wrong with the record at `key`, or false.
local function corrupt(key)
  return check(redis.call('HMGET', key, unpack(CHECKED)))
end

-- Fail the record at `key` as corrupt, out of every queue index (writes only fields it sets).
local function quarantine(K, key, id, reason)
  local f = redis.call('HMGET', key, 'status', 'rmember', 'created_at')
  if f[2] then redis.call('ZREM', K.ready, f[2]) end
  redis.call('ZREM', K.scheduled, id)
  redis.call('ZREM', K.leased, id)
  redis.call('HSET', key, 'status', 'failed', 'finished_at', NOW, 'error', 'corrupt job record: ' .. reason)
  redis.call('HDEL', key, 'lease_expires_at', 'rmember', 'expires_at')
  if f[1] and TRACKED[f[1]] then redis.call('ZREM', status_key(K, f[1]), id) end
  local score = number(f[3] or '') and f[3] or NOW
  redis.call('ZADD', status_key(K, 'failed'), score, id)
  redis.call('ZADD', created_key(K), 'NX', score, id)
  finished(key)
end

-- id, reason: quarantine a claimed record the broker could not decode. Returns 1 if done.
commands.quarantine = want('quarantine') and function()
  local id, reason = take(), take()
  local key = Q.job .. id
  if redis.call('EXISTS', key) == 0 then return 0 end
  quarantine(Q, key, id, reason)
  return 1
end

-- Check a job met in an index: quarantined (returns false) or good to use (returns true).
function sound(K, key, id)
  local reason = corrupt(key)
  if not reason then return true end
  quarantine(K, key, id, reason)
  return false
end

-- A job met in an index in another status than expected: a stale entry, unless its status is
-- missing or unknown (then it is quarantined, rather than dropped from the index for good).
local function stray(K, key, id, status)
  if status and STATUSES[status] then return end
  if not status and redis.call('EXISTS', key) == 0 then return end
  quarantine(K, key, id, status and 'field status is not a job status' or 'field status is missing')
end

-- --- unique jobs (flow control, issue #13) ----------------------------------------------------
-- P:unique maps a key to the job that took it last; the job holds it while it is unfinished.
-- Entries are checked when read, so no finishing path has to release them.
local UNFINISHED = {scheduled = true, queued = true, running = true, waiting = true, paused = true}

-- The hash key of the unfinished job holding unique key `ukey`, or false.
local function unique_holder(ukey)
  local id = redis.call('HGET', UNIQUE, ukey)
  local q = id and redis.call('HGET', IDS, id)
  if not q then return false end
  local key = queue_keys(q).job .. id
  local f = redis.call('HMGET', key, 'status', 'unique_key')
  if f[1] and UNFINISHED[f[1]] and f[2] == ukey then return key end
  return false
end

-- Forget the key of a job record about to be deleted, if it still points at it.
local function release_unique(key, id)
  local ukey = redis.call('HGET', key, 'unique_key')
  if ukey and redis.call('HGET', UNIQUE, ukey) == id then redis.call('HDEL', UNIQUE, ukey) end
end

-- A new job as codec.py packs it (new_job_row; one msgpack array, nil for an absent field):
--   1 id, 2 status, 3 run_at, 4 task, 5 queue, 6 payload, 7 priority, 8 max_retries, 9 pkey,
--   10 tkey, then the optional 11 timeout, 12 parent_id, 13 pending, 14 meta, 15 headers,
--   16 unique_key.
local OPTIONAL = {'timeout', 'parent_id', 'pending', 'meta', 'headers', 'unique_key'}

-- The hash fields of new job j (created now, with sequence cseq; rmember if queued), written
-- into `fields` (a table from new_fields, reused job after job: no table per job), and how many
-- of its entries to write.
local function new_fields()
  return {'id', 0, 'status', 0, 'run_at', 0, 'task', 0, 'queue', 0, 'payload', 0, 'priority', 0,
    'max_retries', 0, 'pkey', 0, 'tkey', 0, 'attempts', '0', 'token', '0', 'created_at', NOW, 'cseq', 0}
end

local function job_fields(fields, j, cseq, rmember)
  fields[2], fields[4], fields[6], fields[8], fields[10] = j[1], j[2], j[3], j[4], j[5]
  fields[12], fields[14], fields[16], fields[18], fields[20] = j[6], j[7], j[8], j[9], j[10]
  fields[28] = cseq
  local n = 28
  for i = 1, 6 do
    local v = j[10 + i]
    if v then
      fields[n + 1], fields[n + 2] = OPTIONAL[i], v
      n = n + 2
    end
  end
  if rmember then
    fields[n + 1], fields[n + 2] = 'rmember', rmember
    n = n + 2
  end
  return n
end

-- The index writes of a batch of new jobs in queue K (enqueue), made by a few commands at
-- the end (flush) rather than a few per job; sequences are taken with one INCRBY. Nothing the
-- batch's own creates read is deferred: create flushes before it reads the ids index.
local BULK = 2000 -- arguments per deferred command (Lua's unpack has a limit)

local function new_batch(K, n)
  local top = redis.call('INCRBY', K.seq, n)
  -- n: how many jobs the lists hold (created holds 2 entries per job, ids too; ready holds
  -- nr entries).
  return {K = K, seq = top - n, fields = new_fields(), n = 0, nr = 0,
    created = {}, ready = {}, ids = {}}
end

-- `command key args...` in chunks; n: how many of args (default #args).
local function bulk(command, key, args, n)
  n = n or #args
  for i = 1, n, BULK do
    redis.call(command, key, unpack(args, i, math.min(i + BULK - 1, n)))
  end
end

local function flush(b)
  bulk('ZADD', created_key(b.K), b.created, 2 * b.n)
  bulk('ZADD', b.K.ready, b.ready, b.nr)
  bulk('HSET', IDS, b.ids, 2 * b.n)
  b.created, b.ready, b.ids, b.n, b.nr = {}, {}, {}, 0, 0
end

local function push(list, a, b)
  list[#list + 1] = a
  list[#list + 1] = b
end

-- Store new job j in queue K unless a live job has its id there. Returns true if created.
-- `absent`: the caller knows no record has this id in K (skips the EXISTS). With a batch (of queue K), its index writes are deferred to flush(batch), the ids index's
-- too; without one, the caller writes the ids index. The caller wakes the queue (once per batch).
local function create(K, j, batch, absent)
  local id, status, ukey = j[1], j[2], j[16]
  local key = K.job .. id
  local exists = not absent and redis.call('EXISTS', key) == 1
  if exists and live(key) then return false end
  if ukey then
    if batch then flush(batch) end
    if unique_holder(ukey) then return false end
  end
  local old_token = false
  if exists then
    -- An expired record under the same id: the new job replaces it, but its tokens keep
    -- counting up, so the old owner's token can never match the new job.
    old_token = redis.call('HGET', key, 'token')
    unlink(K, key, id)
    redis.call('DEL', key)
  end
  local cseq, fields
  if batch then
    cseq = batch.seq + 1
    batch.seq, fields = cseq, batch.fields
  else
    cseq, fields = redis.call('INCR', K.seq), new_fields()
  end
  -- A queued job goes straight to ready (as make_ready would put it, its creation sequence
  -- standing for the ready sequence: both come from K.seq).
  local rmember = status == 'queued' and j[9] .. j[10] .. hex(cseq) .. id
  -- ('%d': Lua's own number-to-text conversion formats a float, several times dearer.)
  local decimal = string.format('%d', cseq)
  if rmember and not (old_token or j[11] or j[12] or j[13] or j[14] or j[15] or ukey) then
    -- The common job (queued, no optional field), its fields written straight from j: what
    -- job_fields would write, without the copies.
    redis.call('HSET', key, 'id', id, 'status', status, 'run_at', j[3], 'task', j[4], 'queue', j[5],
      'payload', j[6], 'priority', j[7], 'max_retries', j[8], 'pkey', j[9], 'tkey', j[10],
      'attempts', '0', 'token', '0', 'created_at', NOW, 'cseq', decimal, 'rmember', rmember)
  else
    local n = job_fields(fields, j, decimal, rmember)
    fields[24] = old_token or '0'
    redis.call('HSET', key, unpack(fields, 1, n))
  end
  if batch then
    local i = 2 * batch.n
    batch.n = batch.n + 1
    local created, ids = batch.created, batch.ids
    created[i + 1], created[i + 2] = NOW, id
    ids[i + 1], ids[i + 2] = id, K.name
    if rmember then
      local r = batch.nr
      batch.ready[r + 1], batch.ready[r + 2] = '0', rmember
      batch.nr = r + 2
    end
  else
    redis.call('ZADD', created_key(K), NOW, id)
    if rmember then redis.call('ZADD', K.ready, '0', rmember) end
  end
  if status ~= 'queued' then
    if TRACKED[status] then redis.call('ZADD', status_key(K, status), NOW, id) end
    if status == 'scheduled' then redis.call('ZADD', K.scheduled, j[3], id) end
  end
  if ukey then redis.call('HSET', UNIQUE, ukey, id) end
  return true
end

local function promote(limit)
  local due = redis.call('ZRANGEBYSCORE', Q.scheduled, '-inf', NOW, 'LIMIT', 0, limit)
  local moved = 0
  for _, id in ipairs(due) do
    redis.call('ZREM', Q.scheduled, id)
    local key = Q.job .. id
    local status = redis.call('HGET', key, 'status')
    if status == 'scheduled' then
      if sound(Q, key, id) then
        make_ready(Q, key, id)
        moved = moved + 1
      end
    else
      stray(Q, key, id, status)
    end
  end
  wake(Q, moved)
  return moved
end



-- Move a queued job to running under a lease.
local function lease_job(key, id, lease, worker)
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HINCRBY', key, 'token', 1)
  redis.call('HSET', key, 'status', 'running', 'started_at', NOW,
    'lease_expires_at', lease, 'worker', worker)
  redis.call('HDEL', key, 'rmember')
  redis.call('ZADD', Q.leased, lease, id)
end

-- Add field = v + 1 to `set`, for a count that passed check(): computed here while a double
-- holds it exactly, by HINCRBY (at once) beyond.
-- Returns the new value as text, or false when HINCRBY made it.
local function plus_one(key, field, v, set)
  if #v <= 15 then
    local text = string.format('%d', tonumber(v) + 1)
    push(set, field, text)
    return text
  end
  redis.call('HINCRBY', key, field, 1)
  return false
end

-- Every field codec.py decodes, CHECKED first: a claim reads them in one HMGET and returns the
-- claimed record built from it (with what it wrote) rather than reading it again (HGETALL).
local RECORD = {}
for i = 1, #CHECKED do RECORD[i] = CHECKED[i] end
local UNCHECKED = {'error', 'state', 'result', 'cancel_requested', 'pause_requested', 'parent_id',
  'meta', 'unique_key', 'worker'}
for i = 1, #UNCHECKED do RECORD[#CHECKED + i] = UNCHECKED[i] end -- (a library's load sees no ipairs)
local STARTED_AT, LEASE_EXPIRES_AT, WORKER = 17, 19, #RECORD -- (positions in RECORD)

-- The fields f (HMGET of RECORD) as HGETALL would return them: name, value, ...
local function record_pairs(f)
  local out, n = {}, 0
  for i = 1, #RECORD do
    local v = f[i]
    if v then
      out[n + 1], out[n + 2] = RECORD[i], v
      n = n + 2
    end
  end
  return out
end

local flow_claim -- defined with the flow-control commands below

-- limit, lease_expires_at, worker, promote cap, clock slack, then the task limits: count, and
-- per task name, concurrency, tokens per second, burst ('' for none). Returns {the claimed jobs
-- as HGETALL arrays, held back (1/0), retry_at or ''}. A queue without a flow hash and a claim
-- without task limits take the plain loop.
commands.claim = want('claim') and function()
  local limit, lease, worker, cap = tonumber(take()), take(), take(), tonumber(take())
  local slack, limits, limited = tonumber(take()), {}, false
  for _ = 1, tonumber(take()) do
    local name, concurrency, rate, burst = take(), take(), take(), take()
    limits[name] = {concurrency = tonumber(concurrency), rate = tonumber(rate), burst = tonumber(burst)}
    limited = true
  end
  promote(cap)
  if limited or redis.call('EXISTS', Q.flow) == 1 then
    return flow_claim(limit, lease, worker, limits, slack)
  end
  local members = redis.call('ZRANGE', Q.ready, 0, limit - 1)
  bulk('ZREM', Q.ready, members)
  local out, leased = {}, {}
  for _, member in ipairs(members) do
    local id = ready_id(member)
    local key = Q.job .. id
    -- One read for the status, the checks and the reply (the hot path of every claim).
    local f = redis.call('HMGET', key, unpack(RECORD))
    local status = f[5]
    if status == 'queued' then
      local reason = check(f)
      if reason then
        quarantine(Q, key, id, reason)
      else
        -- lease_job(), in one HSET (and one ZADD to leased for the whole claim)
        local set = {'status', 'running', 'started_at', NOW, 'lease_expires_at', lease, 'worker', worker}
        local attempts = plus_one(key, 'attempts', f[6], set)
        local token = plus_one(key, 'token', f[8], set)
        redis.call('HSET', key, unpack(set))
        redis.call('HDEL', key, 'rmember')
        push(leased, lease, id)
        if attempts and token then
          f[5], f[6], f[8] = 'running', attempts, token
          f[STARTED_AT], f[LEASE_EXPIRES_AT], f[WORKER] = NOW, lease, worker
          out[#out + 1] = record_pairs(f)
        else -- (a count HINCRBY made: read back as text)
          out[#out + 1] = redis.call('HGETALL', key)
        end
      end
    else
      stray(Q, key, id, status)
    end
  end
  bulk('ZADD', Q.leased, leased)
  return {out, 0, ''}
end

-- Spawn a child of an applied outcome: any queue, idempotent on its id across queues.
-- Delete the record of `id` in queue K if it has expired (its id is being reused).
local function drop_expired(K, id)
  local key = K.job .. id
  if redis.call('EXISTS', key) == 1 and not live(key) then
    unlink(K, key, id)
    redis.call('DEL', key)
  end
end

-- The jobs, as one msgpack array of new jobs (see job_fields). One round trip for a whole
-- publish: the ids index is checked and written here, so an id live in another queue is
-- refused atomically too. Returns 1 (created) or 0 (a live job with this id exists) per job.
-- The ids index and the job keys are read BULK jobs at a time: when none of a slice's keys
-- exists (fresh ids, the common case) and its ids are distinct, its jobs skip their own EXISTS.
commands.enqueue = want('enqueue') and function()
  local out, woken = {}, 0
  redis.call('SADD', QUEUES, Q.name)
  local jobs = cmsgpack.unpack(take())
  local batch = new_batch(Q, #jobs)
  local owners, fresh, seen = {}, {}, {}
  for i = 1, #jobs, BULK do
    local ids, keys, distinct = {}, {}, true
    for k = i, math.min(i + BULK - 1, #jobs) do
      local id = jobs[k][1]
      ids[k - i + 1], keys[k - i + 1] = id, Q.job .. id
      if seen[id] then distinct = false end
      seen[id] = true
    end
    for k, owner in ipairs(redis.call('HMGET', IDS, unpack(ids))) do owners[i + k - 1] = owner end
    fresh[i] = distinct and redis.call('EXISTS', unpack(keys)) == 0
  end
  for n, j in ipairs(jobs) do
    local id, status = j[1], j[2]
    out[n] = 0
    local owner = owners[n]
    local taken = false
    if owner and owner ~= Q.name then
      local O = queue_keys(owner)
      taken = live(O.job .. id)
      if not taken then drop_expired(O, id) end
    end
    if not taken and create(Q, j, batch, fresh[n - (n - 1) % BULK]) then
      out[n] = 1
      if status ~= 'waiting' then woken = woken + 1 end
    end
  end
  flush(batch)
  wake(Q, woken)
  return out
end

local function spawn(queue, j, parent_id)
  local id, status = j[1], j[2]
  local owner = redis.call('HGET', IDS, id)
  if owner and owner ~= queue then
    local O = queue_keys(owner)
    if live(O.job .. id) then return end
    drop_expired(O, id)
  end
  local C = queue_keys(queue)
  if not create(C, j) then return end
  redis.call('HSET', IDS, id, queue)
  redis.call('SADD', QUEUES, queue)
  if status ~= 'waiting' then wake(C, 1) end
  if parent_id ~= '' then add_pending(parent_id, 1) end
end

-- The outcomes, as one msgpack array of (nil for none): id, token, kind, result, error,
-- run_at and its tkey (retry), expires_at, ttl_ms, meta, spawned jobs (an array of queue,
-- parent_id ('' for none), new job: see job_fields).
-- Returns 1 (applied) or 0 (stale token: nothing written, nothing spawned) per outcome.
commands.complete = want('complete') and function()
  local out, woken = {}, 0
  -- The zset writes of jobs finished by this call, made at the end (see finish_running).
  local later = {leased = {}, finished = {}, status = {succeeded = {}, failed = {}, cancelled = {}}}
  local function flush_later()
    bulk('ZREM', Q.leased, later.leased)
    bulk('ZADD', Q.finished, later.finished)
    for status, args in pairs(later.status) do bulk('ZADD', status_key(Q, status), args) end
    later = {leased = {}, finished = {}, status = {succeeded = {}, failed = {}, cancelled = {}}}
  end
  -- finish() for the running job `id`, whose fields f (HMGET below) were read; `set` holds
  -- more fields to write with its status, and `clear` fields to delete.
  local function finish_running(key, id, status, expires_at, ttl_ms, f, set, clear)
    push(set, 'status', status)
    push(set, 'finished_at', NOW)
    clear[#clear + 1] = 'lease_expires_at'
    clear[#clear + 1] = 'rmember'
    if expires_at ~= '' then
      push(set, 'expires_at', expires_at)
      -- all_member(): a corrupt cseq must not stop the job from finishing.
      push(later.finished, expires_at, hex(tonumber(f[5]) or 0) .. id)
    else
      clear[#clear + 1] = 'expires_at'
    end
    redis.call('HSET', key, unpack(set))
    redis.call('HDEL', key, unpack(clear))
    if expires_at ~= '' then redis.call('PEXPIRE', key, ttl_ms) end
    later.leased[#later.leased + 1] = id
    push(later.status[status], f[6], id) -- track(): running is not a tracked status
    if f[4] then add_pending(f[4], -1) end -- finished()
  end
  for n, o in ipairs(cmsgpack.unpack(take())) do
    local id, token, kind, result, err = o[1], o[2], o[3], o[4], o[5]
    local run_at, tkey, expires_at, ttl_ms, meta = o[6], o[7], o[8] or '', o[9], o[10]
    local spawns = o[11] or {}
    local key = Q.job .. id
    local f = redis.call('HMGET', key, 'status', 'token', 'pending', 'parent_id', 'cseq', 'created_at')
    if not (f[1] == 'running' and f[2] == token) then -- held()
      out[n] = 0
    else
      out[n] = 1
      if #spawns > 0 then
        flush_later() -- a spawned job may reuse the id of one finished above
        for _, c in ipairs(spawns) do spawn(c[1], c[3], c[2]) end
        f[3] = redis.call('HGET', key, 'pending') -- children count in
      end
      local set = {}
      if meta then push(set, 'meta', meta) end
      if kind == 'succeeded' then
        if result then push(set, 'result', result) end
        if (tonumber(f[3] or '0') or 0) > 0 then
          -- Children are still running: wait for them, then run the on-finish phase.
          push(set, 'status', 'waiting')
          redis.call('HSET', key, unpack(set))
          track(Q, key, id, 'running', 'waiting')
          redis.call('HDEL', key, 'lease_expires_at')
          redis.call('ZREM', Q.leased, id)
        else
          finish_running(key, id, 'succeeded', expires_at, ttl_ms, f, set, {})
        end
      elseif kind == 'failed' or kind == 'cancelled' then
        local clear = {}
        if err then push(set, 'error', err) else clear[1] = 'error' end
        finish_running(key, id, kind, expires_at, ttl_ms, f, set, clear)
      else
        if #set > 0 then redis.call('HSET', key, unpack(set)) end
        if kind == 'retry' then
          set_or_clear(key, 'error', err)
          redis.call('HSET', key, 'run_at', run_at, 'tkey', tkey)
          redis.call('HDEL', key, 'lease_expires_at')
          redis.call('ZREM', Q.leased, id)
          if tonumber(run_at) > now then
            redis.call('HSET', key, 'status', 'scheduled')
            redis.call('ZADD', Q.scheduled, run_at, id)
          else
            make_ready(Q, key, id)
          end
          woken = woken + 1
        elseif kind == 'pause' then
          -- Parked until resumed; the attempt does not count.
          redis.call('HINCRBY', key, 'attempts', -1)
          redis.call('HSET', key, 'status', 'paused')
          track(Q, key, id, 'running', 'paused')
          redis.call('HDEL', key, 'lease_expires_at', 'pause_requested')
          redis.call('ZREM', Q.leased, id)
        else -- release: handed back, the attempt does not count
          redis.call('HINCRBY', key, 'attempts', -1)
          redis.call('HDEL', key, 'lease_expires_at')
          redis.call('ZREM', Q.leased, id)
          make_ready(Q, key, id)
          woken = woken + 1
        end
      end
    end
  end
  flush_later()
  wake(Q, woken)
  return out
end

-- lease_expires_at, count, then id, token pairs. Returns ok/cancel/pause/lost for each.
commands.extend = want('extend') and function()
  local lease = take()
  local out = {}
  for n = 1, tonumber(take()) do
    local id, token = take(), take()
    local key = Q.job .. id
    if held(key, token) then
      redis.call('HSET', key, 'lease_expires_at', lease)
      redis.call('ZADD', Q.leased, lease, id)
      local f = redis.call('HMGET', key, 'cancel_requested', 'pause_requested')
      if f[1] == '1' then
        out[n] = 'cancel'
      elseif f[2] == '1' then
        out[n] = 'pause'
      else
        out[n] = 'ok'
      end
    else
      out[n] = 'lost'
    end
  end
  return out
end

-- id, token, has_state, state, has_result, result. Returns 1 if written.
commands.save = want('save') and function()
  local key = Q.job .. take()
  if not held(key, take()) then return 0 end
  local has_state, state, has_result, result = take(), take(), take(), take()
  if has_state == '1' then redis.call('HSET', key, 'state', state) end
  if has_result == '1' then redis.call('HSET', key, 'result', result) end
  return 1
end

-- limit. Returns how many scheduled jobs became queued.
commands.promote = want('promote') and function()
  return promote(tonumber(take()))
end

-- limit. Re-queues (or fails, with no retries left) jobs whose lease expired.
commands.rescue = want('rescue') and function()
  local expired = redis.call('ZRANGEBYSCORE', Q.leased, '-inf', NOW, 'LIMIT', 0, tonumber(take()))
  local rescued, woken = 0, 0
  for _, id in ipairs(expired) do
    redis.call('ZREM', Q.leased, id)
    local key = Q.job .. id
    local f = redis.call('HMGET', key, 'status', 'lease_expires_at', 'attempts', 'max_retries')
    if f[1] ~= 'running' then
      stray(Q, key, id, f[1])
    elseif not sound(Q, key, id) then
      rescued = rescued + 1
    elseif tonumber(f[2]) <= now then
      local attempts = tonumber(f[3])
      -- The text of asynctask/brokers/rules.py (LEASE_EXPIRED).
      local err = string.format('lease expired at %.3f while attempt %d was running (the worker '
        .. 'crashed, was killed, or lost its broker connection)', tonumber(f[2]), attempts)
      redis.call('HSET', key, 'error', err)
      redis.call('HDEL', key, 'lease_expires_at')
      if attempts > tonumber(f[4]) then
        redis.call('HSET', key, 'status', 'failed', 'finished_at', NOW)
        track(Q, key, id, 'running', 'failed')
        finished(key)
      else
        make_ready(Q, key, id)
        woken = woken + 1
      end
      rescued = rescued + 1
    end
  end
  wake(Q, woken)
  return rescued
end

-- limit. Deletes finished jobs past expires_at; returns their ids.
commands.prune = want('prune') and function()
  local members = redis.call('ZRANGEBYSCORE', Q.finished, '-inf', NOW, 'LIMIT', 0, tonumber(take()))
  local out = {}
  for _, member in ipairs(members) do
    local id = all_id(member)
    local key = Q.job .. id
    -- The record may already be gone through its TTL; the index entries go either way.
    redis.call('ZREM', Q.finished, member)
    redis.call('ZREM', Q.all, member) -- (legacy entry, if any)
    forget(Q, id)
    if redis.call('EXISTS', key) == 1 then
      release_unique(key, id)
      unlink(Q, key, id)
      redis.call('DEL', key)
    end
    out[#out + 1] = id
  end
  return out
end

-- promote cap. Returns {1 if a job is ready else 0, next run_at or ''}.
-- With nothing ready, stale wake signals are dropped so the next BLPOP really blocks.
-- The third value is the server's clock (microseconds), which a wake_claim sent after this
-- peek counts its wait from.
commands.peek = want('peek') and function()
  promote(tonumber(take()))
  if redis.call('ZCARD', Q.ready) > 0 then return {1, ''} end
  redis.call('DEL', Q.wake)
  local nxt = redis.call('ZRANGE', Q.scheduled, 0, 0, 'WITHSCORES')
  local t = redis.call('TIME')
  return {0, nxt[2] or '', t[1] .. string.format('%06d', tonumber(t[2]))}
end

-- A claim queued behind a worker's BLPOP on the wake list (waiting.py), run by the server as
-- soon as the pop returns. Its arguments were written when the wait began, so the time and the
-- lease's expiry move on by the wait, as the server's clock measured it from the peek's.
-- Arguments: stop key, the peek's server time (microseconds; 0: the time stays), then claim's. A stop key that
-- still holds an entry (the worker is stopping: it pushed two, the pop took one) claims nothing.
-- Library only (not under EVAL: the client never pipelines it there).
commands.wake_claim = not ONLY and function()
  local stop, since = take(), tonumber(take())
  if redis.call('EXISTS', stop) == 1 then
    redis.call('DEL', stop)
    return {{}, 0, ''}
  end
  local t = redis.call('TIME')
  local waited = since > 0 and (tonumber(t[1]) * 1000000 + tonumber(t[2]) - since) / 1000000 or 0
  if waited > 0 then
    now = now + waited
    NOW = string.format('%.17g', now)
    ARGV[pos + 1] = string.format('%.17g', tonumber(ARGV[pos + 1]) + waited) -- lease_expires_at
  end
  return commands.claim()
end

-- The commands below this line (and set_flow) are defined only when one of them is called:
-- an EVALSHA runs this whole file, and every function it defines costs time on every call
-- (about 1 us per dozen lines on the benchmark machine), so the hot commands above skip them.
if COLD then
  -- A command on one live job (cancel, pause, resume, retry): takes the job's id, then
  -- returns false if there is no live job, the record as it is if it is corrupt (quarantined
  -- by `sound`), or else the record after apply(key, id, status), which may take() more.
  local function on_live_job(apply)
    return function()
      local id = take()
      local key = Q.job .. id
      if not live(key) then return false end
      if not sound(Q, key, id) then return redis.call('HGETALL', key) end
      apply(key, id, redis.call('HGET', key, 'status'))
      return redis.call('HGETALL', key)
    end
  end

  -- id, expires_at or '', ttl_ms.
  commands.cancel = want('cancel') and on_live_job(function(key, id, status)
    local expires_at, ttl_ms = take(), take()
    if status == 'scheduled' or status == 'queued' or status == 'paused' or status == 'waiting' then
      unqueue(Q, key, id)
      finish(Q, key, id, 'cancelled', expires_at, ttl_ms)
    elseif status == 'running' then
      redis.call('HSET', key, 'cancel_requested', '1')
    end
  end)

  -- id. Parks a scheduled or queued job; asks a running one to pause.
  commands.pause = want('pause') and on_live_job(function(key, id, status)
    if status == 'scheduled' or status == 'queued' then
      unqueue(Q, key, id)
      redis.call('HSET', key, 'status', 'paused')
      track(Q, key, id, status, 'paused')
    elseif status == 'running' then
      redis.call('HSET', key, 'pause_requested', '1')
    end
  end)

  -- id. Queues a paused job again (scheduled, if its run_at is still ahead).
  commands.resume = want('resume') and on_live_job(function(key, id, status)
    if status ~= 'paused' then return end
    -- A delayed job keeps its time: resumed before it, it is scheduled again.
    redis.call('HDEL', key, 'pause_requested')
    local run_at = tonumber(redis.call('HGET', key, 'run_at'))
    if run_at > now then
      track(Q, key, id, 'paused', 'scheduled')
      redis.call('HSET', key, 'status', 'scheduled')
      redis.call('ZADD', Q.scheduled, run_at, id)
    else
      track(Q, key, id, 'paused', 'queued')
      make_ready(Q, key, id)
    end
    wake(Q, 1)
  end)

  -- id. Queues a failed or cancelled job again with a fresh attempt count.
  commands.retry = want('retry') and on_live_job(function(key, id, status)
    if status ~= 'failed' and status ~= 'cancelled' then return end
    local ukey = redis.call('HGET', key, 'unique_key')
    if ukey then
      local holder = unique_holder(ukey)
      -- Its key, taken meanwhile by another unfinished job, leaves it finished.
      if holder and holder ~= key then return end
      redis.call('HSET', UNIQUE, ukey, id)
    end
    local parent_id = redis.call('HGET', key, 'parent_id')
    if parent_id then
      local pq = redis.call('HGET', IDS, parent_id)
      if pq and redis.call('HGET', queue_keys(pq).job .. parent_id, 'status') == 'waiting' then
        add_pending(parent_id, 1)
      end
    end
    redis.call('ZREM', Q.finished, all_member(key, id))
    track(Q, key, id, status, 'queued')
    redis.call('PERSIST', key)
    redis.call('HSET', key, 'attempts', 0, 'run_at', NOW, 'tkey', NOW_KEY)
    redis.call('HDEL', key, 'finished_at', 'expires_at', 'cancel_requested')
    make_ready(Q, key, id)
    wake(Q, 1)
  end)

  -- id. Returns 1 if a record was deleted.
  commands.delete = want('delete') and function()
    local id = take()
    local key = Q.job .. id
    if redis.call('EXISTS', key) == 0 then return 0 end
    release_unique(key, id)
    unlink(Q, key, id)
    redis.call('DEL', key)
    return 1
  end

  -- Global command (KEYS[1] = the ids hash): id, queue pairs. Drops each mapping only if it
  -- still names that queue (the id may have been published again elsewhere).
  commands.unindex = want('unindex') and function()
    local removed = 0
    for i = 6, #ARGV, 2 do
      if redis.call('HGET', IDS, ARGV[i]) == ARGV[i + 1] then
        removed = removed + redis.call('HDEL', IDS, ARGV[i])
      end
    end
    return removed
  end

  -- ===========================================================================================
  -- Inspection commands: list_page and stats (see the inspection block above).
  -- ===========================================================================================

  -- How many index entries list_page reads per batch.
  local LIST_BATCH = 100

  -- a < b in byte order (Lua's own < follows the server's locale; zsets and ids use bytes).
  local function bytes_before(a, b)
    local n = math.min(#a, #b)
    for i = 1, n do
      local x, y = string.byte(a, i), string.byte(b, i)
      if x ~= y then return x < y end
    end
    return #a < #b
  end

  -- The rank, in reverse order, of the first entry of zset `key` strictly after the cursor
  -- (score, id) in listing order. With the cursor's own entry still present this is one ZREVRANK;
  -- otherwise the entries of the cursor's score are walked.
  local function rank_after(key, score, id)
    if score == '' then return 0 end
    local own = redis.call('ZSCORE', key, id)
    if own and tonumber(own) == tonumber(score) then
      return redis.call('ZREVRANK', key, id) + 1
    end
    local rank = redis.call('ZCOUNT', key, '(' .. score, '+inf')
    local offset = 0
    while true do
      local group = redis.call('ZRANGE', key, score, score, 'BYSCORE', 'REV', 'LIMIT', offset, LIST_BATCH)
      for _, member in ipairs(group) do
        if bytes_before(member, id) then return rank end
        rank = rank + 1
      end
      if #group < LIST_BATCH then return rank end
      offset = offset + LIST_BATCH
    end
  end

  -- source ('created' or a tracked status), cursor score ('' for the start), cursor id, limit,
  -- budget, then the status, task and parent filters ('' for none).
  -- Walks the source index newest first from the cursor, reading at most `budget` entries, and
  -- returns {score, id, score, id, ...} of up to `limit` live matching jobs, then where the walk
  -- stopped: {matches, last score or '' when the index is exhausted, last id}.
  commands.list_page = want('list_page') and function()
    local source, score, id = take(), take(), take()
    local limit, budget = tonumber(take()), tonumber(take())
    local want_status, want_task, want_parent = take(), take(), take()
    local key = source == 'created' and created_key(Q) or status_key(Q, source)
    local rank = rank_after(key, score, id)
    local out, examined, found = {}, 0, 0
    while found < limit and examined < budget do
      local batch = redis.call('ZRANGE', key, rank, rank + LIST_BATCH - 1, 'REV', 'WITHSCORES')
      if #batch == 0 then return {out, '', ''} end
      for i = 1, #batch, 2 do
        id, score = batch[i], batch[i + 1]
        examined, rank = examined + 1, rank + 1
        local f = redis.call('HMGET', Q.job .. id, 'status', 'task', 'parent_id', 'expires_at')
        if f[1] and not past(f[4])
          and (want_status == '' or f[1] == want_status)
          and (want_task == '' or f[2] == want_task)
          and (want_parent == '' or f[3] == want_parent) then
          out[#out + 1] = score
          out[#out + 1] = id
          found = found + 1
        end
        if found >= limit or examined >= budget then break end
      end
      if #batch < 2 * LIST_BATCH and found < limit and examined < budget then return {out, '', ''} end
    end
    return {out, score, id}
  end

  -- Returns {status, count, status, count, ..., oldest ready run_at or ''} for the queue.
  -- Every count is a ZCARD, less the finished jobs past expires_at that no prune has removed
  -- yet (normally few: the workers' maintainers prune them); the oldest ready job is the head of
  -- the scheduled zset if due, or the earliest head of each priority in the ready zset.
  commands.stats = want('stats') and function()
    local counts = {
      queued = redis.call('ZCARD', Q.ready),
      scheduled = redis.call('ZCARD', Q.scheduled),
      running = redis.call('ZCARD', Q.leased),
    }
    for _, status in ipairs(TRACKED_LIST) do
      counts[status] = redis.call('ZCARD', status_key(Q, status))
    end
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', Q.finished, '-inf', NOW)) do
      local id = all_id(member)
      for _, status in ipairs({'succeeded', 'failed', 'cancelled'}) do
        if redis.call('ZSCORE', status_key(Q, status), id) then
          counts[status] = counts[status] - 1
          break
        end
      end
    end
    local oldest = false
    local due = redis.call('ZRANGE', Q.scheduled, 0, 0, 'WITHSCORES')
    if due[2] and tonumber(due[2]) <= now then oldest = tonumber(due[2]) end
    -- Ready members sort by priority, then run_at: each priority's first member is its oldest.
    local head = redis.call('ZRANGE', Q.ready, 0, 0)
    while head[1] do
      local run_at = tonumber(redis.call('HGET', Q.job .. ready_id(head[1]), 'run_at'))
      if run_at and (not oldest or run_at < oldest) then oldest = run_at end
      head = redis.call('ZRANGE', Q.ready, '(' .. string.sub(head[1], 1, HEX) .. '~', '+', 'BYLEX', 'LIMIT', 0, 1)
    end
    local out = {}
    for status, n in pairs(counts) do
      out[#out + 1] = status
      out[#out + 1] = n
    end
    out[#out + 1] = oldest and string.format('%.17g', oldest) or ''
    return out
  end
  -- ===========================================================================================

  -- The worker registry (observability) ------------------------------------------------------
  -- Global commands (KEYS[1] = the workers hash): a hash of records by worker id and a zset of
  -- the ids by expiry. A record past its expiry is a worker that died: never listed, deleted by
  -- the next worker_record.
  local function workers_keys()
    return ROOT .. ':workers', ROOT .. ':workers:expiry'
  end

  -- id, expires_at, record. Replaces the worker's record; drops the records of dead workers.
  commands.worker_record = want('worker_record') and function()
    local WORKERS, WORKERS_EXPIRY = workers_keys()
    local id, expires_at, record = take(), take(), take()
    local dead = redis.call('ZRANGEBYSCORE', WORKERS_EXPIRY, '-inf', NOW)
    for _, gone in ipairs(dead) do
      redis.call('HDEL', WORKERS, gone)
      redis.call('ZREM', WORKERS_EXPIRY, gone)
    end
    redis.call('HSET', WORKERS, id, record)
    redis.call('ZADD', WORKERS_EXPIRY, expires_at, id)
    return 1
  end

  -- id. Deletes the worker's record.
  commands.worker_remove = want('worker_remove') and function()
    local WORKERS, WORKERS_EXPIRY = workers_keys()
    local id = take()
    redis.call('ZREM', WORKERS_EXPIRY, id)
    return redis.call('HDEL', WORKERS, id)
  end

  -- Returns the records of the live workers, in id order.
  commands.workers_list = want('workers_list') and function()
    local WORKERS, WORKERS_EXPIRY = workers_keys()
    local ids = redis.call('ZRANGEBYSCORE', WORKERS_EXPIRY, '(' .. NOW, '+inf')
    table.sort(ids)
    local out = {}
    for _, id in ipairs(ids) do
      local record = redis.call('HGET', WORKERS, id)
      if record then out[#out + 1] = record end
    end
    return out
  end
end -- COLD

-- --- flow control (issue #13) ------------------------------------------------------------------
-- Q.flow holds the queue's settings (paused, concurrency, rate_count, rate_per, rate_burst) and
-- its token bucket (tokens, refilled_at); it exists only while a setting differs from the
-- default. A task's bucket and the jobs claimed under its concurrency limit live under
-- ROOT:task:<name>: (outside the queue's slot, like the workflow links).

if want('claim') then -- (flow_claim and its helpers)
  local function task_key(name, what)
    return ROOT .. ':task:' .. name .. ':' .. what
  end

  -- Tokens in a bucket at now (a bucket never used is full).
  local function refill(tokens, refilled_at, rate, burst, slack)
    if not tokens or not refilled_at then return burst end
    return math.min(burst, tonumber(tokens) + math.max(now - tonumber(refilled_at) + slack, 0) * rate)
  end

  -- Running jobs of a task claimed under its limits; entries of jobs no longer running (with that
  -- token) are dropped, so no finishing path has to know about them.
  local function task_running(name)
    local hkey = task_key(name, 'running')
    local entries = redis.call('HGETALL', hkey)
    local n = 0
    for i = 1, #entries, 2 do
      local f = redis.call('HMGET', entries[i], 'status', 'token')
      if f[1] == 'running' and f[2] == entries[i + 1] then
        n = n + 1
      else
        redis.call('HDEL', hkey, entries[i])
      end
    end
    return n
  end

  -- What one key (the queue, a task) allows in this claim: running slots and tokens.
  local function new_quota(concurrency, running, rate, burst, tokens, refilled_at, slack)
    local q = {free = math.huge, tokens = math.huge, rate = rate, burst = burst, taken = 0}
    if concurrency then q.free = concurrency - running end
    if rate then q.tokens = refill(tokens, refilled_at, rate, burst, slack) end
    return q
  end

  -- A ready job of this claim was held back by quota q: when does q have tokens again?
  local function due(q, limit)
    if not q.rate or q.free < 1 or q.tokens >= 1 then return false end
    return now + (math.max(math.min(limit, q.burst) / 2, 1) - q.tokens) / q.rate
  end

  -- How many ready jobs a flow claim looks at, at most, past the ones it holds back.
  local WINDOW_FACTOR, WINDOW_EXTRA, WINDOW_MAX = 4, 64, 2048

  flow_claim = function(limit, lease, worker, limits, slack)
    local out, held, retry_at = {}, false, false
    local function hold(q)
      held = true
      local at = due(q, limit)
      if at and (not retry_at or at < retry_at) then retry_at = at end
    end
    local s = redis.call('HMGET', Q.flow, 'paused', 'concurrency', 'rate_count', 'rate_per',
      'rate_burst', 'tokens', 'refilled_at')
    if s[1] == '1' then
      return {out, redis.call('ZCARD', Q.ready) > 0 and 1 or 0, ''}
    end
    local qrate = s[3] and tonumber(s[3]) / tonumber(s[4])
    local queue = new_quota(tonumber(s[2]), s[2] and redis.call('ZCARD', Q.leased) or 0,
      qrate, tonumber(s[5]), s[6], s[7], slack)
    local quotas = {}
    local left = math.min(limit * WINDOW_FACTOR + WINDOW_EXTRA, WINDOW_MAX)
    -- Pages of `limit` members in claim order (all scores are 0: lexicographic order is the
    -- zset's), from after the last member seen, so claimed members leaving the zset shift nothing.
    local from, members, i = '-', {}, 1
    while #out < limit and left > 0 do
      if i > #members then
        members = redis.call('ZRANGE', Q.ready, from, '+', 'BYLEX', 'LIMIT', 0, math.min(limit, left))
        i = 1
        if #members == 0 then break end
      end
      local member = members[i]
      i, left, from = i + 1, left - 1, '(' .. members[i]
      if queue.free < 1 or queue.tokens < 1 then
        hold(queue)
        break
      end
      local id = ready_id(member)
      local key = Q.job .. id
      local f = redis.call('HMGET', key, 'status', 'task')
      if f[1] ~= 'queued' then
        redis.call('ZREM', Q.ready, member)
        stray(Q, key, id, f[1])
      elseif not sound(Q, key, id) then
        redis.call('ZREM', Q.ready, member)
      else
        local lim, q = limits[f[2]], false
        if lim then
          q = quotas[f[2]]
          if not q then
            local b = lim.rate and redis.call('HMGET', task_key(f[2], 'bucket'), 'tokens', 'refilled_at') or {}
            q = new_quota(lim.concurrency, lim.concurrency and task_running(f[2]) or 0,
              lim.rate, lim.burst, b[1], b[2], slack)
            quotas[f[2]] = q
          end
        end
        if q and (q.free < 1 or q.tokens < 1) then
          hold(q) -- held back: it keeps its place in ready
        else
          redis.call('ZREM', Q.ready, member)
          lease_job(key, id, lease, worker)
          out[#out + 1] = redis.call('HGETALL', key)
          queue.free, queue.tokens = queue.free - 1, queue.tokens - 1
          if q then
            q.free, q.tokens, q.taken = q.free - 1, q.tokens - 1, q.taken + 1
            if lim.concurrency then
              redis.call('HSET', task_key(f[2], 'running'), key, redis.call('HGET', key, 'token'))
            end
          end
        end
      end
    end
    if qrate and #out > 0 then
      redis.call('HSET', Q.flow, 'tokens', string.format('%.17g', queue.tokens), 'refilled_at', NOW)
    end
    for name, q in pairs(quotas) do
      if q.rate and q.taken > 0 then
        redis.call('HSET', task_key(name, 'bucket'), 'tokens', string.format('%.17g', q.tokens),
          'refilled_at', NOW)
      end
    end
    return {out, held and 1 or 0, retry_at and string.format('%.17g', retry_at) or ''}
  end
end

if COLD then
  -- 'paused', 1|0 or 'limits', concurrency, rate count, period, burst ('' for none). Changes the
  -- queue's settings (a changed rate starts with a full bucket), drops a flow hash left at the
  -- defaults, and wakes the queue's idle workers. Returns the flow hash.
  commands.set_flow = want('set_flow') and function()
    local what = take()
    if what == 'paused' then
      if take() == '1' then
        redis.call('HSET', Q.flow, 'paused', '1')
      else
        redis.call('HDEL', Q.flow, 'paused')
      end
    else
      local concurrency, count, per, burst = take(), take(), take(), take()
      local old = redis.call('HMGET', Q.flow, 'rate_count', 'rate_per', 'rate_burst')
      if old[1] ~= (count ~= '' and count or false) or old[2] ~= (per ~= '' and per or false)
          or old[3] ~= (burst ~= '' and burst or false) then
        redis.call('HDEL', Q.flow, 'tokens', 'refilled_at')
      end
      local fields = {concurrency = concurrency, rate_count = count, rate_per = per, rate_burst = burst}
      for field, value in pairs(fields) do
        if value == '' then
          redis.call('HDEL', Q.flow, field)
        else
          redis.call('HSET', Q.flow, field, value)
        end
      end
    end
    if redis.call('HEXISTS', Q.flow, 'paused') == 0 and redis.call('HEXISTS', Q.flow, 'concurrency') == 0
        and redis.call('HEXISTS', Q.flow, 'rate_count') == 0 then
      redis.call('DEL', Q.flow)
    end
    redis.call('SADD', QUEUES, Q.name)
    wake(Q, WAKE_MAX)
    return redis.call('HGETALL', Q.flow)
  end
end

-- One call: reset the per-call state (see the top), check the key layout, run the command.
local function main(keys, argv)
  KEYS, ARGV, CMD = keys, argv, argv[1]
  ROOT, NOW, NOW_KEY = argv[2], argv[3], argv[4]
  now = tonumber(NOW)
  IDS, QUEUES, UNIQUE = ROOT .. ':ids', ROOT .. ':queues', ROOT .. ':unique'
  pos = 6
  Q = queue_keys(argv[5])
  if argv[5] ~= '' and keys[1] ~= Q.ready then -- (global commands have no queue)
    -- keys.py and queue_keys disagree: refuse rather than write keys nobody reads.
    return redis.error_reply('asynctask: key layout mismatch: ' .. keys[1] .. ' ~= ' .. Q.ready)
  end
  local command = commands[CMD]
  if not command then
    return redis.error_reply('asynctask: unknown script command ' .. tostring(CMD))
  end
  return command()
end
