--[[
  write-primary: step 1 of the write protocol (docs/design.md "The write path"). Updates the primary
  record and increments its rev in one atomic step, then returns the complete
  new snapshot and its expiry so the caller can mirror it with apply-if-newer.

  KEYS[1]  primary record hash
  KEYS[2]  (optional) v2 index sorted set, when the primary is v2 on one node
  ARGV[1]  mode: 'create' (refuse if the record exists) or 'update' (refuse if missing)
  ARGV[2]  for 'create': relative expiry in ms, 0 = persistent
  ARGV[3]  index score (created_at ms); ignored without KEYS[2]
  ARGV[4]  index member (job id); ignored without KEYS[2]
  ARGV[5]  update: the workspace the record must name ('' = not checked). A
           legacy key is not scoped, so an update of a legacy primary checks
           its owner here, in the same atomic step, instead of a read before it.
  ARGV[6..] field, value, ... to set (never 'rev')

  Returns  { rev, pexpiretime, field, value, field, value, ... }
           pexpiretime is the absolute expiry in ms, or -1 when persistent.
  Errors   'EXISTS' (create on an existing key), 'NOTFOUND' (update on a
           missing key, or on a record naming another workspace than ARGV[5]),
           'WRONGTYPE' (the key is not a hash)
]]
local kind = redis.call('TYPE', KEYS[1])['ok']
if ARGV[1] == 'create' then
  if kind ~= 'none' then return redis.error_reply('EXISTS') end
else
  if kind == 'none' then return redis.error_reply('NOTFOUND') end
  if kind ~= 'hash' then return redis.error_reply('WRONGTYPE') end
  if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'workspace_id') ~= ARGV[5] then return redis.error_reply('NOTFOUND') end
end

local CHUNK = 1000
local i = 6
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
if ARGV[1] == 'create' then
  local ttl = tonumber(ARGV[2])
  if ttl and ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end

local out = { rev, redis.call('PEXPIRETIME', KEYS[1]) }
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all do out[#out + 1] = all[j] end
return out
