-- ENQUEUE_ONE: the usual call, one message without a key. ARGV: prefix,
-- register ("1": list the queue in ``queues``), id, queue, priority, score
-- (-priority for a ready job, the eta for a delayed one), rank (the ready
-- member's due time, 16 digits, as ``rank`` writes it; "" for a delayed
-- job), attempt, meta blob, payload, then the optional fields as name and
-- value (eta, ttl, md, rt: only those the job has), then replay ("1": a
-- retry of a call whose answer was lost). ``rows.lone_command`` builds them:
-- what the job's due time decides (delayed or ready, its rank) the caller
-- works out from its own clock, as ENQUEUE would here. Writes what ENQUEUE
-- writes for such a message; returns the id (an error, writing nothing, for
-- an id that exists, unless replaying).
--
-- A script of its own, and lean, because Redis runs a script's whole text
-- on every call: no helper, no table, no number formatted twice; a
-- ``redis.call`` costs as much as a few dozen Lua lines.

local id, queue = ARGV[3], ARGV[4]
local job = P .. 'job:' .. id
if redis.call('EXISTS', job) == 1 then
  if ARGV[#ARGV] == '1' then return id end  -- a replay: the id is ours
  return redis.error_reply('job id ' .. id .. ' already exists')
end
local seq = redis.call('INCR', P .. 'seq')
local js = string.format('%d', seq)
if ARGV[2] == '1' then redis.call('SADD', P .. 'queues', queue) end
local last = #ARGV - 1  -- the optional fields are ARGV[11 .. last]
if ARGV[7] == '' then
  redis.call('ZADD', P .. 'delayed', ARGV[6], id)
  redis.call('HSET', job, 'q', queue, 'p', ARGV[5], 's', 'queued', 'js', js, 'a', ARGV[8],
             'm', ARGV[9], 'pl', ARGV[10], unpack(ARGV, 11, last))
else
  local member = ARGV[7] .. string.format('%013d', seq) .. id  -- as rank() makes it
  redis.call('ZADD', P .. 'ready:' .. queue, ARGV[6], member)
  redis.call('HSET', job, 'q', queue, 'p', ARGV[5], 's', 'queued', 'js', js, 'a', ARGV[8],
             'm', ARGV[9], 'pl', ARGV[10], 'r', member, unpack(ARGV, 11, last))
end
redis.call('ZADD', P .. 'st:queued:' .. queue, js, id)
-- notify(queue, 1), unrolled: a token in each list that has room.
local list = P .. 'wake:' .. queue
if redis.call('LLEN', list) < @WAKE@ then redis.call('LPUSH', list, '1') end
list = P .. 'wake'
if redis.call('LLEN', list) < @WAKE@ then redis.call('LPUSH', list, '1') end
return id
