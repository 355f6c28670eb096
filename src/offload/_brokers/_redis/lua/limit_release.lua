-- RELEASE SLOT of a concurrency limit. ARGV: prefix, limit name, holder, now,
-- ran ('1': the holder ran its task: the time it held the slot joins the
-- limit's average ``hold``; '0': given back unused).

local slots, key = P .. 'slots:' .. ARGV[2], P .. 'limit:' .. ARGV[2]
local since = redis.call('HGET', slots, ARGV[3])
if not since then return 0 end
redis.call('HDEL', slots, ARGV[3])
if ARGV[5] ~= '1' then return 1 end
local now = tonumber(ARGV[4])
local held = math.max(0, now - (number(since) or now))
local hold = number(redis.call('HGET', key, 'hold')) or 0
if hold <= 0 then hold = held else hold = hold + @HOLD_WEIGHT@ * (held - hold) end
redis.call('HSET', key, 'hold', num(hold))
redis.call('EXPIRE', key, 3600)
return 1
