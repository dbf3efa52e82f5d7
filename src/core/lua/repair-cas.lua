--[[
  repair-cas: verify --repair's compare-and-swap on a single mirror key
  (DESIGN §5). Replaces the mirror with the primary's snapshot, or deletes an
  orphan, only if the mirror is still exactly what verify saw: absent, or a
  hash with the same rev field and the same content digest. A write that
  happened after the comparison is therefore never overwritten. Stronger
  than apply-if-newer, which cannot fix a mirror with the same rev and
  different content.

  The digest is the one apply-if-newer uses: sha1 of the sorted sha1s of
  "<len(field)>:<field><value>" (src/ops/record-compare.ts recordDigest).

  KEYS[1]  mirror record hash
  KEYS[2]  (optional) v2 index: ZADD after a replace, ZREM after a delete
  ARGV[1]  'replace' or 'delete'
  ARGV[2]  expected state: 'absent' or 'hash'
  ARGV[3]  expected raw rev field ('' when the field is absent)
  ARGV[4]  expected content digest (ignored when absent)
  ARGV[5]  replace: absolute expiry in unix ms, 0 = persistent
  ARGV[6]  index score; ARGV[7] index member (job id)
  ARGV[8..] replace: field, value, ... (the primary's whole snapshot)

  Returns  1 done
           0 refused: the mirror changed since verify saw it
          -1 refused: the mirror is not a hash
]]
local function digest(list, first)
  local parts = {}
  for i = first, #list, 2 do
    parts[#parts + 1] = redis.sha1hex(string.len(list[i]) .. ':' .. list[i] .. list[i + 1])
  end
  table.sort(parts)
  return redis.sha1hex(table.concat(parts))
end

local kind = redis.call('TYPE', KEYS[1])['ok']
if ARGV[2] == 'absent' then
  if kind ~= 'none' then return 0 end
else
  if kind == 'none' then return 0 end
  if kind ~= 'hash' then return -1 end
  local rev = redis.call('HGET', KEYS[1], 'rev') or ''
  if rev ~= ARGV[3] then return 0 end
  if digest(redis.call('HGETALL', KEYS[1]), 1) ~= ARGV[4] then return 0 end
end

if ARGV[1] == 'delete' then
  redis.call('DEL', KEYS[1])
  if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[7]) end
  return 1
end

redis.call('DEL', KEYS[1])
local CHUNK = 1000
local i = 8
while i <= #ARGV do
  local last = math.min(i + CHUNK - 1, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local pexpireat = tonumber(ARGV[5])
if pexpireat and pexpireat > 0 then redis.call('PEXPIREAT', KEYS[1], pexpireat) end
if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[7]) end
return 1
