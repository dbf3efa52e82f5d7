--[[
  backfill-create: creates one absent target record on Redis Cluster, where the
  source and the target hash to different slots and no script can read both
  (src/ops/backfill.ts). Create-if-absent: an existing target (a live writer's
  record, another tenant's job with the same id) is never overwritten; the
  caller then compares it. The operator lock lives in a third slot, so the
  lease deadline stands in for it: a run paused past its lease writes nothing
  when it wakes (docs/design.md "Every mutation of a run is fenced by its lock").

  KEYS[1]  target record hash
  ARGV[1]  lease deadline in server unix ms ('' or 0 = none: an unlocked run)
  ARGV[2]  absolute expiry in unix ms, 0 or negative = persistent
  ARGV[3]  'dump': ARGV[4] is the source's DUMP payload (bytes and encoding
           kept, RESTORE … ABSTTL); 'fields': ARGV[4..] are field, value, ...
           (the whole record, rev included)

  Returns  1 created
           0 refused: the key exists
  Errors   'FENCED lock' past the lease deadline
]]
--- @include "includes/within-lease"

if not withinLease(ARGV[1]) then return redis.error_reply('FENCED lock') end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local pexpireat = tonumber(ARGV[2]) or 0
if ARGV[3] == 'dump' then
  if pexpireat > 0 then
    redis.call('RESTORE', KEYS[1], pexpireat, ARGV[4], 'ABSTTL')
  else
    redis.call('RESTORE', KEYS[1], 0, ARGV[4])
  end
  return 1
end
local CHUNK = 1000
local i = 4
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
if pexpireat > 0 then redis.call('PEXPIREAT', KEYS[1], pexpireat) end
return 1
