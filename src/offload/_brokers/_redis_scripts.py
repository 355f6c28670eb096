"""The Redis broker's Lua scripts (every state change is one, run atomically), and
the rows they take and return.

Redis runs a script to the end before any other command, so a script that
reads a job and then writes it cannot race another worker. Scripts never
read Redis's own clock: the caller passes its clock's ``now`` (so a test's
fake clock drives leases and ETAs), and times are passed and stored as the
caller's decimal strings (Lua would print numbers with 14 digits only).

Every script takes the key prefix (``offload:<namespace>:``) as ``ARGV[1]``
and builds its keys from it; the key layout is described in ``_redis.py``.
A script that refuses a call does so before its first write: Redis does not
roll a script back.
"""

from __future__ import annotations

import json
from typing import Any

from .._message import Delivery, ErrorInfo, JobInfo, Message, State
from ._base import Finished, lapsed_error

Arg = bytes | str | int | float
"""What a script takes."""

# Built once: json.dumps with separators builds an encoder per call.
_compact = json.JSONEncoder(separators=(",", ":")).encode

RANK_LENGTH = 29
"""Characters before the job id in a ready set's member (due time and sequence)."""

WAKE_TOKENS = 16
"""At most this many wake-up tokens wait in a notification list."""

# Shared by every script: key names, the ready-set member, state moves.
_COMMON = """
local P = ARGV[1]
local function jobkey(id) return P .. 'job:' .. id end
local function num(x) return string.format('%.17g', x) end

-- A ready job's member in its queue's sorted set (score: -priority). Fixed
-- width, so that equal priorities sort by due time (microseconds), then by
-- sequence (FIFO), byte by byte; the job id follows.
local function rank(due, seq)
  return string.format('%016d%013d', math.max(0, math.floor(due * 1e6)), seq)
end

local function make_ready(id, job, queue, priority, due)
  local member = rank(due, redis.call('INCR', P .. 'seq')) .. id
  redis.call('ZADD', P .. 'ready:' .. queue, -tonumber(priority), member)
  redis.call('HSET', job, 'r', member)
end

-- Each state has an index per queue (score: the enqueue sequence), for
-- counts and newest-first listings.
local function move(id, queue, js, from, to)
  redis.call('ZREM', P .. 'st:' .. from .. ':' .. queue, id)
  redis.call('ZADD', P .. 'st:' .. to .. ':' .. queue, js, id)
end

-- Wake-up tokens for waiters of ``queue`` and of all queues, up to a few
-- per list: with nobody waiting the lists stay full, and this only reads.
local function notify(queue, n)
  for _, list in ipairs({P .. 'wake:' .. queue, P .. 'wake'}) do
    local room = math.min(n, @WAKE@ - redis.call('LLEN', list))
    if room > 0 then
      local tokens = {}
      for i = 1, room do tokens[i] = '1' end
      redis.call('LPUSH', list, unpack(tokens))
    end
  end
end

-- Members of a sorted set whose score has come (at most ``batch``), with scores.
local function come(set, now, batch)
  return redis.call('ZRANGEBYSCORE', P .. set, '-inf', now, 'WITHSCORES', 'LIMIT', 0, batch)
end

local function live(state)
  return state == 'queued' or state == 'retrying' or state == 'running'
end

-- Delete a job and every trace of it (indexes, expiry, its key).
local function drop(id)
  local job = jobkey(id)
  local f = redis.call('HMGET', job, 'q', 's', 'k')
  if not f[1] then return 0 end
  redis.call('DEL', job)
  redis.call('ZREM', P .. 'st:' .. f[2] .. ':' .. f[1], id)
  redis.call('ZREM', P .. 'expiry', id)
  if f[3] and redis.call('HGET', P .. 'keys', f[3]) == id then
    redis.call('HDEL', P .. 'keys', f[3])
  end
  redis.call('INCR', P .. 'fin')
  return 1
end
""".replace("@WAKE@", str(WAKE_TOKENS))

# ARGV: prefix, now, reuse_since, replay, reply channel ("" for none: see
# RedisBroker.wait_for_results), then per message FIELDS values:
# id, queue, priority, eta, key, result_ttl, max_deliveries, attempt, meta
# blob, payload ("" for an absent optional; a key comes as "=" .. key).
# Returns every message's job id; an error, writing nothing, for an id that
# exists (unless replaying a call whose answer was lost: then it is ours).
ENQUEUE_FIELDS = 10
ENQUEUE = (
    _COMMON
    + """
local now, since, replay, reply = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
local CHUNK = 500  -- values per call, far under Lua's stack limit for unpack()

local function holder(key)
  local id = redis.call('HGET', P .. 'keys', key)
  if not id then return nil end
  local f = redis.call('HMGET', jobkey(id), 's', 'fin')
  if live(f[1]) or (f[1] == 'succeeded' and tonumber(f[2]) > since) then return id end
  return nil
end

-- Whether each job id exists: one EXISTS per chunk of ids, and one per id
-- only in a chunk where some do (a replay, or a caller's mistake).
local keys, exists = {}, {}
for b = 5, #ARGV - 1, @FIELDS@ do keys[#keys + 1] = jobkey(ARGV[b + 1]) end
for c = 1, #keys, CHUNK do
  local last = math.min(c + CHUNK - 1, #keys)
  if redis.call('EXISTS', unpack(keys, c, last)) > 0 then
    for j = c, last do exists[j] = redis.call('EXISTS', keys[j]) == 1 end
  end
end

local answer, new, batch = {}, {}, {}
for j = 1, #keys do
  local b = 5 + (j - 1) * @FIELDS@
  local id, key = ARGV[b + 1], ARGV[b + 5]
  local found = nil
  if exists[j] then
    if not replay then return redis.error_reply('job id ' .. id .. ' already exists') end
    found = id
  elseif key ~= '' then
    key = string.sub(key, 2)
    found = batch[key] or holder(key)
    if not found then batch[key] = id end
  end
  answer[#answer + 1] = found or id
  if not found then new[#new + 1] = b end
end

-- Sorted-set members gathered per set, added a chunk per call.
local adds = {}
local function add(set, score, member)
  local list = adds[set]
  if not list then list = {}; adds[set] = list end
  list[#list + 1] = score; list[#list + 1] = member
end

local touched = {}
-- One counter step for the batch: sequences first + 1 .. first + #new.
local first = redis.call('INCRBY', P .. 'seq', #new) - #new
for i, b in ipairs(new) do
  local id, queue, priority = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local eta, key = ARGV[b + 4], ARGV[b + 5]
  local js = first + i
  local fields = {'q', queue, 'p', priority, 's', 'queued', 'js', js, 'a', ARGV[b + 8],
                  'm', ARGV[b + 9], 'pl', ARGV[b + 10]}
  if eta ~= '' then fields[#fields + 1] = 'eta'; fields[#fields + 1] = eta end
  if ARGV[b + 6] ~= '' then fields[#fields + 1] = 'ttl'; fields[#fields + 1] = ARGV[b + 6] end
  if ARGV[b + 7] ~= '' then fields[#fields + 1] = 'md'; fields[#fields + 1] = ARGV[b + 7] end
  if reply ~= '' then fields[#fields + 1] = 'rt'; fields[#fields + 1] = reply end
  if key ~= '' then
    key = string.sub(key, 2)
    fields[#fields + 1] = 'k'; fields[#fields + 1] = key
    redis.call('HSET', P .. 'keys', key, id)
  end
  local due = now
  if eta ~= '' then due = tonumber(eta) end
  if due > now then
    add('delayed', eta, id)
  else
    local member = rank(due, js) .. id
    add('ready:' .. queue, -tonumber(priority), member)
    fields[#fields + 1] = 'r'; fields[#fields + 1] = member
  end
  redis.call('HSET', jobkey(id), unpack(fields))
  add('st:queued:' .. queue, js, id)
  touched[queue] = (touched[queue] or 0) + 1
end
for set, list in pairs(adds) do
  for c = 1, #list, 2 * CHUNK do
    redis.call('ZADD', P .. set, unpack(list, c, math.min(c + 2 * CHUNK - 1, #list)))
  end
end
for queue, n in pairs(touched) do
  redis.call('SADD', P .. 'queues', queue)
  notify(queue, n)
end
return answer
""".replace("@FIELDS@", str(ENQUEUE_FIELDS))
)

# ARGV: prefix, now, lease end, limit, batch, "*" (all queues) or "" (named),
# queue names. Promotes due delayed jobs, moves lapsed leases back to their
# queue (or to the dead-letter set after max_deliveries), then leases up to
# ``limit`` jobs. Returns CLAIMED values per job: id, token, attempt, queue,
# meta blob, payload, priority, eta, key, max_deliveries, result_ttl; or, if
# none, the next delayed due time and the next lease end (as PROBE).
CLAIMED = 11
IDLE = 2
"""Values of ``CLAIM``'s answer when it claimed nothing."""
CLAIM = (
    _COMMON
    + """
local now, lease_end, limit, batch = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])

local due = come('delayed', now, batch)
for j = 1, #due, 2 do
  local id, job = due[j], jobkey(due[j])
  local f = redis.call('HMGET', job, 'q', 'p')
  redis.call('ZREM', P .. 'delayed', id)
  if f[1] then make_ready(id, job, f[1], f[2], tonumber(due[j + 1])) end
end

local lapsed = come('running', now, batch)
for j = 1, #lapsed, 2 do
  local id, job = lapsed[j], jobkey(lapsed[j])
  local f = redis.call('HMGET', job, 'q', 'p', 'a', 'md', 'js')
  redis.call('ZREM', P .. 'running', id)
  if f[4] and tonumber(f[3]) >= tonumber(f[4]) then
    redis.call('HSET', job, 's', 'failed', 'fin', now, 'dl', f[3])
    move(id, f[1], f[5], 'running', 'failed')
    redis.call('INCR', P .. 'fin')
  else
    redis.call('HSET', job, 's', 'queued')
    make_ready(id, job, f[1], f[2], tonumber(lapsed[j + 1]))
    move(id, f[1], f[5], 'running', 'queued')
  end
end

local picked = {}
local function pop(queue, n)
  local got = redis.call('ZPOPMIN', P .. 'ready:' .. queue, n)
  for j = 1, #got, 2 do picked[#picked + 1] = got[j] end
end
if ARGV[6] == '' then
  for i = 7, #ARGV do
    if #picked >= limit then break end
    pop(ARGV[i], limit - #picked)
  end
else
  local names = redis.call('SMEMBERS', P .. 'queues')
  if #names == 1 then
    pop(names[1], limit)
  else
    -- By priority across queues: each queue's best, merged.
    local best = {}
    for _, queue in ipairs(names) do
      local got = redis.call('ZRANGE', P .. 'ready:' .. queue, 0, limit - 1, 'WITHSCORES')
      for j = 1, #got, 2 do best[#best + 1] = {tonumber(got[j + 1]), got[j], queue} end
    end
    table.sort(best, function(x, y)
      if x[1] ~= y[1] then return x[1] < y[1] end
      return x[2] < y[2]
    end)
    for j = 1, math.min(limit, #best) do
      redis.call('ZREM', P .. 'ready:' .. best[j][3], best[j][2])
      picked[#picked + 1] = best[j][2]
    end
  end
end

local out = {}
if #picked == 0 then
  -- Nothing to claim: when something next comes due, for the wait that
  -- follows (it then needs no PROBE of its own).
  local due = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
  local lease = redis.call('ZRANGE', P .. 'running', 0, 0, 'WITHSCORES')
  return {due[2] or false, lease[2] or false}
end
-- Tokens first + 1 .. first + #picked: one counter step for the claim. The
-- job keeps its stale ready member ``r``: every way back to a ready set
-- writes a new one, and no set holds the old one any more.
local first = redis.call('INCRBY', P .. 'seq', #picked) - #picked
for i, member in ipairs(picked) do
  local id = string.sub(member, @RANK@ + 1)
  local job = jobkey(id)
  local token = first + i
  local f = redis.call('HMGET', job, 's', 'q', 'js', 'm', 'pl', 'p', 'eta', 'k', 'md', 'ttl', 'a')
  local attempt = tonumber(f[11]) + 1
  redis.call('HSET', job, 's', 'running', 't', token, 'lu', lease_end, 'a', attempt)
  redis.call('ZADD', P .. 'running', lease_end, id)
  move(id, f[2], f[3], f[1], 'running')
  local row = {id, token, attempt, f[2], f[4], f[5], f[6], f[7], f[8], f[9], f[10]}
  for k = 1, @CLAIMED@ do out[#out + 1] = row[k] end
end
return out
""".replace("@RANK@", str(RANK_LENGTH)).replace("@CLAIMED@", str(CLAIMED))
)

# The fence of ack, nack and extend: the delivery's token is the job's
# current one, and the job is running.
_FENCE = """
local id, token = ARGV[2], ARGV[3]
local job = jobkey(id)
local f = redis.call('HMGET', job, 's', 't', 'q', 'js', 'p')
if f[1] ~= 'running' or f[2] ~= token then return 0 end
"""

# ARGV: prefix, then ACKED values per ack: id, token, state, now, expires
# ("" to keep until purged), drop ("1": keep nothing), has result, result,
# error ("" for none). Several acks (a worker's threads that finished
# together) share one call; each is fenced on its own: 1 or 0 per ack.
# Tells a job's reply channel (``rt``, if its producer listens) it finished.
ACKED = 9
ACK = (
    _COMMON
    + """
local function ack(b)
  local id, token, state = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local job = jobkey(id)
  local f = redis.call('HMGET', job, 's', 't', 'q', 'js', 'rt')
  if f[1] ~= 'running' or f[2] ~= token then return 0 end
  redis.call('ZREM', P .. 'running', id)
  if f[5] then
    -- The outcome travels along (see ``finished``): no read after the news.
    local has, res = ARGV[b + 7], ''
    if has == '1' then res = ARGV[b + 8] end
    local head = table.concat({id, state, has, #res}, ' ')
    redis.call('PUBLISH', f[5], head .. '\\n' .. res .. ARGV[b + 9])
  end
  if ARGV[b + 6] == '1' then return drop(id) end
  -- A success after retries clears the last error; no result clears an old one.
  local set, gone = {'s', state, 'fin', ARGV[b + 4]}, {}
  if ARGV[b + 7] == '1' then
    set[#set + 1] = 'res'; set[#set + 1] = ARGV[b + 8]
  else
    gone[#gone + 1] = 'res'
  end
  if ARGV[b + 9] ~= '' then
    set[#set + 1] = 'err'; set[#set + 1] = ARGV[b + 9]
  else
    gone[#gone + 1] = 'err'
  end
  redis.call('HSET', job, unpack(set))
  if #gone > 0 then redis.call('HDEL', job, unpack(gone)) end
  move(id, f[3], f[4], 'running', state)
  if ARGV[b + 5] ~= '' then redis.call('ZADD', P .. 'expiry', ARGV[b + 5], id) end
  return 1
end

local out, finished = {}, 0
for b = 1, #ARGV - 1, @ACKED@ do
  out[#out + 1] = ack(b)
  finished = finished + out[#out]
end
-- One step of the change token for the batch (drop() steps it too: harmless).
if finished > 0 then redis.call('INCRBY', P .. 'fin', finished) end
return out
""".replace("@ACKED@", str(ACKED))
)

# ARGV: prefix, id, token, now, retry_at ("" for now), error ("" keeps the
# last one and queues; else retrying), penalty ("0" gives the attempt back).
NACK = (
    _COMMON
    + _FENCE
    + """
local now, retry_at, err = tonumber(ARGV[4]), ARGV[5], ARGV[6]
redis.call('ZREM', P .. 'running', id)
local state = 'queued'
if err ~= '' then
  state = 'retrying'
  redis.call('HSET', job, 'err', err)
end
redis.call('HSET', job, 's', state)
if ARGV[7] == '0' then redis.call('HINCRBY', job, 'a', -1) end
local due = now
if retry_at ~= '' then
  redis.call('HSET', job, 'eta', retry_at)
  due = tonumber(retry_at)
end
if due > now then
  redis.call('ZADD', P .. 'delayed', retry_at, id)
else
  make_ready(id, job, f[3], f[5], due)
end
move(id, f[3], f[4], 'running', state)
notify(f[3], 1)
return 1
"""
)

# ARGV: prefix, id, token, new lease end.
EXTEND = (
    _COMMON
    + _FENCE
    + """
redis.call('HSET', job, 'lu', ARGV[4])
redis.call('ZADD', P .. 'running', ARGV[4], id)
return 1
"""
)

# ARGV: prefix, id, now, the broker's result_ttl.
CANCEL = (
    _COMMON
    + """
local id, now = ARGV[2], tonumber(ARGV[3])
local job = jobkey(id)
local f = redis.call('HMGET', job, 's', 'q', 'r', 'ttl', 'js')
if f[1] ~= 'queued' and f[1] ~= 'retrying' then return 0 end
if f[3] then redis.call('ZREM', P .. 'ready:' .. f[2], f[3]) end
redis.call('ZREM', P .. 'delayed', id)
local ttl = tonumber(f[4] or ARGV[4])
if ttl <= 0 then return drop(id) end
redis.call('HSET', job, 's', 'cancelled', 'fin', ARGV[3])
redis.call('HDEL', job, 'r')
move(id, f[2], f[5], f[1], 'cancelled')
redis.call('ZADD', P .. 'expiry', num(now + ttl), id)
redis.call('INCR', P .. 'fin')
return 1
"""
)

# ARGV: prefix, id, now.
RETRY = (
    _COMMON
    + """
local id = ARGV[2]
local job = jobkey(id)
local f = redis.call('HMGET', job, 's', 'q', 'p', 'k', 'js')
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return 0 end
if f[4] then
  local other = redis.call('HGET', P .. 'keys', f[4])
  -- Another job holds the key now: two would run.
  if other and other ~= id and live(redis.call('HGET', jobkey(other), 's')) then return 0 end
  redis.call('HSET', P .. 'keys', f[4], id)
end
redis.call('HSET', job, 's', 'queued', 'a', 0)
redis.call('HDEL', job, 'eta', 'fin', 'res', 'err', 'dl')
redis.call('ZREM', P .. 'expiry', id)
make_ready(id, job, f[2], f[3], tonumber(ARGV[3]))
move(id, f[2], f[5], f[1], 'queued')
redis.call('SADD', P .. 'queues', f[2])
notify(f[2], 1)
return 1
"""
)

# ARGV: prefix, state, batch, queue ("" for all). Deletes up to ``batch``
# jobs per queue; the caller repeats until fewer come back.
PURGE = (
    _COMMON
    + """
local names = {ARGV[4]}
if ARGV[4] == '' then names = redis.call('SMEMBERS', P .. 'queues') end
local n = 0
for _, queue in ipairs(names) do
  local ids = redis.call('ZRANGE', P .. 'st:' .. ARGV[2] .. ':' .. queue, 0, tonumber(ARGV[3]) - 1)
  for _, id in ipairs(ids) do n = n + drop(id) end
end
return n
"""
)

# ARGV: prefix, now, batch. Deletes finished jobs whose expiry has come.
PRUNE = (
    _COMMON
    + """
local expired = come('expiry', ARGV[2], tonumber(ARGV[3]))
local n = 0
for j = 1, #expired, 2 do
  n = n + drop(expired[j])
  redis.call('ZREM', P .. 'expiry', expired[j])  -- also when its job is gone already
end
return n
"""
)

# Read-only. ARGV: prefix, "*" (all queues) or "", queue names. Returns:
# whether any of those queues has a ready job, the next delayed due time,
# the next lease end (false when none).
PROBE = (
    _COMMON
    + """
local names = {}
if ARGV[2] == '*' then
  names = redis.call('SMEMBERS', P .. 'queues')
else
  for i = 3, #ARGV do names[#names + 1] = ARGV[i] end
end
local ready = 0
for _, queue in ipairs(names) do
  if redis.call('EXISTS', P .. 'ready:' .. queue) == 1 then ready = 1; break end
end
local due = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
local lease = redis.call('ZRANGE', P .. 'running', 0, 0, 'WITHSCORES')
return {ready, due[2] or false, lease[2] or false}
"""
)


# -- the rows scripts take and return ---------------------------------------------


def message_args(message: Message, now: float) -> list[Arg]:
    """A message as ``ENQUEUE`` takes it: ``ENQUEUE_FIELDS`` values."""
    if message.args or message.kwargs:
        raise ValueError(
            f"message {message.id} carries Python arguments: a durable broker stores only "
            "encoded ones (message.payload). Send it through a durable App, which encodes "
            "its arguments."
        )
    rest = [
        message.task,
        message.timeout,
        message.retries,
        message.created or now,
        message.meta or None,
        message.payload is None,
    ]
    return [
        message.id,
        message.queue,
        int(message.priority),
        "" if message.eta is None else repr(float(message.eta)),
        "" if message.key is None else "=" + message.key,  # "" stays a key of its own
        "" if message.result_ttl is None else repr(float(message.result_ttl)),
        "" if message.max_deliveries is None else int(message.max_deliveries),
        int(message.attempt),
        _compact(rest),
        message.payload or b"",
    ]


def delivery(row: list[Any], until: float) -> Delivery:
    """One job of ``CLAIM``'s answer (``CLAIMED`` values), leased until ``until``."""
    job_id, token, attempt, queue, rest, payload, priority, eta, key, deliveries, ttl = row
    task, timeout, retries, created, meta, no_payload = json.loads(rest)
    message = Message(
        job_id.decode(),
        task,
        (),
        {},
        queue=queue.decode(),
        priority=int(priority),
        eta=None if eta is None else float(eta),
        attempt=int(attempt),
        max_deliveries=None if deliveries is None else int(deliveries),
        key=None if key is None else key.decode(),
        timeout=timeout,
        retries=retries,
        created=created,
        payload=None if no_payload else payload,
        result_ttl=None if ttl is None else float(ttl),
        meta=meta,
    )
    return Delivery(message, int(token), until)


def job_info(job_id: str, fields: dict[bytes, bytes]) -> JobInfo:
    """A job's hash (``HGETALL``) as inspection shows it."""
    task, _, _, created, _, no_payload = json.loads(fields[b"m"])
    lapsed = fields.get(b"dl")
    text = fields.get(b"err")
    if lapsed is not None:
        error: ErrorInfo | None = lapsed_error(int(lapsed))
    else:
        error = None if text is None else ErrorInfo(*json.loads(text))
    finished, eta = fields.get(b"fin"), fields.get(b"eta")
    key, deliveries = fields.get(b"k"), fields.get(b"md")
    return JobInfo(
        id=job_id,
        task=task,
        queue=fields[b"q"].decode(),
        state=State(fields[b"s"].decode()),
        attempt=int(fields[b"a"]),
        priority=int(fields[b"p"]),
        eta=None if eta is None else float(eta),
        created=created,
        finished=None if finished is None else float(finished),
        key=None if key is None else key.decode(),
        max_deliveries=None if deliveries is None else int(deliveries),
        payload=None if no_payload else fields.get(b"pl", b""),
        result=fields.get(b"res"),
        error=error,
    )


def finished(data: bytes) -> Finished:
    """A job's news on its reply channel (``ACK``).

    ``id state has_result size\n``, then the result (``size`` bytes), then the error.
    """
    head, newline, rest = data.partition(b"\n")
    if not newline:
        return Finished(head.decode())
    job_id, state, has_result, size = head.split(b" ")
    cut = int(size)
    error = rest[cut:]
    return Finished(
        job_id.decode(),
        State(state.decode()),
        rest[:cut] if has_result == b"1" else None,
        ErrorInfo(*json.loads(error)) if error else None,
    )


def error_text(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    return json.dumps([error.type, error.message, error.traceback])
