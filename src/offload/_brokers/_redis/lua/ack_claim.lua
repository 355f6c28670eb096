-- ACK_CLAIM: acks, then a claim, in one call (a worker's finished thread
-- claiming its successor: ``AckAndClaim``). ARGV: prefix, n, n acks as ACK
-- takes them (@ACKED@ values each), then the claim's values as CLAIM takes
-- them from ``now`` on. The claim's tokens are reserved before the acks
-- write anything: a counter that refuses them refuses the whole call (the
-- claim never happens without the acks, nor the acks half-way). Returns
-- {ACK's answer, CLAIM's answer}.

local n = tonumber(ARGV[2])
local c = 2 + n * @ACKED@
local first, refused = reserve(tonumber(ARGV[c + 3]))
if refused then return refused end
return {ack_all(3, n), claim(c, first)}
