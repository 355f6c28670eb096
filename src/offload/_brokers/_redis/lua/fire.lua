-- FIRE: compare-and-set of a schedule's last tick. ARGV: prefix, schedule
-- name, the fire time the caller read ("" for "no record yet"), the new
-- fire time, the new tick's job id. Times are the caller's decimal strings,
-- compared as text (Python writes and reads them with repr, which
-- round-trips). The hash ``schedules`` maps a name to "<fire> <job id>".
-- Returns 1 if recorded, 0 if another scheduler advanced it first.

local current = redis.call('HGET', P .. 'schedules', ARGV[2])
local fire = current and string.match(current, '^(%S*)') or ''
if fire ~= ARGV[3] or (current and ARGV[3] == '') then return 0 end
redis.call('HSET', P .. 'schedules', ARGV[2], ARGV[4] .. ' ' .. ARGV[5])
return 1
