#!lua flags=allow-cross-slot-keys
--[[
  xslot-create: backfill-create.lua for a batch of targets on one master, in
  one call (src/ops/backfill.ts): each absent target is created from its
  source's DUMP payload (RESTORE … ABSTTL without REPLACE: create-if-absent,
  bytes and expiry exact); an existing one is never overwritten, the caller
  compares it. The targets belong to many slots, so they are not declared
  (allow-cross-slot-keys, Redis 7+); the client sends the call straight to
  the master that serves them (src/ops/cluster-batch.ts). A target this
  master does not serve (its slot moved, or is migrating and the key is not
  here) is left alone and answered so, and goes through the per-key path
  (backfill-create.lua), which follows MOVED/ASK.

  The lease deadline stands in for the lock, which lives in another slot, as
  in backfill-create.lua: it is checked before the first write, and a script
  runs atomically, so no write of this call happens after a refusal could
  have been given (a run paused past its lease writes nothing when it wakes).

  KEYS     none
  ARGV[1]  lease deadline in server unix ms ('' or 0 = none: an unlocked run)
  ARGV[2..]  per target, three arguments: the target key, its absolute
             expiry in unix ms (0 or negative = persistent), the DUMP payload

  Returns  one code per target:
             1 created
             0 refused: the key exists
            -1 not served by this node: ask the per-key path
  Errors   'FENCED lock' past the lease deadline
]]
--- @include "includes/within-lease"
--- @include "includes/not-here"

if not withinLease(ARGV[1]) then return redis.error_reply('FENCED lock') end
local out = {}
for i = 2, #ARGV, 3 do
  local key = ARGV[i]
  local exists = redis.pcall('EXISTS', key)
  if type(exists) == 'table' then
    if not notHere(exists) then return exists end
    out[#out + 1] = -1
  elseif exists == 1 then
    out[#out + 1] = 0
  else
    local pexpireat = tonumber(ARGV[i + 1]) or 0
    if pexpireat > 0 then
      redis.call('RESTORE', key, pexpireat, ARGV[i + 2], 'ABSTTL')
    else
      redis.call('RESTORE', key, 0, ARGV[i + 2])
    end
    out[#out + 1] = 1
  end
end
return out
