-- Shared by every script (the loader puts it in front of each): key names,
-- the ready-set member, state moves. Every script takes the key prefix
-- (``offload:<namespace>:``) as ARGV[1]; the key layout is described in the
-- package's ``__init__.py``. Names between at-signs are values the loader
-- (``scripts.py``) fills in from Python.
--
-- A job's hash is written by these scripts, but anyone who reaches the server
-- can change or delete it (or evict it under memory pressure). A script never
-- fails half-way on such a job, since Redis would keep what it wrote before the
-- error (a claim would lose the jobs it had popped): it reads a hash with
-- ``read`` (nil for a key that holds something else), takes numbers through
-- ``score`` and ``count``, and leaves the verdict to the claim, which hands a
-- corrupt job over as a defect (the runner dead-letters it, with the reason).

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
-- Whether a field holds a count (attempt, max_deliveries, sequence): digits only.
-- (Checked as text: ``tonumber`` is a ``strtod``, dear on the hot path.)
local function digits(x)
  return x and #x < 16 and string.find(x, '^%d+$') ~= nil
end
-- A count from a field, as a number; nil when it is not one.
local function count(x)
  if digits(x) then return tonumber(x) end
  return nil
end
-- A sorted-set score from a field: 0 when it is not a number. (A count, the
-- usual case, goes as it is: no number to format back into text.)
local function score(x)
  if digits(x) then return x end
  return number(x) or 0
end

-- The count after ``x`` (a count's text), as text: a number given to
-- ``redis.call`` is formatted with ``sprintf``, dearer than these few steps.
local function succ(x)
  local last = string.byte(x, -1)
  if last < 57 then return string.sub(x, 1, -2) .. string.char(last + 1) end
  return string.format('%d', tonumber(x) + 1)
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

-- Finished jobs per minute and queue, for the dashboard's charts (the
-- inspector's History): a hash per minute, ``stats:{minute}``, fields
-- ``{state}:{queue}``, kept a day. Succeeded and failed only.
local function count_finished(queue, state, now)
  if state ~= 'succeeded' and state ~= 'failed' then return end
  local at = tonumber(now)
  if not at then return end
  local key = P .. 'stats:' .. string.format('%d', math.floor(at / 60) * 60)
  if redis.call('HINCRBY', key, state .. ':' .. queue, '1') == 1 then
    redis.call('EXPIRE', key, '90000')
  end
end

-- The same counts gathered over a script's acks (``finished``: a table made
-- by the caller; nil: counted at once), each hash field stepped once at the
-- end by ``counted``. (Flat, as key and field after key and field: every
-- table a script makes costs its allocation and the garbage collector's time.)
local function gather_finished(finished, queue, state, now)
  if not finished then return count_finished(queue, state, now) end
  if state ~= 'succeeded' and state ~= 'failed' then return end
  local at = tonumber(now)
  if not at then return end
  local minute = math.floor(at / 60) * 60
  if minute ~= finished.minute then  -- formatted once per minute, not per ack
    finished.minute, finished.key = minute, P .. 'stats:' .. string.format('%d', minute)
  end
  local field = state .. ':' .. queue
  local seen = finished.key .. ' ' .. field
  local n = finished[seen]
  if not n then
    finished[#finished + 1] = finished.key
    finished[#finished + 1] = field
    n = 0
  end
  finished[seen] = n + 1
end

local function counted(finished)
  if not finished then return end
  for i = 1, #finished, 2 do
    local key, field = finished[i], finished[i + 1]
    local n = finished[key .. ' ' .. field]
    if redis.call('HINCRBY', key, field, n) == n then
      redis.call('EXPIRE', key, '90000')
    end
  end
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

-- ``redis.call(command, key, ...)`` with the values of ``list`` (in slices
-- that ``unpack`` can take); the sum of the integer replies.
local function each(command, key, list)
  local sum = 0
  for i = 1, #list, 2000 do
    sum = sum + redis.call(command, key, unpack(list, i, math.min(i + 1999, #list)))
  end
  return sum
end

-- The moves of ``move`` gathered over a script's jobs (``moves``: a table made
-- by the caller; nil: moved at once), each index written once at the end by
-- ``moved``: a ``redis.call`` costs several times what a sorted set's command
-- does. (A group that was not all listed where its fields say is unlisted from
-- elsewhere, job by job.) State names hold no space: the group's key reads.
local function gather_move(moves, id, queue, js, from, to)
  if not moves then return move(id, queue, js, from, to) end
  local key = (from or '') .. ' ' .. to .. ' ' .. queue
  local group = moves[key]
  if not group then
    group = {from or false, to, queue, {}, {}}  -- from, to, queue, ids, score and id pairs
    moves[key] = group
    moves[#moves + 1] = group
  end
  local ids, pairs = group[4], group[5]
  ids[#ids + 1] = id
  pairs[#pairs + 1] = score(js)
  pairs[#pairs + 1] = id
end

local function moved(moves)
  if not moves then return end
  for _, group in ipairs(moves) do
    local from, to, queue, ids = group[1], group[2], group[3], group[4]
    if not from or each('ZREM', P .. 'st:' .. from .. ':' .. queue, ids) < #ids then
      for _, id in ipairs(ids) do unlist(id) end
    end
    each('ZADD', P .. 'st:' .. to .. ':' .. queue, group[5])
  end
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

-- A lease end (text) as its score in ``running``: rounded up to a whole
-- second. A small sorted set (as ``running`` is) is a listpack, which keeps
-- an integer score as an integer, but any other as text that each insert
-- parses back (``strtod``), member by member: most of a claim's cost in the
-- server. A lapsed lease is so moved back at most a second later than it
-- ended; the job's ``lu`` keeps the exact end. (One that is not a finite
-- number, or too large for a count, goes as it is.)
local function lease_score(lease_end)
  local at = tonumber(lease_end)
  if not at or at ~= at or math.abs(at) >= 1e15 then return lease_end end
  return string.format('%d', math.ceil(at))
end

-- Members of a sorted set whose score has come (at most ``batch``), with scores.
-- (Numbers given to ``redis.call`` are formatted by ``sprintf``: text is not.)
local function come(set, now, batch)
  return redis.call('ZRANGEBYSCORE', P .. set, '-inf', now, 'WITHSCORES', 'LIMIT', '0', batch)
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
  redis.call('DEL', P .. 'steps:' .. id)  -- its durable steps' results (offload.step)
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
