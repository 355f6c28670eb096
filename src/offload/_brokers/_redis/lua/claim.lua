-- CLAIM (run by ``claim_run.lua``). ARGV: prefix, now, lease end, limit,
-- batch, holder (the registered worker claiming, or ""), "*" (all queues) or
-- "" (named), queue names. Promotes due delayed jobs, moves lapsed leases
-- back to their queue (or to the dead-letter set after max_deliveries,
-- @MAX_DELIVERIES@ when unset), then leases up to ``limit`` jobs. Returns
-- @CLAIMED@ values per job: id, token, attempt, queue (the one it waited in),
-- meta blob, payload, priority, eta, key, max_deliveries, result_ttl, defect
-- (false, or why the script found the job corrupt); then, if it found
-- fewer jobs than ``limit`` (none included), the next delayed due time and
-- the next lease end (as PROBE). The fields are the
-- hash's as stored (a corrupt one included): the caller reads them, and makes
-- a job it cannot read whole a defect.

-- Tokens first + 1 .. first + limit, reserved before the first write: one
-- counter step per claim, which also refuses (writing nothing) a counter that
-- is not a count. (A claim that finds fewer jobs leaves a gap: tokens need
-- only be unique.) The first token, or nil and the refusal.
local function reserve(limit)
  local reserved = redis.pcall('INCRBY', P .. 'seq', limit)
  if type(reserved) == 'table' then return nil, seq_broken() or reserved end
  return reserved - limit
end

-- The claim whose values start after ARGV[c] (now, lease end, limit, ...;
-- c is 1 for CLAIM), with tokens from ``first`` + 1 (``reserve``).
local function claim(c, first)
  local now, lease_end = ARGV[c + 1], ARGV[c + 2]
  local limit = tonumber(ARGV[c + 3])
  local holder = ARGV[c + 5]

  local due = come('delayed', now, ARGV[c + 4])
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

  local lapsed = come('running', now, ARGV[c + 4])
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
        count_finished(queue, 'failed', now)
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
    -- (The limit as the caller wrote it, when it is what is asked: see ``come``.)
    local got = redis.call('ZPOPMIN', P .. 'ready:' .. queue, n == limit and ARGV[c + 3] or n)
    for j = 1, #got, 2 do
      picked[#picked + 1] = got[j]
      from[#picked] = queue
    end
  end
  if ARGV[c + 6] == '' then
    for i = c + 7, #ARGV do
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
  -- Fewer than asked for: the queues are empty now. Then the answer ends
  -- with when something next comes due, for the wait that follows (it then
  -- needs no PROBE of its own): alone, when nothing was claimed.
  local function next_due()
    local due = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
    local lease = redis.call('ZRANGE', P .. 'running', 0, 0, 'WITHSCORES')
    out[#out + 1] = due[2] or false
    out[#out + 1] = lease[2] or false
    return out
  end
  if #picked == 0 then return next_due() end
  -- The job keeps its stale ready member ``r``: every way back to a ready set
  -- writes a new one, and no set holds the old one any more. The indexes
  -- (``running``, the state indexes) are written once for several jobs, at
  -- the end (``leased`` meanwhile holds what ``running`` will); a lone job's
  -- at once (gathering costs it tables).
  local leased, moves = false, false
  if #picked > 1 then leased, moves = {}, {} end
  local leased_score = lease_score(lease_end)
  local function held(id)  -- by this claim, or by another worker
    if leased then
      for j = 2, #leased, 2 do
        if leased[j] == id then return true end
      end
    end
    return redis.call('ZSCORE', P .. 'running', id)
  end
  local token = string.format('%d', first)  -- the tokens, as text (see ``succ``)
  for i, member in ipairs(picked) do
    token = succ(token)  -- first + i
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
    elseif not (state == 'running' and held(id)) then
      -- (Else a stale member as well: another worker, or this claim, holds the job.)
      local defect = f[12]
      if defect == '' then defect = false end
      if state ~= 'queued' and state ~= 'retrying' then
        defect = defect or ('its state field (s) is ' .. show(state) .. ', not queued or retrying')
        state = false  -- listed who knows where: unlisted by moved()
      end
      if f[2] ~= queue and f[2] then
        -- Changed behind offload's back: listed, and run, where it says now.
        queue = f[2]
        redis.call('SADD', P .. 'queues', queue)
      elseif not f[2] then
        defect = defect or 'its queue field (q) was missing'
        redis.call('HSET', job, 'q', queue)  -- the queue it waited in
      end
      if not digits(f[3]) then
        defect = defect or ('its sequence field (js) is ' .. show(f[3]) .. ', not a count')
      end
      local attempt = f[11]
      if digits(attempt) then
        attempt = succ(attempt)
        redis.call('HSET', job, 's', 'running', 't', token, 'lu', lease_end, 'a', attempt, 'h', holder)
      else  -- left as it is: the caller sees it, and makes the job a defect
        redis.call('HSET', job, 's', 'running', 't', token, 'lu', lease_end, 'h', holder)
      end
      if leased then
        leased[#leased + 1] = leased_score
        leased[#leased + 1] = id
      else
        redis.call('ZADD', P .. 'running', leased_score, id)
      end
      gather_move(moves, id, queue, f[3], state, 'running')
      -- The @CLAIMED@ values of its row, straight into the answer (no table of its own).
      local o = #out
      out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, token, attempt, queue
      out[o + 5], out[o + 6], out[o + 7], out[o + 8] = f[4], f[5], f[6], f[7]
      out[o + 9], out[o + 10], out[o + 11], out[o + 12] = f[8], f[9], f[10], defect
    end
  end
  if leased and #leased > 0 then each('ZADD', P .. 'running', leased) end
  moved(moves)
  if #picked < limit then return next_due() end
  return out
end
