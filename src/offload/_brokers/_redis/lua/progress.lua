-- PROGRESS (after the fence). ARGV: prefix, id, token, the progress as JSON
-- text ([done, total, note, at]). Kept in the job's hash: it goes with it.

redis.call('HSET', job, 'pg', ARGV[4])
return 1
