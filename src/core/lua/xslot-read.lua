#!lua flags=no-writes,allow-cross-slot-keys
--[[
  xslot-read: the cluster backfill's read of a batch of source records on one
  master, in one call (src/ops/backfill.ts): what the per-key path reads with
  HMGET + DUMP + PEXPIRETIME per key. The keys belong to many slots, so they
  are not declared (allow-cross-slot-keys, Redis 7+); the client sends the
  call straight to the master that serves them (src/ops/cluster-batch.ts).
  A key this master does not serve (its slot moved, or is migrating and the
  key has left) is answered 'x' and goes through the per-key path, which
  follows MOVED/ASK. Read-only.

  KEYS     none
  ARGV[1]  F, the number of field names that follow
  ARGV[2..F+1]  the field names to read
  ARGV[F+2..]   the source keys

  Returns  two elements per key: a row string, then the DUMP payload (nil
           unless the row is 'h'). The row:
             'x'                 not served by this node: ask the per-key path
             'n'                 the key does not exist
             't' .. <type>       the key is not a hash
             'h' <PEXPIRETIME> ':' then per field '-' when absent, else
                                 <byte length> ':' <value>
]]
--- @include "includes/not-here"

local nf = tonumber(ARGV[1])
local fields = { unpack(ARGV, 2, nf + 1) }
local out = {}
for i = nf + 2, #ARGV do
  local key = ARGV[i]
  local payload = redis.pcall('DUMP', key)
  local row = 'n'
  if type(payload) == 'table' and payload.err then
    if not notHere(payload) then return payload end
    row = 'x'
    payload = false
  elseif payload then
    local vals = redis.pcall('HMGET', key, unpack(fields))
    if vals.err then
      row = 't' .. redis.call('TYPE', key)['ok']
      payload = false
    else
      local parts = { 'h', redis.call('PEXPIRETIME', key), ':' }
      for j = 1, nf do
        local v = vals[j]
        if v then parts[#parts + 1] = #v .. ':' .. v else parts[#parts + 1] = '-' end
      end
      row = table.concat(parts)
    end
  end
  out[#out + 1] = row
  out[#out + 1] = payload
end
return out
