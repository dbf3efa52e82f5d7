--[[
  verify-v2-batch: server-side facts for verify's v2 → legacy pass on a single
  node, one call per SCAN batch: is the v2 key a hash, and which workspace
  does the legacy record of the same job name? (Content and index are checked
  from the legacy side; this pass finds what only it can: orphans and keys of
  another type.)

  KEYS     per item: v2 record, legacy record

  Returns  2 entries per item:
           the v2 key's kind ('hash', 'none', or its type),
           the legacy record's workspace_id (nil when absent or not a hash)
]]
local out = {}
for i = 1, #KEYS, 2 do
  local v2, legacy = KEYS[i], KEYS[i + 1]
  local len = redis.pcall('HLEN', v2)
  if type(len) == 'table' then
    out[#out + 1] = redis.call('TYPE', v2)['ok']
    out[#out + 1] = false
  elseif len == 0 then
    out[#out + 1] = 'none'
    out[#out + 1] = false
  else
    out[#out + 1] = 'hash'
    local lw = redis.pcall('HGET', legacy, 'workspace_id')
    if type(lw) ~= 'string' then lw = false end
    out[#out + 1] = lw
  end
end
return out
