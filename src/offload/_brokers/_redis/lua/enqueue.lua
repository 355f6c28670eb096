-- ENQUEUE. ARGV: prefix, now, reuse_since, replay, reply channel ("" for none:
-- see RedisBroker.wait_for_results), then per message @FIELDS@ values:
-- id, queue, priority, eta, key, result_ttl, max_deliveries, attempt, meta
-- blob, payload ("" for an absent optional; a key comes as "=" .. key).
-- Returns every message's job id; an error, writing nothing, for an id that
-- exists (unless replaying a call whose answer was lost: then it is ours).

local now, since, replay, reply = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
local CHUNK = 500  -- values per call, far under Lua's stack limit for unpack()

local function holder(key)
  local id = redis.call('HGET', P .. 'keys', key)
  if not id then return nil end
  local f = read(jobkey(id), 's', 'fin')
  if not f then return nil end
  if live(f[1]) or (f[1] == 'succeeded' and (number(f[2]) or 0) > since) then return id end
  return nil
end

-- Whether each job id exists: one EXISTS per chunk of ids, and one per id
-- only in a chunk where some do (a replay, or a caller's mistake).
local keys, exists = {}, {}
for b = 5, #ARGV - 1, @FIELDS@ do keys[#keys + 1] = jobkey(ARGV[b + 1]) end
for c = 1, #keys, CHUNK do
  local last = math.min(c + CHUNK - 1, #keys)
  if redis.call('EXISTS', unpack(keys, c, last)) > 0 then
    for j = c, last do exists[j] = redis.call('EXISTS', keys[j]) == 1 end
  end
end

local answer, new, batch = {}, {}, {}
for j = 1, #keys do
  local b = 5 + (j - 1) * @FIELDS@
  local id, key = ARGV[b + 1], ARGV[b + 5]
  local found = nil
  if exists[j] then
    if not replay then return redis.error_reply('job id ' .. id .. ' already exists') end
    found = id
  elseif key ~= '' then
    key = string.sub(key, 2)
    found = batch[key] or holder(key)
    if not found then batch[key] = id end
  end
  answer[#answer + 1] = found or id
  if not found then new[#new + 1] = b end
end

-- Sorted-set members gathered per set, added a chunk per call.
local adds = {}
local function add(set, score, member)
  local list = adds[set]
  if not list then list = {}; adds[set] = list end
  list[#list + 1] = score; list[#list + 1] = member
end

local touched = {}
-- One counter step for the batch: sequences first + 1 .. first + #new.
local first = redis.call('INCRBY', P .. 'seq', #new) - #new
for i, b in ipairs(new) do
  local id, queue, priority = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local eta, key = ARGV[b + 4], ARGV[b + 5]
  local js = first + i
  local fields = {'q', queue, 'p', priority, 's', 'queued', 'js', js, 'a', ARGV[b + 8],
                  'm', ARGV[b + 9], 'pl', ARGV[b + 10]}
  if eta ~= '' then fields[#fields + 1] = 'eta'; fields[#fields + 1] = eta end
  if ARGV[b + 6] ~= '' then fields[#fields + 1] = 'ttl'; fields[#fields + 1] = ARGV[b + 6] end
  if ARGV[b + 7] ~= '' then fields[#fields + 1] = 'md'; fields[#fields + 1] = ARGV[b + 7] end
  if reply ~= '' then fields[#fields + 1] = 'rt'; fields[#fields + 1] = reply end
  if key ~= '' then
    key = string.sub(key, 2)
    fields[#fields + 1] = 'k'; fields[#fields + 1] = key
    redis.call('HSET', P .. 'keys', key, id)
  end
  local due = now
  if eta ~= '' then due = tonumber(eta) end
  if due > now then
    add('delayed', eta, id)
  else
    local member = rank(due, js) .. id
    add('ready:' .. queue, -tonumber(priority), member)
    fields[#fields + 1] = 'r'; fields[#fields + 1] = member
  end
  redis.call('HSET', jobkey(id), unpack(fields))
  add('st:queued:' .. queue, js, id)
  touched[queue] = (touched[queue] or 0) + 1
end
for set, list in pairs(adds) do
  for c = 1, #list, 2 * CHUNK do
    redis.call('ZADD', P .. set, unpack(list, c, math.min(c + 2 * CHUNK - 1, #list)))
  end
end
for queue, n in pairs(touched) do
  redis.call('SADD', P .. 'queues', queue)
  notify(queue, n)
end
return answer
