--[[
  lock-fence: issues the fence of a holder that has just taken its lease.
  Every acquisition bumps lock_fence, so a global holder's fence is valid
  while lock_fence still equals it (a later acquisition of any kind means its
  lease had gone). A shard's fence is also kept under its holder in
  shard_fences (JSON holder → fence): valid while that entry equals it. A
  global acquisition drops every shard's, so a shard paused past its lease
  cannot write once a global run has taken over; another shard taking over
  the same holder replaces it.

  KEYS[1]  migration state hash
  ARGV[1]  holder ('global' or 'shard:<i>/<n>')

  Returns  the fence
]]
local f = redis.call('HINCRBY', KEYS[1], 'lock_fence', 1)
if ARGV[1] == 'global' then
  redis.call('HDEL', KEYS[1], 'shard_fences')
  return f
end
local fences = {}
local raw = redis.call('HGET', KEYS[1], 'shard_fences')
if raw then
  local ok, v = pcall(cjson.decode, raw)
  if ok and type(v) == 'table' then fences = v end
end
fences[ARGV[1]] = f
redis.call('HSET', KEYS[1], 'shard_fences', cjson.encode(fences))
return f
