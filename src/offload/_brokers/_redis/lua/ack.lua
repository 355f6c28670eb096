-- ACK (run by ``ack_run.lua``). ARGV: prefix, then @ACKED@ values per ack:
-- id, token, state, now, expires ("" to keep until purged), drop ("1": keep
-- nothing), has result, result, error ("" for none). Several acks (a
-- worker's threads that finished together) share one call; each is fenced on
-- its own: 1 or 0 per ack. Tells a job's reply channel (``rt``, if its
-- producer listens) it finished.
--
-- Each ack writes its job's hash at once (a second ack of the job in the
-- batch then finds it finished); the indexes (``running``, the state
-- indexes, ``expiry``, the minute's counts) are written once for a batch of
-- several, at its end (``ack_all``): a ``redis.call`` costs more than the
-- command. A lone ack writes them at once (gathering costs it tables).

-- ``later``: the batch's {running ids, moves, expiry pairs, finished counts};
-- nil for a lone ack.
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
  if later then
    later[1][#later[1] + 1] = id
  else
    redis.call('ZREM', P .. 'running', id)
  end
  gather_finished(later and later[4], queue, state, ARGV[b + 4])
  -- A success after retries clears the last error; no result clears an old one.
  -- (One HSET per case: a table to unpack is an allocation per ack.)
  local res, err = ARGV[b + 7] == '1', ARGV[b + 9] ~= ''
  if not res and f[6] then redis.call('HDEL', job, 'res') end
  if not err and f[7] then redis.call('HDEL', job, 'err') end
  if res and err then
    redis.call('HSET', job, 's', state, 'fin', ARGV[b + 4], 'res', ARGV[b + 8], 'err', ARGV[b + 9])
  elseif res then
    redis.call('HSET', job, 's', state, 'fin', ARGV[b + 4], 'res', ARGV[b + 8])
  elseif err then
    redis.call('HSET', job, 's', state, 'fin', ARGV[b + 4], 'err', ARGV[b + 9])
  else
    redis.call('HSET', job, 's', state, 'fin', ARGV[b + 4])
  end
  gather_move(later and later[2], id, queue, f[4], 'running', state)
  if ARGV[b + 5] == '' then return 1 end
  if later then
    local expiry = later[3]
    expiry[#expiry + 1] = ARGV[b + 5]
    expiry[#expiry + 1] = id
  else
    redis.call('ZADD', P .. 'expiry', ARGV[b + 5], id)
  end
  return 1
end

-- The ``n`` acks whose values start at ARGV[from]: 1 or 0 each.
local function ack_all(from, n)
  local out, finished = {}, 0
  local later = n > 1 and {{}, {}, {}, {}}
  for i = 1, n do
    out[i] = ack(from - 1 + (i - 1) * @ACKED@, later)
    finished = finished + out[i]
  end
  if later then
    if #later[1] > 0 then each('ZREM', P .. 'running', later[1]) end
    moved(later[2])
    if #later[3] > 0 then each('ZADD', P .. 'expiry', later[3]) end
    counted(later[4])
  end
  -- One step of the change token for the batch (drop() steps it too: harmless).
  if finished > 0 then tally(finished) end
  return out
end
