-- ACK (run by ``ack_run.lua``). ARGV: prefix, then @ACKED@ values per ack:
-- id, token, state, now, expires ("" to keep until purged), drop ("1": keep
-- nothing), has result, result, error ("" for none). Several acks (a
-- worker's threads that finished together) share one call; each is fenced on
-- its own: 1 or 0 per ack. Tells a job's reply channel (``rt``, if its
-- producer listens) it finished.
--
-- Each ack writes its job's hash at once (a second ack of the job in the
-- batch then finds it finished); the indexes (``running``, the state
-- indexes, ``expiry``, the minute's counts) are written once for the batch,
-- at its end (``ack_all``): a ``redis.call`` costs more than the command.

local function ack(b, later)
  local id, token, state = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local job = jobkey(id)
  -- (Whether it holds a result or an error, too: only what is there is deleted.)
  local f = read(job, 's', 't', 'q', 'js', 'rt', 'res', 'err')
  if not f or f[1] ~= 'running' or f[2] ~= token then return 0 end
  if f[5] then
    -- The outcome travels along (see ``finished``): no read after the news.
    local has, res = ARGV[b + 7], ''
    if has == '1' then res = ARGV[b + 8] end
    local head = table.concat({id, state, has, #res}, ' ')
    redis.call('PUBLISH', f[5], head .. '\n' .. res .. ARGV[b + 9])
  end
  local queue = queue_of(job, f[3])
  if ARGV[b + 6] == '1' then
    redis.call('ZREM', P .. 'running', id)
    count_finished(queue, state, ARGV[b + 4])
    return drop(id)
  end
  later.running[#later.running + 1] = id
  gather_finished(later.finished, queue, state, ARGV[b + 4])
  -- A success after retries clears the last error; no result clears an old one.
  local set = {'s', state, 'fin', ARGV[b + 4]}
  if ARGV[b + 7] == '1' then
    set[#set + 1] = 'res'; set[#set + 1] = ARGV[b + 8]
  elseif f[6] then
    redis.call('HDEL', job, 'res')
  end
  if ARGV[b + 9] ~= '' then
    set[#set + 1] = 'err'; set[#set + 1] = ARGV[b + 9]
  elseif f[7] then
    redis.call('HDEL', job, 'err')
  end
  redis.call('HSET', job, unpack(set))
  gather(later.moves, id, queue, f[4], 'running', state)
  if ARGV[b + 5] ~= '' then
    later.expiry[#later.expiry + 1] = ARGV[b + 5]
    later.expiry[#later.expiry + 1] = id
  end
  return 1
end

-- The ``n`` acks whose values start at ARGV[from]: 1 or 0 each.
local function ack_all(from, n)
  local out, finished = {}, 0
  local later = {running = {}, moves = {}, expiry = {}, finished = {}}
  for i = 1, n do
    out[i] = ack(from - 1 + (i - 1) * @ACKED@, later)
    finished = finished + out[i]
  end
  if #later.running > 0 then each('ZREM', P .. 'running', later.running) end
  moved(later.moves)
  if #later.expiry > 0 then each('ZADD', P .. 'expiry', later.expiry) end
  counted(later.finished)
  -- One step of the change token for the batch (drop() steps it too: harmless).
  if finished > 0 then tally(finished) end
  return out
end
