--[[
  repair-cas: verify --repair's compare-and-swap on a single mirror key.
  Replaces the mirror with the primary's snapshot, or deletes an orphan, only
  if the mirror is still exactly what verify saw: absent, or a hash with the
  same rev field and the same content digest. A write that happened after the
  comparison is therefore never overwritten. Stronger than apply-if-newer,
  which cannot fix a mirror with the same rev and different content.

  It never replaces a record that names another workspace: legacy keys are
  global, so such a record is another tenant's job (an id conflict), not a
  stale copy of this one.

  KEYS[1]  mirror record hash
  KEYS[2..] the optional keys ARGV[1] names, in this order:
           'i' the v2 index (ZADD after a replace, ZREM after a delete)
           'l' the operator lock (the run must still hold it)
  ARGV[1]  roles of KEYS[2..]: '', 'i', 'l' or 'il'; or 'd' alone (a
           cluster, where the lock key is in another slot): ARGV[2] is then
           the run's lease deadline in server unix ms instead
  ARGV[2]  lock value ('' without 'l'), or the lease deadline with 'd'
  ARGV[3]  'replace' or 'delete'
  ARGV[4]  expected state: 'absent' or 'hash'
  ARGV[5]  expected raw rev field ('' when the field is absent)
  ARGV[6]  expected content digest (ignored when absent)
  ARGV[7]  replace: absolute expiry in unix ms, 0 = persistent
  ARGV[8]  index score; ARGV[9] index member (job id)
  ARGV[10] workspace the replacement belongs to ('' = no owner check)
  ARGV[11..] replace: field, value, ... (the primary's whole snapshot)

  Returns  1 done
           0 refused: the mirror changed since verify saw it
          -1 refused: the mirror is not a hash
          -2 refused: the mirror names another workspace (id conflict)
  Errors   'FENCED lock' when the run no longer holds the lock, or is past
           its lease deadline
]]
--- @include "includes/digest"
--- @include "includes/holds-lock"
--- @include "includes/within-lease"

local roles = ARGV[1]
local indexKey, lockKey = nil, nil
local k = 2
if string.find(roles, 'i', 1, true) then
  indexKey = KEYS[k]
  k = k + 1
end
if string.find(roles, 'l', 1, true) then lockKey = KEYS[k] end
if lockKey and not holdsLock(lockKey, ARGV[2]) then return redis.error_reply('FENCED lock') end
if roles == 'd' and not withinLease(ARGV[2]) then return redis.error_reply('FENCED lock') end

local kind = redis.call('TYPE', KEYS[1])['ok']
if ARGV[4] == 'absent' then
  if kind ~= 'none' then return 0 end
else
  if kind == 'none' then return 0 end
  if kind ~= 'hash' then return -1 end
  local rev = redis.call('HGET', KEYS[1], 'rev') or ''
  if rev ~= ARGV[5] then return 0 end
  if digest(redis.call('HGETALL', KEYS[1]), 1) ~= ARGV[6] then return 0 end
end

if ARGV[3] == 'delete' then
  redis.call('DEL', KEYS[1])
  if indexKey then redis.call('ZREM', indexKey, ARGV[9]) end
  return 1
end

if kind == 'hash' and ARGV[10] ~= '' then
  local owner = redis.call('HGET', KEYS[1], 'workspace_id')
  if owner and owner ~= ARGV[10] then return -2 end
end
redis.call('DEL', KEYS[1])
local CHUNK = 1000
local i = 11
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local pexpireat = tonumber(ARGV[7])
if pexpireat and pexpireat > 0 then redis.call('PEXPIREAT', KEYS[1], pexpireat) end
if indexKey then redis.call('ZADD', indexKey, ARGV[8], ARGV[9]) end
return 1
