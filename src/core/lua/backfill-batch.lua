--[[
  backfill-batch: one round trip for a whole SCAN batch on a single node,
  forward (legacy → v2, with the index) or reverse (v2 → legacy). For each
  item it either creates the absent target with COPY (an atomic
  create-if-absent that keeps the value bytes and the TTL), or decides what an
  existing target gets, by who is the primary:
    mode 'source': the source is the primary (forward in dual-write, reverse
      in read-new). Where the target differs from it in any way, content or
      expiry, whatever its rev, COPY … REPLACE makes it an exact copy. Copies
      left from before a rollback can hold the same rev as a legacy record
      changed by a writer that does not bump rev: the primary wins. Reading
      the source and writing the target in one script leaves no window for a
      live write to fall between them.
    mode 'target': the target is the primary (forward in read-new): an
      existing target is never written.
  A target that names another workspace is never touched (legacy keys are
  global: that is another tenant's job with the same id). Nothing is written
  unless the run still holds the operator lock.

  KEYS[1]  the operator lock
  KEYS     then per item: source record, target record[, target index]
  ARGV[1]  lock value ('' = unlocked: only a dry run)
  ARGV[2]  stride: 2 (no index) or 3 (with index)
  ARGV[3]  '1' = dry run: write nothing, only classify
  ARGV     then per item: workspace id, mode ('source' or 'target': by the
           phase of that workspace, which may be a canary's)[, index score,
           index member (job id)]

  Returns  one code per item:
            1  copied into an absent target (dry run: would be)
            2  replaced a target that differed (mode 'source'; dry run: would be)
            0  skipped: the target already equals the source (or, in mode
               'target', exists)
           -1  the target exists and is not a hash (never touched)
           -2  the target's rev is not an integer (mode 'target': never touched)
           -3  the source vanished (expired or deleted since SCAN)
           -4  the source's rev is not an integer
           -5  the target names another workspace: an id conflict (never touched)
  Errors   'FENCED lock' when the run no longer holds the lock
]]
--- @include "includes/holds-lock"

if not holdsLock(KEYS[1], ARGV[1]) then return redis.error_reply('FENCED lock') end
local stride = tonumber(ARGV[2])
local dry = ARGV[3] == '1'
-- Per item: the workspace and the mode, then with the index its score and member.
local argStride = 2
if stride == 3 then argStride = 4 end
local n = (#KEYS - 1) / stride
local out = {}
local pending = {}
local order = {}

local function validRev(key)
  local raw = redis.call('HGET', key, 'rev')
  return not raw or string.match(raw, '^%d+$') ~= nil
end

local function sameRecord(a, b)
  if redis.call('PEXPIRETIME', a) ~= redis.call('PEXPIRETIME', b) then return false end
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
  local base = 1 + (i - 1) * stride
  local src, dst = KEYS[base + 1], KEYS[base + 2]
  local idx = nil
  if stride == 3 then idx = KEYS[base + 3] end
  local a = 3 + (i - 1) * argStride
  local ws = ARGV[a + 1]
  local sourceWins = ARGV[a + 2] == 'source'
  local code
  local copied = 0
  if not dry and redis.call('EXISTS', src) == 1 and validRev(src) then copied = redis.call('COPY', src, dst) end
  if copied == 1 then
    code = 1
  elseif redis.call('EXISTS', src) == 0 then
    code = -3
  elseif not validRev(src) then
    code = -4
  elseif redis.call('EXISTS', dst) == 0 then
    code = 1
  elseif redis.call('TYPE', dst)['ok'] ~= 'hash' then
    code = -1
  else
    local owner = redis.call('HGET', dst, 'workspace_id')
    if owner and owner ~= ws then
      code = -5
    elseif sameRecord(src, dst) then
      code = 0
    elseif not sourceWins then
      if validRev(dst) then code = 0 else code = -2 end
    else
      if not dry then redis.call('COPY', src, dst, 'REPLACE') end
      code = 2
    end
  end
  if idx and not dry and code >= 0 then
    local list = pending[idx]
    if not list then
      list = {}
      pending[idx] = list
      order[#order + 1] = idx
    end
    list[#list + 1] = ARGV[a + 3]
    list[#list + 1] = ARGV[a + 4]
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
