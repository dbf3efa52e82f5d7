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
  of one slot. xslot-probe.lua answers the same per key for keys of many
  slots in one call (includes/facts.lua is the shared part).

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
--- @include "includes/facts"

local mode = ARGV[1]
local fields = { unpack(ARGV, 2) }
local out = {}
for i = 1, #KEYS do
  local facts, err = keyFacts(KEYS[i], mode, fields)
  if not facts then return err end
  out[i] = facts
end
return out
