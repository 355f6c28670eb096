-- TAKE TOKEN of a rate limit (GCRA; the arithmetic of _limit_math.py).
-- ARGV: prefix, limit name, now, interval, burst. Answers '0' when taken,
-- else the seconds to wait (nothing taken), as text.
--
-- The limit's hash ``limit:<name>``: ``tat`` the theoretical arrival time of
-- the next call, ``turn`` the turn of the next refused caller. It expires an
-- hour after it last mattered (an idle limit key leaves nothing behind).

local key = P .. 'limit:' .. ARGV[2]
local now, interval, burst = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local f = read(key, 'tat', 'turn')
local tat = (f and number(f[1])) or 0
local turn = (f and number(f[2])) or 0
local earliest = tat - burst * interval
local wait = 0
if earliest <= now then
  tat = math.max(tat, now) + interval
  redis.call('HSET', key, 'tat', num(tat))
else
  local expected = math.max(earliest, turn)
  wait = math.min(math.max(expected - now, @MIN_WAIT@), @MAX_WAIT@)
  turn = math.max(expected, now) + interval
  redis.call('HSET', key, 'turn', num(turn))
end
redis.call('EXPIRE', key, math.ceil(math.max(tat, turn) - now) + 3600)
return num(wait)
