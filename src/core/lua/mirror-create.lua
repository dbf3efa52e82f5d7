--[[
  mirror-create: the mirror step of a create on Redis Cluster, where the
  primary and the mirror hash to different slots (src/core/redis-queue.ts).
  Create-if-absent: the first create of a job id claims the legacy key, so of
  two workspaces creating one id at the same moment exactly one wins; the
  loser's primary record is removed again and it answers "exists".

  KEYS[1]  mirror record hash
  ARGV[1]  absolute expiry in unix ms, 0 or negative = persistent
  ARGV[2..] field, value, ... (the whole snapshot, rev included)

  Returns  1 created
           0 refused: the key exists (another job holds this id)
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local CHUNK = 1000
local i = 2
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local pexpireat = tonumber(ARGV[1])
if pexpireat and pexpireat > 0 then redis.call('PEXPIREAT', KEYS[1], pexpireat) end
return 1
