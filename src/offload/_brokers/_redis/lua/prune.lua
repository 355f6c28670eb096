-- PRUNE. ARGV: prefix, now, batch. Deletes finished jobs whose expiry has come.

local expired = come('expiry', ARGV[2], tonumber(ARGV[3]))
local n = 0
for j = 1, #expired, 2 do
  n = n + drop(expired[j])
  redis.call('ZREM', P .. 'expiry', expired[j])  -- also when its job is gone already
end
return n
