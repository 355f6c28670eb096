-- EXTEND (after the fence). ARGV: prefix, id, token, new lease end.

redis.call('HSET', job, 'lu', ARGV[4])
redis.call('ZADD', P .. 'running', ARGV[4], id)
return 1
