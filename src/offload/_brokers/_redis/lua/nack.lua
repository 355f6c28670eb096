-- NACK (after the fence). ARGV: prefix, id, token, now, retry_at ("" for
-- now), error ("" keeps the last one and queues; else retrying), penalty ("0"
-- gives the attempt back).

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
