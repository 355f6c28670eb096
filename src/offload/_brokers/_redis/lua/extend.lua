-- EXTEND (after the fence). ARGV: prefix, id, token, new lease end.
-- 1: held; 2: held, and someone asked to cancel the job (CANCEL).

redis.call('HSET', job, 'lu', ARGV[4])
redis.call('ZADD', P .. 'running', lease_score(ARGV[4]), id)
if redis.call('HEXISTS', job, 'cr') == 1 then return 2 end
return 1
