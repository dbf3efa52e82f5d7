--[[
  backfill-batch: one round trip for a whole SCAN batch on a single node
  (DESIGN §4 "fast path"). For each item it either
    - COPYs the source to the absent target (COPY without REPLACE: an atomic
      create-if-absent that keeps the value bytes and the TTL), or
    - decides that the target already holds this record or a newer one, or
    - hands the item back to the caller, which moves it with apply-if-newer
      (src/core/protocol.ts): an existing target is never written here.
  The index entry is ZADDed whenever the target holds the record afterwards
  (idempotent, like apply-if-newer does), one ZADD per index key per batch.
  Values are never decoded.

  KEYS     per item: source record, target record[, target index]
  ARGV[1]  stride: 2 (no index, reverse backfill) or 3 (with index)
  ARGV[2]  '1' = dry run: write nothing, only classify
  ARGV[3..] per item with stride 3: index score, index member (job id)

  Returns  one code per item:
            1  copied (dry run: would copy)
            0  skipped: the target holds the same content or a higher rev
            2  the target is older or differs at the same rev: caller applies
               apply-if-newer
           -1  the target exists and is not a hash (never touched)
           -2  the target's rev is not an integer (never touched)
           -3  the source vanished (expired or deleted since SCAN)
           -4  the source's rev is not an integer
]]
local stride = tonumber(ARGV[1])
local dry = ARGV[2] == '1'
local n = #KEYS / stride
local out = {}
local pending = {}
local order = {}

local function revOf(key)
  local raw = redis.call('HGET', key, 'rev')
  if not raw then return 0 end
  return tonumber(raw)
end

local function sameContent(a, b)
  -- Equal DUMP payloads are equal content (COPY keeps encoding and order).
  if redis.call('DUMP', a) == redis.call('DUMP', b) then return true end
  local fa = redis.call('HGETALL', a)
  local fb = redis.call('HGETALL', b)
  if #fa ~= #fb then return false end
  local m = {}
  for i = 1, #fa, 2 do m[fa[i]] = fa[i + 1] end
  for i = 1, #fb, 2 do
    if m[fb[i]] ~= fb[i + 1] then return false end
  end
  return true
end

for i = 1, n do
  local base = (i - 1) * stride
  local src, dst = KEYS[base + 1], KEYS[base + 2]
  local idx = nil
  if stride == 3 then idx = KEYS[base + 3] end
  local code
  -- COPY without REPLACE is the create-if-absent; it answers 0 when the
  -- target exists or the source is gone, and only then do we look closer.
  local copied = 0
  if not dry then copied = redis.call('COPY', src, dst) end
  if copied == 1 then
    code = 1
  elseif redis.call('EXISTS', dst) == 0 then
    if redis.call('EXISTS', src) == 0 then code = -3 else code = 1 end
  else
    local kind = redis.call('TYPE', dst)['ok']
    if kind ~= 'hash' then
      code = -1
    elseif redis.call('EXISTS', src) == 0 then
      code = -3
    else
      local dstRev = revOf(dst)
      local srcRev = revOf(src)
      if dstRev == nil then
        code = -2
      elseif srcRev == nil then
        code = -4
      elseif dstRev > srcRev then
        code = 0
      elseif dstRev == srcRev and sameContent(src, dst) then
        code = 0
      else
        code = 2
      end
    end
  end
  if idx and not dry and (code == 1 or code == 0) then
    local j = (i - 1) * 2 + 3
    local list = pending[idx]
    if not list then
      list = {}
      pending[idx] = list
      order[#order + 1] = idx
    end
    list[#list + 1] = ARGV[j]
    list[#list + 1] = ARGV[j + 1]
  end
  out[i] = code
end
for _, idx in ipairs(order) do
  local list = pending[idx]
  local CHUNK = 1000
  local k = 1
  while k <= #list do
    local last = math.min(k + CHUNK - 1, #list)
    redis.call('ZADD', idx, unpack(list, k, last))
    k = last + 1
  end
end
return out
