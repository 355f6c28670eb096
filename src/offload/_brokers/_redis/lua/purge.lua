-- PURGE. ARGV: prefix, state, batch, queue ("" for all). Deletes up to
-- ``batch`` jobs per queue; the caller repeats until fewer come back.

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
