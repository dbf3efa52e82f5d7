--[[
  apply-if-newer: the one way data reaches a mirror (docs/design.md "One way into a mirror").

  Replaces the target hash with a full snapshot, but only when the target is
  absent, or holds a lower rev, or holds the same rev with a smaller content
  digest. Ties on rev happen only when two writers used different primaries
  during a settle window; the digest breaks the tie the same way on every node,
  so both layouts converge on one snapshot. Values are never decoded: Lua
  strings are byte strings.

  KEYS[1]  target record hash
  KEYS[2]  (optional) v2 index sorted set; ZADD <score> <member> after the write
  ARGV[1]  snapshot rev (integer; a record with no rev field is rev 0)
  ARGV[2]  absolute expiry in unix ms (PEXPIREAT); 0 or negative = persistent
  ARGV[3]  index score (created_at in ms); ignored without KEYS[2]
  ARGV[4]  index member (job id); ignored without KEYS[2]
  ARGV[5..] field, value, field, value, ... (the whole snapshot, rev included)

  Returns  1 applied
           0 skipped: the target is newer, or identical
          -1 refused: the target exists and is not a hash
          -2 refused: the target's rev field is not an integer
          -3 refused: the target belongs to another workspace (legacy keys are
             not scoped, so two workspaces' jobs with one id would collide)
]]
local newRev = tonumber(ARGV[1])
local FIRST = 5

--- @include "includes/digest"

local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' then
  if kind ~= 'hash' then return -1 end
  local owner = redis.call('HGET', KEYS[1], 'workspace_id')
  if owner then
    for i = FIRST, #ARGV, 2 do
      if ARGV[i] == 'workspace_id' and ARGV[i + 1] ~= owner then return -3 end
    end
  end
  local raw = redis.call('HGET', KEYS[1], 'rev')
  local curRev = 0
  if raw then
    curRev = tonumber(raw)
    if curRev == nil then return -2 end
  end
  local skip = false
  if curRev > newRev then
    skip = true
  elseif curRev == newRev then
    skip = digest(redis.call('HGETALL', KEYS[1]), 1) >= digest(ARGV, FIRST)
  end
  if skip then
    if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
    return 0
  end
  redis.call('DEL', KEYS[1])
end

-- HSET in chunks: unpack() of a huge snapshot would overflow the Lua C stack.
local CHUNK = 1000
local i = FIRST
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local pexpireat = tonumber(ARGV[2])
if pexpireat and pexpireat > 0 then redis.call('PEXPIREAT', KEYS[1], pexpireat) end
if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
return 1
