-- CANCEL. ARGV: prefix, id, now, the broker's result_ttl. A running job is
-- asked, not cancelled: its worker hears it when it next renews the lease
-- (EXTEND answers 2) and records it cancelled.

local id, now = ARGV[2], tonumber(ARGV[3])
local job = jobkey(id)
local f = read(job, 's', 'q', 'r', 'ttl', 'js')
if f and f[1] == 'running' then
  redis.call('HSET', job, 'cr', ARGV[3])
  return 1
end
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
