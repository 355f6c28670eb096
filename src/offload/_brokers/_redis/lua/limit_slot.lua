-- TAKE SLOT of a concurrency limit (the arithmetic of _limit_math.py).
-- ARGV: prefix, limit name, holder (a job id), limit, now. Answers '0' when
-- held, else the seconds to wait until a slot is expected, as text.
--
-- ``slots:<name>``: holder -> since. A slot counts while its job's hash says
-- running under a lease that has not lapsed: a finished job, or one whose
-- worker died, frees it here. ``limit:<name>``: ``hold`` the average time a
-- slot is held, ``turn`` the turn of the next refused caller.

local slots, key = P .. 'slots:' .. ARGV[2], P .. 'limit:' .. ARGV[2]
local holder, limit, now = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local held = redis.call('HGETALL', slots)
local live, mine = {}, false
for i = 1, #held, 2 do
  local id = held[i]
  local f = read(jobkey(id), 's', 'lu')
  if f and f[1] == 'running' and (number(f[2]) or 0) > now then
    live[#live + 1] = number(held[i + 1]) or now
    if id == holder then mine = true end
  else
    redis.call('HDEL', slots, id)
  end
end
if mine then return '0' end
if #live < limit then
  redis.call('HSET', slots, holder, ARGV[5])
  return '0'
end
local f = read(key, 'hold', 'turn')
local hold = (f and number(f[1])) or 0
local turn = (f and number(f[2])) or 0
if hold <= 0 then hold = @FIRST_HOLD@ end
local expected = nil
for _, since in ipairs(live) do
  local e = since + math.max(hold, 2 * (now - since))
  if not expected or e < expected then expected = e end
end
expected = math.max(expected or now, turn, now + @MIN_WAIT@)
local wait = math.min(expected - now, @MAX_WAIT@)
redis.call('HSET', key, 'turn', num(now + wait + hold / limit))
redis.call('EXPIRE', key, math.ceil(wait) + 3600)
return num(wait)
