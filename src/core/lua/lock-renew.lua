--[[
  lock-renew: extends one holder's lease only while it still owns it: its
  entry holds its token and its deadline has not passed (an entry past its
  deadline is gone even if another holder kept the key alive).

  KEYS[1]  lock key (hash, see lock-acquire.lua)
  ARGV[1]  holder ('global' or 'shard:<i>/<n>')
  ARGV[2]  token this holder wrote
  ARGV[3]  new lease in ms

  Returns  the server time in unix ms at which the lease was extended (the
           lease now runs until that time + ARGV[3]); 0 when it was lost
           (expired, deleted or taken over)
]]
local v = redis.pcall('HGET', KEYS[1], ARGV[1])
if type(v) ~= 'string' then return 0 end
local d, tok, info = string.match(v, '^(%d+):(%x+):(.*)$')
if tok == nil or tok ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(d) < now then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], (now + ttl) .. ':' .. tok .. ':' .. info)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return now
