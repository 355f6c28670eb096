-- The fence of nack and extend (the loader puts it after the prelude): the
-- delivery's token is the job's current one, and the job is running.

local id, token = ARGV[2], ARGV[3]
local job = jobkey(id)
local f = read(job, 's', 't', 'q', 'js', 'p', 'a')
if not f or f[1] ~= 'running' or f[2] ~= token then return 0 end
