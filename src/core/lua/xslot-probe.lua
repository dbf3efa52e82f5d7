#!lua flags=no-writes,allow-cross-slot-keys
--[[
  xslot-probe: the cluster verify's reads of a batch on one master, in one
  call (src/ops/verify/passes.ts, src/ops/verify/digest-pairs.ts): what the
  per-key path asks with record-facts.lua, ZSCORE, HGET, TYPE and EXISTS per
  key. The keys belong to many slots, so they are not declared
  (allow-cross-slot-keys, Redis 7+); the client sends the call straight to
  the master that serves them (src/ops/cluster-batch.ts). A key this master
  does not serve (its slot moved, or is migrating and the key has left) is
  answered 'x' and goes through the per-key path, which follows MOVED/ASK.
  Read-only.

  KEYS     none
  ARGV[1]  'dump' or 'content': the digest of the facts (record-facts.lua)
  ARGV[2]  F, the number of field names that follow
  ARGV[3..F+2]  the field names the facts return
  ARGV[F+3..]   probes, three arguments each: op, key, argument
             'f' key ''      the key's facts with the F fields (record-facts.lua's reply)
             'd' key ''      the key's facts without fields
             'z' key member  the member's score in the sorted set
             'g' key field   one field of a hash
             't' key ''      the key's type
             'e' key ''      whether the key exists

  Returns  one string per probe, 'x' when the key is not served by this node.
           'f', 'd': record-facts.lua's reply for the key
           'z': 's' .. <score>, 'n' no such member or key, 'w' not a sorted set
           'g': 'v' .. <value>, 'n' no such field or key, 'w' not a hash
           't': Redis TYPE ('none' when absent)
           'e': 'e' exists, 'n' absent
]]
--- @include "includes/digest"
--- @include "includes/facts"
--- @include "includes/not-here"

local mode = ARGV[1]
local nf = tonumber(ARGV[2])
local fields = { unpack(ARGV, 3, nf + 2) }
local none = {}
local out = {}
for i = nf + 3, #ARGV, 3 do
  local op, key = ARGV[i], ARGV[i + 1]
  local r, err
  if op == 'f' or op == 'd' then
    r, err = keyFacts(key, mode, op == 'f' and fields or none)
  else
    local v
    if op == 'z' then
      v = redis.pcall('ZSCORE', key, ARGV[i + 2])
    elseif op == 'g' then
      v = redis.pcall('HGET', key, ARGV[i + 2])
    elseif op == 't' then
      v = redis.pcall('TYPE', key)
    elseif op == 'e' then
      v = redis.pcall('EXISTS', key)
    else
      error('xslot-probe: unknown op ' .. tostring(op))
    end
    if type(v) == 'table' and v.err then
      err = v
      if not notHere(v) and string.sub(v.err, 1, 9) == 'WRONGTYPE' then
        err = nil
        r = 'w'
      end
    elseif op == 't' then
      r = v['ok']
    elseif op == 'e' then
      if v == 1 then r = 'e' else r = 'n' end
    elseif v then
      if op == 'z' then r = 's' .. v else r = 'v' .. v end
    else
      r = 'n'
    end
  end
  if not r then
    if not notHere(err) then return err end
    r = 'x'
  end
  out[#out + 1] = r
end
return out
