-- RETRY. ARGV: prefix, id, now.

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
redis.call('HDEL', job, 'eta', 'fin', 'res', 'err', 'dl', 'bad', 'cr')
redis.call('ZREM', P .. 'expiry', id)
make_ready(id, job, queue, f[3], tonumber(ARGV[3]))
move(id, queue, f[5], f[1], 'queued')
notify(queue, 1)
return 1
