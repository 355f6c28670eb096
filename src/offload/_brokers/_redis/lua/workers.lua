-- HEARTBEAT of a worker. ARGV: prefix, now, worker id, its lapse time, its
-- entry (JSON), milliseconds the entry's key lives (a backstop: the listing
-- goes by ``workers``' scores, on the caller's clock).
-- Refreshes the entry; then, if some worker's heartbeat lapsed, makes the
-- running jobs it holds (field ``h``) claimable now (their lease end, the
-- score in ``running``, becomes now: the next claim moves them back, counting
-- max_deliveries as for any lapse), wakes waiters of their queues, and
-- forgets those workers. Returns the next lapse time of another worker
-- (false: none) and how many jobs were released.

local now, me = ARGV[2], ARGV[3]
redis.call('ZADD', P .. 'workers', ARGV[4], me)
redis.call('SET', P .. 'worker:' .. me, ARGV[5], 'PX', ARGV[6])

local released = 0
local lapsed = redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', now)
if #lapsed > 0 then
  local gone = {}
  for _, id in ipairs(lapsed) do
    gone[id] = true
    redis.call('ZREM', P .. 'workers', id)
    redis.call('DEL', P .. 'worker:' .. id)
  end
  -- Every running job is looked at: this only happens when a worker died.
  local running = redis.call('ZRANGEBYSCORE', P .. 'running', '(' .. now, '+inf')
  for _, id in ipairs(running) do
    local f = read(jobkey(id), 'h', 's', 'q')
    if f and f[1] and gone[f[1]] and f[2] == 'running' then
      redis.call('ZADD', P .. 'running', now, id)
      notify(f[3] or 'default', 1)
      released = released + 1
    end
  end
end

local others = redis.call('ZRANGE', P .. 'workers', 0, 1, 'WITHSCORES')
local next_lapse = false
for j = 1, #others, 2 do
  if others[j] ~= me then
    next_lapse = others[j + 1]
    break
  end
end
return {next_lapse, released}
