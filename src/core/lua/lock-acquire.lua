--[[
  lock-acquire: takes one holder's lease in the operator lock, atomically
  against every other holder (docs/design.md "Every mutation of a run is
  fenced by its lock"). The lock is one hash, so this check-and-take is one
  step on one node, on a cluster too:
    field  the holder: 'global', or 'shard:<i>/<n>' (backfill --shard i/n)
    value  '<deadline>:<token>:<holder JSON>', the deadline in unix ms on
           this server's clock; a holder past its deadline is gone (removed
           here), whether or not the key has expired yet.
  'global' excludes every other holder. A shard excludes 'global', itself,
  and shards of another count (0/2 and 0/3 would scan overlapping masters).
  The key expires with its last live holder.

  KEYS[1]  lock key
  ARGV[1]  holder ('global' or 'shard:<i>/<n>')
  ARGV[2]  token (hex)
  ARGV[3]  lease in ms
  ARGV[4]  holder JSON (user, host, pid, command, since, actor, ttlMs)

  Returns  {1, server time ms} when taken; {0, holder, entry, remaining ms}
           when refused: the live holder in the way and its entry. A string
           key is a lock an older orch-migrate took (SET NX PX): holder
           'legacy', entry its value.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'string' then
  return {0, 'legacy', redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
end
if kind ~= 'none' and kind ~= 'hash' then
  return {0, 'wrongtype', kind, redis.call('PTTL', KEYS[1])}
end

local function countOf(h)
  return string.match(h, '^shard:%d+/(%d+)$')
end
local me = ARGV[1]
local mine = countOf(me)
local latest = now + ttl
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local h, v = flat[i], flat[i + 1]
  local d = tonumber(string.match(v, '^(%d+):'))
  if d == nil or d < now then
    redis.call('HDEL', KEYS[1], h)
  elseif me == 'global' or h == 'global' or h == me or countOf(h) ~= mine then
    return {0, h, v, d - now}
  elseif d > latest then
    latest = d
  end
end
redis.call('HSET', KEYS[1], me, (now + ttl) .. ':' .. ARGV[2] .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], latest - now)
return {1, now}
