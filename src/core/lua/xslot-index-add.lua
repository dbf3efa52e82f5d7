#!lua flags=allow-cross-slot-keys
--[[
  xslot-index-add: index-add.lua for every workspace index of a batch that
  one master serves, in one call after the records were created
  (src/ops/backfill.ts); undeclared keys as in xslot-create.lua. An index the
  master does not serve is answered -1 and goes through index-add.lua.

  The lease deadline stands in for the lock, as in index-add.lua: checked
  before the first write of this atomic call, so a run paused past its
  lease adds nothing when it wakes.

  KEYS     none
  ARGV[1]  lease deadline in server unix ms ('' or 0 = none)
  ARGV[2..]  per index: the index key, N, then N pairs score, member
             (created_at ms, job id)

  Returns  one integer per index: the number of members added (ZADD's
           reply), or
            -1 not served by this node: ask the per-key path
  Errors   'FENCED lock' past the lease deadline; an index that is not a
           sorted set fails the call with Redis' WRONGTYPE, as in index-add.lua
]]
--- @include "includes/within-lease"
--- @include "includes/not-here"

if not withinLease(ARGV[1]) then return redis.error_reply('FENCED lock') end
local CHUNK = 1000
local out = {}
local i = 2
while i <= #ARGV do
  local key = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  local first = i + 2
  local stop = first + 2 * n - 1
  local added = 0
  local j = first
  while j <= stop do
    local last = math.min(j + CHUNK - 1, stop)
    local r = redis.pcall('ZADD', key, unpack(ARGV, j, last))
    if type(r) == 'table' then
      -- Only the first chunk can be refused as not here: the rest of the key's chunks run in the same atomic call.
      if not notHere(r) then return r end
      added = -1
      break
    end
    added = added + r
    j = last + 1
  end
  out[#out + 1] = added
  i = stop + 1
end
return out
