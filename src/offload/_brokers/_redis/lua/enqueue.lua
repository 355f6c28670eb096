-- ENQUEUE. ARGV: prefix, now, reuse_since, replay, reply channel ("" for none:
-- see RedisBroker.wait_for_results), register ("1": list the messages' queues
-- in ``queues``; see RedisBroker._registering), then per message @FIELDS@
-- values: id, queue, priority, eta, key, result_ttl, max_deliveries, attempt,
-- meta blob, payload ("" for an absent optional; a key comes as "=" .. key,
-- or as horizon .. "=" .. key when it has a horizon: see Message.key_horizon).
-- Returns every message's job id; an error, writing nothing, for an id that
-- exists (unless replaying a call whose answer was lost: then it is ours).
--
-- The usual call, one message without a key, is ENQUEUE_ONE's
-- (``enqueue_one.lua``): Redis runs a script's whole text on every call.

local now, replay, reply = tonumber(ARGV[2]), ARGV[4] == '1', ARGV[5]
local FIRST = 7  -- ARGV index of the first message's first value
local CHUNK = 500  -- values per call, far under Lua's stack limit for unpack()
local n = (#ARGV - FIRST + 1) / @FIELDS@

local function register()
  if ARGV[6] ~= '1' then return end
  local listed = {}
  for b = FIRST + 1, #ARGV, @FIELDS@ do
    if not listed[ARGV[b]] then
      listed[ARGV[b]] = true
      redis.call('SADD', P .. 'queues', ARGV[b])
    end
  end
end

-- Store the message whose values start at ARGV[b] as job ``job`` (its key),
-- with enqueue sequence ``js``. ``add(set, score, member)`` adds to a sorted
-- set (at once, or gathered for the batch); ``key`` is its idempotency key.
local function write(b, job, js, key, add)
  local id, queue, priority, eta = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local fields = {'q', queue, 'p', priority, 's', 'queued', 'js', js, 'a', ARGV[b + 7],
                  'm', ARGV[b + 8], 'pl', ARGV[b + 9]}
  local due = now
  if eta ~= '' then
    due = tonumber(eta)
    fields[#fields + 1] = 'eta'; fields[#fields + 1] = eta
  end
  if due > now then
    add('delayed', eta, id)
  else
    local member = rank(due, js) .. id
    add('ready:' .. queue, -tonumber(priority), member)
    fields[#fields + 1] = 'r'; fields[#fields + 1] = member
  end
  if ARGV[b + 5] ~= '' then fields[#fields + 1] = 'ttl'; fields[#fields + 1] = ARGV[b + 5] end
  if ARGV[b + 6] ~= '' then fields[#fields + 1] = 'md'; fields[#fields + 1] = ARGV[b + 6] end
  if reply ~= '' then fields[#fields + 1] = 'rt'; fields[#fields + 1] = reply end
  if key then
    fields[#fields + 1] = 'k'; fields[#fields + 1] = key
    redis.call('HSET', P .. 'keys', key, id)
  end
  redis.call('HSET', job, unpack(fields))
  add('st:queued:' .. queue, js, id)
  return queue
end

local since = tonumber(ARGV[3])
local function holder(key, horizon)
  local id = redis.call('HGET', P .. 'keys', key)
  if not id then return nil end
  local f = read(jobkey(id), 's', 'fin')
  if not f then return nil end
  if live(f[1]) then return id end
  local finished = number(f[2]) or 0
  if f[1] == 'succeeded' and finished > since then return id end
  if horizon and over(f[1]) and finished > now - horizon then return id end
  return nil
end

-- Whether each job id exists: one EXISTS per chunk of ids, and one per id
-- only in a chunk where some do (a replay, or a caller's mistake).
local keys, exists = {}, {}
for b = FIRST, #ARGV, @FIELDS@ do keys[#keys + 1] = jobkey(ARGV[b]) end
for c = 1, n, CHUNK do
  local last = math.min(c + CHUNK - 1, n)
  if redis.call('EXISTS', unpack(keys, c, last)) > 0 then
    for j = c, last do exists[j] = redis.call('EXISTS', keys[j]) == 1 end
  end
end

-- Which messages are new (with their key, or false), and the answer.
local answer, new, newkey, batch = {}, {}, {}, {}
for j = 1, n do
  local b = FIRST + (j - 1) * @FIELDS@
  local id, key = ARGV[b], ARGV[b + 4]
  local found = nil
  if exists[j] then
    if not replay then return redis.error_reply('job id ' .. id .. ' already exists') end
    found = id
  elseif key ~= '' then
    local horizon
    horizon, key = string.match(key, '^([^=]*)=(.*)$')
    found = batch[key] or holder(key, tonumber(horizon))
    if not found then batch[key] = id end
  else
    key = false
  end
  answer[j] = found or id
  if not found then
    new[#new + 1] = j
    newkey[#new] = key
  end
end
register()
if #new == 0 then return answer end

-- Sorted-set members gathered per set, added a chunk per call.
local adds = {}
local function gather(set, score, member)
  local list = adds[set]
  if not list then list = {}; adds[set] = list end
  list[#list + 1] = score; list[#list + 1] = member
end

-- One counter step for the batch: sequences first + 1 .. first + #new.
local first = redis.call('INCRBY', P .. 'seq', #new) - #new
local touched = {}  -- queue -> new jobs in it
for i, j in ipairs(new) do
  local queue = write(FIRST + (j - 1) * @FIELDS@, keys[j], first + i, newkey[i], gather)
  touched[queue] = (touched[queue] or 0) + 1
end
for set, list in pairs(adds) do
  for c = 1, #list, 2 * CHUNK do
    redis.call('ZADD', P .. set, unpack(list, c, math.min(c + 2 * CHUNK - 1, #list)))
  end
end
for queue, m in pairs(touched) do notify(queue, m) end
return answer
