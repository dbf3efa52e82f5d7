--[[
  index-add: adds a batch's entries to one workspace index on Redis Cluster,
  after their records were created (src/ops/backfill.ts). The lock lives in
  another slot: the lease deadline stands in for it, so a run paused past its
  lease adds nothing when it wakes.

  KEYS[1]  workspace index (sorted set)
  ARGV[1]  lease deadline in server unix ms ('' or 0 = none)
  ARGV[2..] score, member, ... (created_at ms, job id)

  Returns  the number of members added (ZADD's reply)
  Errors   'FENCED lock' past the lease deadline
]]
--- @include "includes/within-lease"

if not withinLease(ARGV[1]) then return redis.error_reply('FENCED lock') end
local CHUNK = 1000
local added = 0
local i = 2
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  added = added + redis.call('ZADD', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
return added
