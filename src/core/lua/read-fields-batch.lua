--[[
  read-fields-batch: reads a few fields of many keys in one call (single node
  only), so a SCAN batch of 1000 records costs one command instead of 1000
  HMGETs. Keys of another type are reported by type instead of failing the call.

  KEYS     the records
  ARGV     the field names to read (F of them)

  Returns  a flat array, 1 + F entries per key: a kind ('hash', 'none', or the
           key's type when it is not a hash) followed by the F values (nil when
           the field is absent or the key is not a hash)
]]
local out = {}
local nf = #ARGV
for i = 1, #KEYS do
  local base = (i - 1) * (nf + 1)
  local vals = redis.pcall('HMGET', KEYS[i], unpack(ARGV))
  if vals.err then
    out[base + 1] = redis.call('TYPE', KEYS[i])['ok']
    for j = 1, nf do out[base + 1 + j] = false end
  else
    local any = false
    for j = 1, nf do
      out[base + 1 + j] = vals[j]
      if vals[j] then any = true end
    end
    if any or redis.call('EXISTS', KEYS[i]) == 1 then
      out[base + 1] = 'hash'
    else
      out[base + 1] = 'none'
    end
  end
end
return out
