-- STEP (after the fence). ARGV: prefix, id, token, step name, its encoded
-- result. A step recorded once keeps its first result; 1 while the lease
-- holds, recorded now or before.

redis.call('HSETNX', P .. 'steps:' .. id, ARGV[4], ARGV[5])
return 1
