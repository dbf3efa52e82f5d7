--[[
  record-facts: one side of a verify pair reduced to a digest on the server,
  so a pair whose two keys live in different slots (a cluster) is compared on
  the client without shipping either record. Read-only.
    mode 'dump':    sha1 of the key's DUMP payload: equal payloads are equal
                    content (and both hashes), but equal content may dump
                    differently (encoding, field order), so a difference only
                    makes a pair worth the 'content' digest.
    mode 'content': the order-independent content digest of
                    includes/digest.lua (the one apply-if-newer and repair-cas
                    check; src/ops/record-compare.ts recordDigest computes it
                    on the client): equal iff the field sets are byte-equal.
  Called with one key (registered with a fixed key count, so the cluster
  client routes it and pipelines it per master); it also takes several keys
  of one slot.

  KEYS     the records
  ARGV[1]  'dump' or 'content'
  ARGV     then the field names to return (F of them)

  Returns  one string per key:
             'n'                 the key does not exist
             't' .. <type>       the key is not a hash
             'h' <40 hex digest> <PEXPIRETIME> ':' then per field
                                 '-' when absent, else <byte length> ':' <value>
]]
--- @include "includes/digest"

local mode = ARGV[1]
local nf = #ARGV - 1
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  -- DUMP answers for any type (nil when absent); the hash read after it tells a hash from another type.
  local payload = redis.call('DUMP', key)
  if not payload then
    out[i] = 'n'
  else
    local probe
    if nf > 0 then probe = redis.pcall('HMGET', key, unpack(ARGV, 2)) else probe = redis.pcall('HLEN', key) end
    if type(probe) == 'table' and probe.err then
      out[i] = 't' .. redis.call('TYPE', key)['ok']
    else
      local d
      if mode == 'content' then d = digest(redis.call('HGETALL', key), 1) else d = redis.sha1hex(payload) end
      local parts = { 'h', d, redis.call('PEXPIRETIME', key), ':' }
      for j = 1, nf do
        local v = probe[j]
        if v then parts[#parts + 1] = #v .. ':' .. v else parts[#parts + 1] = '-' end
      end
      out[i] = table.concat(parts)
    end
  end
end
return out
