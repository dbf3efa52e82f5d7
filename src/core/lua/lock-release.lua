--[[
  lock-release: compare-and-delete of one holder's entry, so a holder never
  frees a lease that another run has taken over after ours expired (an
  emptied hash disappears by itself).

  KEYS[1]  lock key (hash, see lock-acquire.lua)
  ARGV[1]  holder ('global' or 'shard:<i>/<n>')
  ARGV[2]  token this holder wrote

  Returns  1 released, 0 not ours (already expired or taken over)
]]
local v = redis.pcall('HGET', KEYS[1], ARGV[1])
if type(v) ~= 'string' then return 0 end
if string.match(v, '^%d+:(%x+):') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
