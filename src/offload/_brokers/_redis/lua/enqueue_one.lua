-- ENQUEUE_ONE: the usual call, one message without a key, with ENQUEUE's
-- arguments (see ``enqueue.lua``) and answer: EXISTS, INCRBY, HSET, two
-- ZADDs, the wake-up lists. A script of its own because Redis runs a
-- script's whole text on every call, every closure and table made anew:
-- this one has the helpers it calls and no table but the hash's fields.

local id, queue, priority, eta = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local job = jobkey(id)
if redis.call('EXISTS', job) == 1 then
  if ARGV[4] == '1' then return {id} end  -- a replay: the id is ours
  return redis.error_reply('job id ' .. id .. ' already exists')
end
local js = redis.call('INCRBY', P .. 'seq', 1)
if ARGV[6] == '1' then redis.call('SADD', P .. 'queues', queue) end
local fields = {'q', queue, 'p', priority, 's', 'queued', 'js', js, 'a', ARGV[14],
                'm', ARGV[15], 'pl', ARGV[16]}
local n = #fields
local function field(name, value)
  if value ~= '' then
    fields[n + 1] = name; fields[n + 2] = value
    n = n + 2
  end
end
field('eta', eta)
field('ttl', ARGV[12])
field('md', ARGV[13])
field('rt', ARGV[5])
local now = tonumber(ARGV[2])
local due = now
if eta ~= '' then due = tonumber(eta) end
if due > now then
  redis.call('ZADD', P .. 'delayed', eta, id)
else
  local member = rank(due, js) .. id
  redis.call('ZADD', P .. 'ready:' .. queue, -tonumber(priority), member)
  field('r', member)
end
redis.call('HSET', job, unpack(fields))
redis.call('ZADD', P .. 'st:queued:' .. queue, js, id)
notify(queue, 1)
return {id}
