--[[
  read-snapshot: one record's fields and expiry in one atomic read, so a
  snapshot never pairs the fields of one write with the expiry of another.
  Field names and values are returned as bytes.

  KEYS[1]  record hash

  Returns  {} when the key does not exist
           { 'hash', pexpiretime, field, value, ... } for a hash
           { <type> } for a key of another type
]]
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return {} end
if kind ~= 'hash' then return { kind } end
local out = { 'hash', redis.call('PEXPIRETIME', KEYS[1]) }
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
