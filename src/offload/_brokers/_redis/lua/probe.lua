-- PROBE, read-only. ARGV: prefix, "*" (all queues) or "", queue names.
-- Returns: whether any of those queues has a ready job, the next delayed due
-- time, the next lease end (false when none).

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
