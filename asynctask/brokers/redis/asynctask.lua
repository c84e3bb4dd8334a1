-- asynctask's Redis broker: every script in one file, loaded once (EVALSHA) and dispatched
-- by name in ARGV[1]. Python calls it only through the typed wrappers in scripts.py.
--
-- Per-queue commands get the queue's keys as KEYS (see keys.py, QueueKeys order) and
-- ARGV[2] = job key prefix, ARGV[3] = now (from the app's injected clock, never Redis TIME,
-- so tests can drive time). Job hashes share the queue's {hash tag}, so each call stays in
-- one Cluster slot even though the job keys are built here from the prefix.
--
-- Invariant: a job is in exactly one of ready / scheduled / leased / (finished or none),
-- matching its status. Nothing is popped destructively: a claim moves a job from ready to
-- leased in the same script that sets its lease.

local READY, SCHEDULED, LEASED, FINISHED, ALL, WAKE, SEQ =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local PREFIX, NOW = ARGV[2], ARGV[3]
local now = tonumber(NOW)

-- Idle workers block on the wake list; a few signals wake a few of them. Trimmed so a queue
-- nobody waits on cannot grow it.
local WAKE_MAX = 16

local function hex(n)
  return string.format('%016x', n)
end

local function wake(n)
  if n <= 0 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  local ones = {}
  for i = 1, n do ones[i] = '1' end
  redis.call('LPUSH', WAKE, unpack(ones))
  redis.call('LTRIM', WAKE, 0, WAKE_MAX - 1)
end

-- The member of the `all` and `finished` zsets: creation sequence, then id.
local function all_member(key, id)
  local cseq = redis.call('HGET', key, 'cseq')
  return hex(tonumber(cseq)) .. id
end

-- Gone for readers: absent, or finished and past expires_at.
local function live(key)
  local f = redis.call('HMGET', key, 'status', 'expires_at')
  if not f[1] then return false end
  if f[2] and tonumber(f[2]) <= now then return false end
  return true
end

local function held(key, token)
  local f = redis.call('HMGET', key, 'status', 'token')
  return f[1] == 'running' and f[2] == token
end

local function make_ready(key, id)
  local seq = redis.call('INCR', SEQ)
  local f = redis.call('HMGET', key, 'pkey', 'tkey')
  local member = f[1] .. f[2] .. hex(seq) .. id
  redis.call('ZADD', READY, 0, member)
  redis.call('HSET', key, 'status', 'queued', 'rmember', member)
end

-- Remove a job from every per-queue index (not from the ids index: other slot).
local function unlink(key, id)
  local rmember = redis.call('HGET', key, 'rmember')
  if rmember then redis.call('ZREM', READY, rmember) end
  redis.call('ZREM', SCHEDULED, id)
  redis.call('ZREM', LEASED, id)
  local member = all_member(key, id)
  redis.call('ZREM', FINISHED, member)
  redis.call('ZREM', ALL, member)
end

local function set_or_clear(key, field, present, value)
  if present == '1' then
    redis.call('HSET', key, field, value)
  else
    redis.call('HDEL', key, field)
  end
end

local function finish(key, id, status, expires_at, ttl_ms)
  redis.call('HSET', key, 'status', status, 'finished_at', NOW)
  redis.call('HDEL', key, 'lease_expires_at', 'rmember')
  redis.call('ZREM', LEASED, id)
  if expires_at ~= '' then
    redis.call('HSET', key, 'expires_at', expires_at)
    redis.call('ZADD', FINISHED, expires_at, all_member(key, id))
    -- A real TTL too, so records vanish even if nobody prunes; correctness still comes
    -- from expires_at (the TTL carries a margin and follows the wall clock).
    redis.call('PEXPIRE', key, ttl_ms)
  else
    redis.call('HDEL', key, 'expires_at')
  end
end

local function promote(limit)
  local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', NOW, 'LIMIT', 0, limit)
  local moved = 0
  for _, id in ipairs(due) do
    redis.call('ZREM', SCHEDULED, id)
    local key = PREFIX .. id
    if redis.call('HGET', key, 'status') == 'scheduled' then
      make_ready(key, id)
      moved = moved + 1
    end
  end
  wake(moved)
  return moved
end

local commands = {}

-- ARGV[4] = count, then per job: id, status, run_at, field count, fields...
-- Returns 1 (created) or 0 (a live job with this id exists) per job.
function commands.enqueue()
  local out, i, woken = {}, 5, 0
  for n = 1, tonumber(ARGV[4]) do
    local id, status, run_at, nfields = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local key = PREFIX .. id
    local fields = {}
    for f = 1, nfields do fields[f] = ARGV[i + 3 + f] end
    i = i + 4 + nfields
    if live(key) then
      out[n] = 0
    else
      if redis.call('EXISTS', key) == 1 then
        -- An expired record under the same id: the new job replaces it.
        unlink(key, id)
        redis.call('DEL', key)
      end
      local cseq = redis.call('INCR', SEQ)
      redis.call('HSET', key, 'cseq', cseq, unpack(fields))
      redis.call('ZADD', ALL, NOW, hex(cseq) .. id)
      if status == 'scheduled' then
        redis.call('ZADD', SCHEDULED, run_at, id)
      else
        make_ready(key, id)
      end
      woken = woken + 1
      out[n] = 1
    end
  end
  wake(woken)
  return out
end

-- ARGV[4] = limit, [5] = lease_expires_at, [6] = worker, [7] = promote cap.
-- Returns the claimed jobs as HGETALL arrays.
function commands.claim()
  promote(tonumber(ARGV[7]))
  local members = redis.call('ZRANGE', READY, 0, tonumber(ARGV[4]) - 1)
  local out = {}
  for _, member in ipairs(members) do
    redis.call('ZREM', READY, member)
    local id = string.sub(member, 49)
    local key = PREFIX .. id
    if redis.call('HGET', key, 'status') == 'queued' then
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HINCRBY', key, 'token', 1)
      redis.call('HSET', key, 'status', 'running', 'started_at', NOW,
        'lease_expires_at', ARGV[5], 'worker', ARGV[6])
      redis.call('HDEL', key, 'rmember')
      redis.call('ZADD', LEASED, ARGV[5], id)
      out[#out + 1] = redis.call('HGETALL', key)
    end
  end
  return out
end

-- ARGV[4] = count, then per outcome 11 values: id, token, kind, has_result, result,
-- has_error, error, run_at, tkey, expires_at, ttl_ms. Returns 1 (applied) or 0 per outcome.
function commands.complete()
  local out, woken = {}, 0
  for n = 1, tonumber(ARGV[4]) do
    local i = 5 + (n - 1) * 11
    local id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local key = PREFIX .. id
    if not held(key, token) then
      out[n] = 0
    else
      out[n] = 1
      if kind == 'succeeded' then
        if ARGV[i + 3] == '1' then redis.call('HSET', key, 'result', ARGV[i + 4]) end
        finish(key, id, 'succeeded', ARGV[i + 9], ARGV[i + 10])
      elseif kind == 'failed' or kind == 'cancelled' then
        set_or_clear(key, 'error', ARGV[i + 5], ARGV[i + 6])
        finish(key, id, kind, ARGV[i + 9], ARGV[i + 10])
      elseif kind == 'retry' then
        local run_at = ARGV[i + 7]
        set_or_clear(key, 'error', ARGV[i + 5], ARGV[i + 6])
        redis.call('HSET', key, 'run_at', run_at, 'tkey', ARGV[i + 8])
        redis.call('HDEL', key, 'lease_expires_at')
        redis.call('ZREM', LEASED, id)
        if tonumber(run_at) > now then
          redis.call('HSET', key, 'status', 'scheduled')
          redis.call('ZADD', SCHEDULED, run_at, id)
        else
          make_ready(key, id)
        end
        woken = woken + 1
      else -- release: handed back, the attempt does not count
        redis.call('HINCRBY', key, 'attempts', -1)
        redis.call('HDEL', key, 'lease_expires_at')
        redis.call('ZREM', LEASED, id)
        make_ready(key, id)
        woken = woken + 1
      end
    end
  end
  wake(woken)
  return out
end

-- ARGV[4] = lease_expires_at, [5] = count, then id, token pairs. Returns ok/cancel/lost each.
function commands.extend()
  local out = {}
  for n = 1, tonumber(ARGV[5]) do
    local id, token = ARGV[4 + 2 * n], ARGV[5 + 2 * n]
    local key = PREFIX .. id
    if held(key, token) then
      redis.call('HSET', key, 'lease_expires_at', ARGV[4])
      redis.call('ZADD', LEASED, ARGV[4], id)
      if redis.call('HGET', key, 'cancel_requested') == '1' then
        out[n] = 'cancel'
      else
        out[n] = 'ok'
      end
    else
      out[n] = 'lost'
    end
  end
  return out
end

-- ARGV[4] = id, [5] = token, [6] = has_state, [7] = state, [8] = has_result, [9] = result.
function commands.save()
  local key = PREFIX .. ARGV[4]
  if not held(key, ARGV[5]) then return 0 end
  if ARGV[6] == '1' then redis.call('HSET', key, 'state', ARGV[7]) end
  if ARGV[8] == '1' then redis.call('HSET', key, 'result', ARGV[9]) end
  return 1
end

-- ARGV[4] = limit. Returns how many scheduled jobs became queued.
function commands.promote()
  return promote(tonumber(ARGV[4]))
end

-- ARGV[4] = limit. Re-queues (or fails, with no retries left) jobs whose lease expired.
function commands.rescue()
  local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[4]))
  local rescued, woken = 0, 0
  for _, id in ipairs(expired) do
    redis.call('ZREM', LEASED, id)
    local key = PREFIX .. id
    local f = redis.call('HMGET', key, 'status', 'lease_expires_at', 'attempts', 'max_retries')
    if f[1] == 'running' and f[2] and tonumber(f[2]) <= now then
      local attempts = tonumber(f[3])
      local err = string.format('lease expired at %.3f: the worker running attempt %d was lost',
        tonumber(f[2]), attempts)
      redis.call('HSET', key, 'error', err)
      redis.call('HDEL', key, 'lease_expires_at')
      if attempts > tonumber(f[4]) then
        redis.call('HSET', key, 'status', 'failed', 'finished_at', NOW)
      else
        make_ready(key, id)
        woken = woken + 1
      end
      rescued = rescued + 1
    end
  end
  wake(woken)
  return rescued
end

-- ARGV[4] = limit. Deletes finished jobs past expires_at; returns their ids.
function commands.prune()
  local members = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[4]))
  local out = {}
  for _, member in ipairs(members) do
    local id = string.sub(member, 17)
    local key = PREFIX .. id
    -- The record may already be gone through its TTL; the index entries go either way.
    redis.call('ZREM', FINISHED, member)
    redis.call('ZREM', ALL, member)
    if redis.call('EXISTS', key) == 1 then
      unlink(key, id)
      redis.call('DEL', key)
    end
    out[#out + 1] = id
  end
  return out
end

-- ARGV[4] = promote cap. Returns {1 if a job is ready else 0, next run_at or ''}.
-- With nothing ready, stale wake signals are dropped so the next BLPOP really blocks.
function commands.peek()
  promote(tonumber(ARGV[4]))
  if redis.call('ZCARD', READY) > 0 then return {1, ''} end
  redis.call('DEL', WAKE)
  local nxt = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
  return {0, nxt[2] or ''}
end

-- ARGV[4] = id, [5] = expires_at or '', [6] = ttl_ms. Returns the job after, or false.
function commands.cancel()
  local id = ARGV[4]
  local key = PREFIX .. id
  if not live(key) then return false end
  local status = redis.call('HGET', key, 'status')
  if status == 'scheduled' or status == 'queued' or status == 'paused' or status == 'waiting' then
    local rmember = redis.call('HGET', key, 'rmember')
    if rmember then redis.call('ZREM', READY, rmember) end
    redis.call('ZREM', SCHEDULED, id)
    finish(key, id, 'cancelled', ARGV[5], ARGV[6])
  elseif status == 'running' then
    redis.call('HSET', key, 'cancel_requested', '1')
  end
  return redis.call('HGETALL', key)
end

-- ARGV[4] = id, [5] = tkey of now. Queues a failed or cancelled job again.
function commands.retry()
  local id = ARGV[4]
  local key = PREFIX .. id
  if not live(key) then return false end
  local status = redis.call('HGET', key, 'status')
  if status == 'failed' or status == 'cancelled' then
    redis.call('ZREM', FINISHED, all_member(key, id))
    redis.call('PERSIST', key)
    redis.call('HSET', key, 'attempts', 0, 'run_at', NOW, 'tkey', ARGV[5])
    redis.call('HDEL', key, 'finished_at', 'expires_at', 'cancel_requested')
    make_ready(key, id)
    wake(1)
  end
  return redis.call('HGETALL', key)
end

-- ARGV[4] = id. Returns 1 if a record was deleted.
function commands.delete()
  local id = ARGV[4]
  local key = PREFIX .. id
  if redis.call('EXISTS', key) == 0 then return 0 end
  unlink(key, id)
  redis.call('DEL', key)
  return 1
end

-- Global command: KEYS[1] = the ids hash; ARGV[2..] = id, queue pairs. Drops each mapping
-- only if it still names that queue (the id may have been published again elsewhere).
function commands.unindex()
  local removed = 0
  for i = 2, #ARGV, 2 do
    if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
      removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
    end
  end
  return removed
end

local command = commands[ARGV[1]]
if not command then
  return redis.error_reply('asynctask: unknown script command ' .. tostring(ARGV[1]))
end
return command()
