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
from collections.abc import Callable
from typing import Any

from .._errors import MessageRejected
from .._message import (
    DEFAULT_MAX_DELIVERIES,
    Delivery,
    ErrorInfo,
    JobInfo,
    Message,
    State,
    read_delivery,
)
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
#
# A job's hash is written by these scripts, but anyone who reaches the server
# can change or delete it (or evict it under memory pressure). A script never
# fails half-way on such a job, since Redis would keep what it wrote before the
# error (a claim would lose the jobs it had popped): it reads a hash with
# ``read`` (nil for a key that holds something else), takes numbers through
# ``score`` and ``count``, and leaves the verdict to the claim, which hands a
# corrupt job over as a defect (the runner dead-letters it, with the reason).
_COMMON = """
local P = ARGV[1]
local function jobkey(id) return P .. 'job:' .. id end
local function num(x) return string.format('%.17g', x) end

-- A hash's fields (false for a missing one), or nil if the key holds no hash.
local function read(key, ...)
  local f = redis.pcall('HMGET', key, ...)
  if f.err then return nil end
  return f
end

-- Whether a job is gone (deleted, evicted, or its key holds no hash), given
-- what ``read`` found of it: nothing to run, nothing to report.
local function gone(job, f)
  if f == nil then return true end
  if f[1] then return false end
  for _, value in ipairs(f) do
    if value then return false end
  end
  return redis.call('EXISTS', job) == 0
end

-- A number from a field; nil when missing or not one (nan included).
local function number(x)
  local n = tonumber(x)
  if n ~= n then return nil end
  return n
end
-- A count (attempt, max_deliveries, sequence) from a field: digits only, else nil.
local function count(x)
  if x and #x < 16 and string.find(x, '^%d+$') then return tonumber(x) end
  return nil
end
-- A sorted-set score from a field: 0 when it is not a number. (A count, the
-- usual case, goes as it is: no number to format back into text.)
local function score(x)
  if count(x) then return x end
  return number(x) or 0
end
-- A field's value for a defect's reason.
local function show(x)
  if not x then return 'missing' end
  return "'" .. string.sub(x, 1, 60) .. "'"
end

-- One step of the change token (``fin``) per finished or deleted job; a
-- counter someone overwrote starts again rather than fail the script.
local function tally(n)
  local r = redis.pcall('INCRBY', P .. 'fin', n)
  if type(r) == 'table' and r.err then redis.call('SET', P .. 'fin', n) end
end

-- Ranks and tokens come from ``seq``: a script that steps it after its first
-- write checks it first, and refuses (writing nothing) if it is not a count.
local function seq_broken()
  local seq = redis.call('GET', P .. 'seq')
  if not seq or count(seq) then return nil end
  return redis.error_reply('offload: the counter ' .. P .. 'seq holds ' .. show(seq) ..
    ', not a count: something else wrote it. Set it to a number above every job token ' ..
    '(for example the number of jobs ever enqueued) to carry on.')
end

-- A ready job's member in its queue's sorted set (score: -priority). Fixed
-- width, so that equal priorities sort by due time (microseconds), then by
-- sequence (FIFO), byte by byte; the job id follows.
local function rank(due, seq)
  return string.format('%016d%013d', math.max(0, math.floor(due * 1e6)), seq)
end

-- (A queue a worker for all queues claims from is listed in ``queues``: one
-- changed behind offload's back would otherwise never be claimed.)
local function make_ready(id, job, queue, priority, due)
  local member = rank(due, redis.call('INCR', P .. 'seq')) .. id
  redis.call('ZADD', P .. 'ready:' .. queue, -score(priority), member)
  redis.call('HSET', job, 'r', member)
  redis.call('SADD', P .. 'queues', queue)
end

-- Take a job out of every state index: for one whose queue or state field
-- changed or was lost, listed who knows where. Reads every queue: only on
-- that path.
local function unlist(id)
  for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    for _, state in ipairs(@STATES@) do
      redis.call('ZREM', P .. 'st:' .. state .. ':' .. queue, id)
    end
  end
end

-- Each state has an index per queue (score: the enqueue sequence), for
-- counts and newest-first listings. A job that was not listed where its
-- fields say (``from`` false: they do not say) is unlisted from elsewhere.
local function move(id, queue, js, from, to)
  if not from or redis.call('ZREM', P .. 'st:' .. from .. ':' .. queue, id) == 0 then
    unlist(id)
  end
  redis.call('ZADD', P .. 'st:' .. to .. ':' .. queue, score(js), id)
end

-- A job's queue (``q``). A job that lost it is put in queue 'default' and
-- marked ``bad``: its claim then hands it over as a defect.
local function queue_of(job, q)
  if q then return q end
  redis.call('HSET', job, 'q', 'default', 'bad', 'its queue field (q) was missing')
  redis.call('SADD', P .. 'queues', 'default')
  return 'default'
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

local function over(state)
  return state == 'succeeded' or state == 'failed' or state == 'cancelled'
end

-- Delete a job and every trace of it (indexes, expiry, its key); 1 if it existed.
local function drop(id)
  local job = jobkey(id)
  local f = read(job, 'q', 's', 'k') or {}
  if redis.call('DEL', job) == 0 then  -- deleted or evicted already: its traces go
    unlist(id)
    return 0
  end
  if not (f[1] and f[2]) or redis.call('ZREM', P .. 'st:' .. f[2] .. ':' .. f[1], id) == 0 then
    unlist(id)
  end
  redis.call('ZREM', P .. 'expiry', id)
  if f[3] and redis.call('HGET', P .. 'keys', f[3]) == id then
    redis.call('HDEL', P .. 'keys', f[3])
  end
  tally(1)
  return 1
end
""".replace("@WAKE@", str(WAKE_TOKENS)).replace(
    "@STATES@", "{" + ", ".join(f"'{state.value}'" for state in State) + "}"
)

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
  local f = read(jobkey(id), 's', 'fin')
  if not f then return nil end
  if live(f[1]) or (f[1] == 'succeeded' and (number(f[2]) or 0) > since) then return id end
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
# queue (or to the dead-letter set after max_deliveries, DEFAULT_MAX_DELIVERIES
# when unset), then leases up to ``limit`` jobs. Returns CLAIMED values per
# job: id, token, attempt, queue (the one it waited in), meta blob, payload,
# priority, eta, key, max_deliveries, result_ttl, defect (false, or why the
# script found the job corrupt); or, if none, the next delayed due time and
# the next lease end (as PROBE). The fields are the hash's as stored (a
# corrupt one included): the caller reads them, and makes a job it cannot
# read whole a defect.
CLAIMED = 12
IDLE = 2
"""Values of ``CLAIM``'s answer when it claimed nothing."""
CLAIM = (
    _COMMON
    + """
local now, lease_end, limit, batch = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local broken = seq_broken()
if broken then return broken end

local due = come('delayed', now, batch)
for j = 1, #due, 2 do
  local id, job = due[j], jobkey(due[j])
  local f = read(job, 'q', 'p', 's')
  if gone(job, f) then
    unlist(id)
    tally(1)
  else
    make_ready(id, job, queue_of(job, f[1]), f[2], tonumber(due[j + 1]))
  end
  redis.call('ZREM', P .. 'delayed', id)
end

local lapsed = come('running', now, batch)
for j = 1, #lapsed, 2 do
  local id, job = lapsed[j], jobkey(lapsed[j])
  local f = read(job, 'q', 'p', 'a', 'md', 'js', 's')
  if gone(job, f) then
    unlist(id)
    tally(1)
  else
    local queue, attempt, state = queue_of(job, f[1]), count(f[3]), f[6]
    if over(state) then  -- a stale lease: listed as its hash says
      move(id, queue, f[5], 'running', state)
    -- An attempt that is not a count cannot be counted: queued, its claim
    -- makes it a defect.
    elseif attempt and attempt >= (count(f[4]) or @MAX_DELIVERIES@) then
      redis.call('HSET', job, 's', 'failed', 'fin', now, 'dl', attempt)
      move(id, queue, f[5], 'running', 'failed')
      tally(1)
    else
      make_ready(id, job, queue, f[2], tonumber(lapsed[j + 1]))
      redis.call('HSET', job, 's', 'queued')
      if state ~= 'running' then
        redis.call('HSET', job, 'bad', 'its state field (s) was ' .. show(state) .. ' while it ran')
      end
      move(id, queue, f[5], 'running', 'queued')
    end
  end
  redis.call('ZREM', P .. 'running', id)
end

local picked, from = {}, {}
local function pop(queue, n)
  local got = redis.call('ZPOPMIN', P .. 'ready:' .. queue, n)
  for j = 1, #got, 2 do
    picked[#picked + 1] = got[j]
    from[#picked] = queue
  end
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
      from[#picked] = best[j][3]
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
  local id, queue = string.sub(member, @RANK@ + 1), from[i]
  local job = jobkey(id)
  local f = read(job, 's', 'q', 'js', 'm', 'pl', 'p', 'eta', 'k', 'md', 'ttl', 'a', 'bad')
  local state = f and f[1]
  if gone(job, f) then
    redis.call('ZREM', P .. 'st:queued:' .. queue, id)
    redis.call('ZREM', P .. 'st:retrying:' .. queue, id)
    tally(1)
  elseif over(state) then
    -- A stale member: nothing to claim; listed as its hash says.
    move(id, f[2] or queue, f[3], 'queued', state)
  elseif not (state == 'running' and redis.call('ZSCORE', P .. 'running', id)) then
    -- (Else a stale member as well: another worker holds the job.)
    local token, defect = first + i, f[12]
    if defect == '' then defect = false end
    if state ~= 'queued' and state ~= 'retrying' then
      defect = defect or ('its state field (s) is ' .. show(state) .. ', not queued or retrying')
      state = false  -- listed who knows where: unlisted by move()
    end
    if f[2] ~= queue and f[2] then
      -- Changed behind offload's back: listed, and run, where it says now.
      queue = f[2]
      redis.call('SADD', P .. 'queues', queue)
    elseif not f[2] then
      defect = defect or 'its queue field (q) was missing'
      redis.call('HSET', job, 'q', queue)  -- the queue it waited in
    end
    if not count(f[3]) then
      defect = defect or ('its sequence field (js) is ' .. show(f[3]) .. ', not a count')
    end
    local attempt = count(f[11])
    if attempt then
      attempt = attempt + 1
      redis.call('HSET', job, 's', 'running', 't', token, 'lu', lease_end, 'a', attempt)
    else  -- left as it is: the caller sees it, and makes the job a defect
      attempt = f[11]
      redis.call('HSET', job, 's', 'running', 't', token, 'lu', lease_end)
    end
    redis.call('ZADD', P .. 'running', lease_end, id)
    move(id, queue, f[3], state, 'running')
    local row = {id, token, attempt, queue, f[4], f[5], f[6], f[7], f[8], f[9], f[10], defect}
    for k = 1, @CLAIMED@ do out[#out + 1] = row[k] end
  end
end
return out
""".replace("@RANK@", str(RANK_LENGTH))
    .replace("@CLAIMED@", str(CLAIMED))
    .replace("@MAX_DELIVERIES@", str(DEFAULT_MAX_DELIVERIES))
)

# The fence of ack, nack and extend: the delivery's token is the job's
# current one, and the job is running.
_FENCE = """
local id, token = ARGV[2], ARGV[3]
local job = jobkey(id)
local f = read(job, 's', 't', 'q', 'js', 'p', 'a')
if not f or f[1] ~= 'running' or f[2] ~= token then return 0 end
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
  local f = read(job, 's', 't', 'q', 'js', 'rt')
  if not f or f[1] ~= 'running' or f[2] ~= token then return 0 end
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
  move(id, queue_of(job, f[3]), f[4], 'running', state)
  if ARGV[b + 5] ~= '' then redis.call('ZADD', P .. 'expiry', ARGV[b + 5], id) end
  return 1
end

local out, finished = {}, 0
for b = 1, #ARGV - 1, @ACKED@ do
  out[#out + 1] = ack(b)
  finished = finished + out[#out]
end
-- One step of the change token for the batch (drop() steps it too: harmless).
if finished > 0 then tally(finished) end
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
local broken = seq_broken()
if broken then return broken end
redis.call('ZREM', P .. 'running', id)
local queue = queue_of(job, f[3])
local state = 'queued'
if err ~= '' then
  state = 'retrying'
  redis.call('HSET', job, 'err', err)
end
redis.call('HSET', job, 's', state)
local attempt = count(f[6])
if ARGV[7] == '0' and attempt then redis.call('HSET', job, 'a', math.max(0, attempt - 1)) end
local due = now
if retry_at ~= '' then
  redis.call('HSET', job, 'eta', retry_at)
  due = tonumber(retry_at)
end
if due > now then
  redis.call('ZADD', P .. 'delayed', retry_at, id)
else
  make_ready(id, job, queue, f[5], due)
end
move(id, queue, f[4], 'running', state)
notify(queue, 1)
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
local f = read(job, 's', 'q', 'r', 'ttl', 'js')
if not f or (f[1] ~= 'queued' and f[1] ~= 'retrying') then return 0 end
local queue = queue_of(job, f[2])
if f[3] then redis.call('ZREM', P .. 'ready:' .. queue, f[3]) end
redis.call('ZREM', P .. 'delayed', id)
local ttl = number(f[4]) or tonumber(ARGV[4])
if ttl <= 0 then return drop(id) end
redis.call('HSET', job, 's', 'cancelled', 'fin', ARGV[3])
redis.call('HDEL', job, 'r')
move(id, queue, f[5], f[1], 'cancelled')
redis.call('ZADD', P .. 'expiry', num(now + ttl), id)
tally(1)
return 1
"""
)

# ARGV: prefix, id, now.
RETRY = (
    _COMMON
    + """
local id = ARGV[2]
local job = jobkey(id)
local f = read(job, 's', 'q', 'p', 'k', 'js')
if not f or (f[1] ~= 'failed' and f[1] ~= 'cancelled') then return 0 end
local broken = seq_broken()
if broken then return broken end
if f[4] then
  local other = redis.call('HGET', P .. 'keys', f[4])
  -- Another job holds the key now: two would run.
  local held = other and other ~= id and read(jobkey(other), 's')
  if held and live(held[1]) then return 0 end
  redis.call('HSET', P .. 'keys', f[4], id)
end
-- Asked for by a person: the job runs as it is now (a ``bad`` mark goes).
local queue = queue_of(job, f[2])
redis.call('HSET', job, 's', 'queued', 'a', 0)
redis.call('HDEL', job, 'eta', 'fin', 'res', 'err', 'dl', 'bad')
redis.call('ZREM', P .. 'expiry', id)
make_ready(id, job, queue, f[3], tonumber(ARGV[3]))
move(id, queue, f[5], f[1], 'queued')
notify(queue, 1)
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
  local index = P .. 'st:' .. ARGV[2] .. ':' .. queue
  local ids = redis.call('ZRANGE', index, 0, tonumber(ARGV[3]) - 1)
  for _, id in ipairs(ids) do
    drop(id)
    redis.call('ZREM', index, id)  -- also when its job is gone already: counted
  end
  n = n + #ids
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
    """One job of ``CLAIM``'s answer (``CLAIMED`` values), leased until ``until``.

    A job whose fields cannot be read whole (written or changed by something
    else than offload) comes back as a defect, for the runner to dead-letter
    alone: this never raises for what a hash holds.
    """
    raw_id, token, attempt, queue, rest, payload, priority, eta, key, deliveries, ttl, bad = row
    try:
        job_id = raw_id.decode()
    except UnicodeDecodeError:  # kept whole (surrogates): the ack must find its key
        job_id = raw_id.decode("utf-8", "surrogateescape")
        bad = bad or b"its id is not UTF-8 text"

    def build() -> Message:
        try:
            task, timeout, retries, created, meta, no_payload = json.loads(rest)
            return Message(
                job_id,
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
        except Exception as error:  # noqa: BLE001 - named by field for the reason
            raise ValueError(_row_problem(row) or str(error)) from None

    found = read_delivery(job_id, int(token), until, build)
    if not bad:
        return found
    # The script found what the fields cannot show (a lost state or queue field).
    message = Message(job_id, found.message.task, (), {})
    return Delivery(message, found.token, until, defect=_text(bad))


def _meta_blob(value: bytes) -> object:
    task, _timeout, _retries, _created, _meta, _no_payload = json.loads(value)
    return task


def _optional(convert: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda value: None if value is None else convert(value)


_ROW_FIELDS: tuple[tuple[int, str, Callable[[Any], object]], ...] = (
    (2, "attempt count (a)", int),
    (3, "queue (q)", bytes.decode),
    (4, "message (m)", _meta_blob),
    (6, "priority (p)", int),
    (7, "eta", _optional(float)),
    (8, "key (k)", _optional(bytes.decode)),
    (9, "max_deliveries (md)", _optional(int)),
    (10, "result_ttl (ttl)", _optional(float)),
)
"""What a claim row's values must decode as: index, the hash field, the decoder."""


def _row_problem(row: list[Any]) -> str | None:
    """Which field of a claim row does not decode, and what it holds (the slow path)."""
    for index, field, decode in _ROW_FIELDS:
        value = row[index]
        try:
            decode(value)
        except Exception as error:  # noqa: BLE001 - stored data may be anything
            return _field_problem(field, value, error)
    return None


def _field_problem(field: str, value: object, error: BaseException) -> str:
    if value is None:
        return f"its {field} field is missing"
    shown = repr(value[:60]) if isinstance(value, bytes) else repr(value)
    return (
        f"its {field} field holds {shown}, which does not decode ({type(error).__name__}: {error})"
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value if isinstance(value, str) else repr(value)


# -- inspection and the reply channel ---------------------------------------------


def job_info(job_id: str, fields: dict[bytes, bytes]) -> JobInfo:
    """A job's hash (``HGETALL``) as inspection shows it; never raises (see ``_salvaged``)."""
    try:
        return _job_info(job_id, fields)
    except Exception:  # noqa: BLE001 - stored data may be anything
        return _salvaged(job_id, fields)


def _job_info(job_id: str, fields: dict[bytes, bytes]) -> JobInfo:
    task, _, _, created, _, no_payload = json.loads(fields[b"m"])
    if type(task) is not str or type(created) not in (int, float):
        raise ValueError("the message field (m) is not what offload writes")
    lapsed = fields.get(b"dl")
    text = fields.get(b"err")
    if lapsed is not None:
        error: ErrorInfo | None = lapsed_error(int(lapsed))
    else:
        error = None if text is None else error_info(text)
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


_REJECTED = f"{MessageRejected.__module__}.{MessageRejected.__qualname__}"


def not_a_hash(job_id: str) -> JobInfo:
    """A job whose key holds another kind of value than a hash (see ``_salvaged``)."""
    return _salvaged(job_id, {b"s": b"failed"}, ["its key holds another kind of value than a hash"])


def _salvaged(
    job_id: str, fields: dict[bytes, bytes], problems: list[str] | None = None
) -> JobInfo:
    """A job whose hash is corrupt, as much of it as reads.

    Shown, not skipped: ``counts()`` counts it, a person looking at the
    dashboard must find it (to purge or retry it), and a producer waiting
    on it must hear that it will not run as sent, rather than wait forever
    or stall on an error while polling its other handles. Its state is the
    stored one when that reads (a worker that claims a queued one dead-
    letters it), else failed. Its error is the recorded one when that reads
    (for a dead-lettered defect, the reason), else one naming what is corrupt.
    """
    hash_ = _Salvage(fields, [] if problems is None else problems)
    task, created, no_payload = hash_.message()
    state = hash_.get(b"s", _state, State.FAILED, needed=True)
    error = hash_.get(b"err", error_info, None)
    lapsed = hash_.get(b"dl", _count, None)
    if lapsed is not None:
        error = lapsed_error(lapsed)
    elif b"dl" in fields:  # dead-lettered for lapsing, unreadably: the note tells
        error = None
    info = JobInfo(
        id=job_id,
        task=task,
        queue=hash_.get(b"q", _text, "?", needed=True),
        state=state,
        attempt=hash_.get(b"a", _count, 0, needed=True),
        priority=hash_.get(b"p", int, 0, needed=True),
        eta=hash_.get(b"eta", float, None),
        created=created,
        finished=hash_.get(b"fin", float, None),
        key=hash_.get(b"k", _text, None),
        max_deliveries=hash_.get(b"md", _count, None),
        payload=None if no_payload else fields.get(b"pl", b""),
        result=fields.get(b"res"),
        error=error,
    )
    if error is None and hash_.problems:
        info.error = ErrorInfo(
            _REJECTED,
            f"the broker's record of job {job_id} is corrupt: {'; '.join(hash_.problems)}. "
            "Something other than this offload version wrote or changed it; purge it, "
            "or enqueue the call again",
            "",
        )
    return info


class _Salvage:
    """Reads a corrupt hash field by field, noting each field that does not read."""

    def __init__(self, fields: dict[bytes, bytes], problems: list[str]) -> None:
        self.fields = fields
        self.problems = problems

    def get(
        self, field: bytes, decode: Callable[[bytes], Any], default: Any, *, needed: bool = False
    ) -> Any:
        value = self.fields.get(field)
        if value is None:
            if needed:
                self.problems.append(f"its {field.decode()} field is missing")
            return default
        try:
            return decode(value)
        except Exception as error:  # noqa: BLE001 - stored data may be anything
            self.problems.append(_field_problem(field.decode(), value, error))
            return default

    def message(self) -> tuple[str, float, bool]:
        """Task name, creation time and whether there is no payload, from ``m``."""
        blob = self.get(b"m", json.loads, None, needed=True)
        if blob is None:
            return "?", 0.0, False
        if type(blob) is not list or len(blob) != 6 or type(blob[0]) is not str:
            self.problems.append("its message field (m) is not what offload writes")
            return "?", 0.0, False
        if type(blob[3]) not in (int, float):
            self.problems.append("its creation time (in m) is not a number")
            return blob[0], 0.0, bool(blob[5])
        return blob[0], blob[3], bool(blob[5])


def _state(value: bytes) -> State:
    return State(value.decode())


def _count(value: bytes) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("a count is not negative")
    return number


def job_state(value: bytes) -> State:
    """A job's stored state (``s``): one that is not a state shows as failed (see ``_salvaged``)."""
    try:
        return State(value.decode())
    except ValueError:  # UnicodeDecodeError as well
        return State.FAILED


def finished(data: bytes) -> Finished | None:
    """A job's news on its reply channel (``ACK``); None for what is not news.

    ``id state has_result size\n``, then the result (``size`` bytes), then the
    error. Anyone who reaches the server can publish there: news that does not
    read whole names only its job (whose record the producer then reads), or
    nothing.
    """
    head, newline, rest = data.partition(b"\n")
    parts = head.split(b" ")
    try:
        job_id = parts[0].decode()
    except UnicodeDecodeError:
        return None
    if not job_id:
        return None
    if not newline:
        return Finished(job_id)
    try:
        _, state, has_result, size = parts
        cut = int(size)
        if not 0 <= cut <= len(rest) or has_result not in (b"0", b"1"):
            raise ValueError("a result size or flag out of place")
        error = rest[cut:]
        return Finished(
            job_id,
            State(state.decode()),
            rest[:cut] if has_result == b"1" else None,
            error_info(error) if error else None,
        )
    except ValueError:  # UnicodeDecodeError and json's errors as well
        return Finished(job_id)


def error_info(text: bytes | str) -> ErrorInfo:
    """An error as ``error_text`` stored it (3 values before the exception's args were kept)."""
    parts = json.loads(text)
    if (
        type(parts) is list
        and len(parts) in (3, 4)
        and all(type(part) is str for part in parts[:3])
        and (len(parts) == 3 or parts[3] is None or type(parts[3]) is str)
    ):
        return ErrorInfo(*parts)
    raise ValueError("not an error record: [type, message, traceback, args]")


def error_text(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    return json.dumps([error.type, error.message, error.traceback, error.args])
