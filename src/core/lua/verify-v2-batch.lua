--[[
  verify-v2-batch: server-side facts for verify's v2 → legacy pass on a single
  node, one call per SCAN batch. This pass finds what only it can: orphans
  (a v2 record its legacy key does not back) and v2 keys of another type.
  A v2 key whose legacy record names its workspace is backed: the legacy →
  v2 pass compares that pair whole (type, bytes, expiry, index), so it is
  not looked at again here.

  KEYS     per item: v2 record, legacy record
  ARGV     per item: the workspace the v2 key names

  Returns  one string per item:
             'b'       backed: the legacy record names this workspace
             'n'       the v2 key no longer exists
             'h'       a hash the legacy record does not back
             <type>    the v2 key is of another type (never 'b', 'n' or 'h')
]]
local out = {}
for i = 1, #KEYS / 2 do
  local v2, legacy = KEYS[i * 2 - 1], KEYS[i * 2]
  local lw = redis.pcall('HGET', legacy, 'workspace_id')
  if type(lw) == 'string' and lw == ARGV[i] then
    out[i] = 'b'
  else
    local kind = redis.call('TYPE', v2)['ok']
    if kind == 'none' then
      out[i] = 'n'
    elseif kind == 'hash' then
      out[i] = 'h'
    else
      out[i] = kind
    end
  end
end
return out
