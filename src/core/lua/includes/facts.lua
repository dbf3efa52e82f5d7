-- One key reduced to its facts (record-facts.lua's reply string: 'n', 't' ..
-- <type>, or 'h' <40 hex digest> <PEXPIRETIME> ':' and the fields), shared by
-- record-facts.lua and xslot-probe.lua. Needs includes/digest first. The DUMP
-- is sent with pcall: when Redis refuses it, returns nil and the error reply
-- (a key this node does not serve, in a cross-slot call), for the caller to
-- answer.
local function keyFacts(key, mode, fields)
  -- DUMP answers for any type (nil when absent); the hash read after it tells a hash from another type.
  local payload = redis.pcall('DUMP', key)
  if type(payload) == 'table' and payload.err then return nil, payload end
  if not payload then return 'n' end
  local nf = #fields
  local probe
  if nf > 0 then probe = redis.pcall('HMGET', key, unpack(fields)) else probe = redis.pcall('HLEN', key) end
  if type(probe) == 'table' and probe.err then return 't' .. redis.call('TYPE', key)['ok'] end
  local d
  if mode == 'content' then d = digest(redis.call('HGETALL', key), 1) else d = redis.sha1hex(payload) end
  local parts = { 'h', d, redis.call('PEXPIRETIME', key), ':' }
  for j = 1, nf do
    local v = probe[j]
    if v then parts[#parts + 1] = #v .. ':' .. v else parts[#parts + 1] = '-' end
  end
  return table.concat(parts)
end
