-- CLAIM: the claim of ``claim.lua``, alone.
local first, refused = reserve(tonumber(ARGV[4]))
if refused then return refused end
return claim(1, first)
