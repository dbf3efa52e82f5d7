--[[
  write-job: the whole write protocol in one atomic step on a single node
  (docs/design.md "The write path"). It reads the phase from the state record
  itself, so a writer whose cached phase is stale (a GC pause, a held
  connection) can neither write the old primary nor re-create a legacy key
  after cleanup: the script routes by the phase in force when it runs.

  Routing (primary is written first with rev + 1, the mirror becomes an exact
  copy of the new primary snapshot):
    legacy      primary legacy   no mirror
    dual-write  primary legacy   mirror v2 (+ index)
    read-new    primary v2 (+ index)   mirror legacy
    new-only    primary v2 (+ index)   no mirror

  Job ids are global while the legacy layout exists: a create is refused when
  the legacy key exists, whoever owns it, in every phase, atomically with the
  create (no check-then-act race between two workspaces).

  A workspace that runs ahead of the global phase (a canary, KEYS[7]) is routed
  by its own phase: the override counts only while the global phase is
  dual-write or later and only ahead of it (src/core/phase.ts effectivePhase).

  When the state record is unusable (a phase that is not one of the four, or
  a record missing while the history stream exists: eviction), the script
  does not guess: it acts on the caller's last valid phase (ARGV[2..3]).

  KEYS[1]  migration state hash
  KEYS[2]  history stream (only its existence is read)
  KEYS[3]  legacy record  <p>:jobs:<job_id>
  KEYS[4]  v2 record      <p>:job:<workspace_id>:<job_id>
  KEYS[5]  v2 index       <p>:job-index:<workspace_id>
  KEYS[6]  pending list   <p>:queue
  KEYS[7]  per-workspace phases <p>:migration:jobs:workspaces
  ARGV[1]  'create' or 'update'
  ARGV[2]  fallback phase (the caller's last valid phase for this workspace)
  ARGV[3]  fallback epoch
  ARGV[4]  create: relative expiry in ms, 0 = persistent
  ARGV[5]  workspace id
  ARGV[6]  job id
  ARGV[7]  create: index score (created_at in ms)
  ARGV[8]  create: '1' = push a reference onto the pending list
  ARGV[9..] field, value, ... to set (never 'rev')

  Returns  { epoch, phase, rev, pexpiretime, mirror, index[, field, value, ...] }
           the fields only for an update: a create's record is exactly the
           fields given plus rev 1 (the key was absent), so they are not sent back
           mirror: 'none' (no mirror in this phase), 'applied',
                   'conflict' (a legacy mirror that names another workspace),
                   'wrongtype' (the mirror key is not a hash)
           index:  '0' fine, '1' when v2 holds the record but the index lacks it
                   (an update of a record never indexed: the caller adds it),
                   'wrongtype' when the index key is not a sorted set (left
                   alone, reported like a refused mirror)
  Errors   'EXISTS', 'NOTFOUND', 'WRONGTYPE', 'BADREV' (the primary's rev is not
           an integer), 'QUEUE_WRONGTYPE' (the pending list is not a list),
           'STATE' (no usable phase at all). Every check that can refuse runs
           before the first write: a script is not rolled back by a later error.
]]
local RANK = { legacy = 1, ['dual-write'] = 2, ['read-new'] = 3, ['new-only'] = 4 }
local st = redis.call('HMGET', KEYS[1], 'phase', 'epoch')
local phase, epoch
if st[1] and RANK[st[1]] and st[2] and tonumber(st[2]) then
  phase, epoch = st[1], tonumber(st[2])
  -- An override counts only ahead of a global phase of dual-write or later: not read in
  -- legacy, nor in new-only (nothing is ahead of it).
  if RANK[phase] >= 2 and RANK[phase] < 4 then
    local override = redis.call('HGET', KEYS[7], ARGV[5])
    if override and RANK[override] and RANK[override] >= 3 and RANK[override] > RANK[phase] then phase = override end
  end
elseif not st[2] and (st[1] == 'legacy' or (not st[1] and redis.call('EXISTS', KEYS[2]) == 0)) then
  phase, epoch = 'legacy', 0
elseif RANK[ARGV[2]] then
  phase, epoch = ARGV[2], tonumber(ARGV[3]) or 0
else
  return redis.error_reply('STATE')
end

local legacyKey, v2Key, indexKey = KEYS[3], KEYS[4], KEYS[5]
local primary, mirror = legacyKey, nil
if phase == 'dual-write' then
  mirror = v2Key
elseif phase == 'read-new' then
  primary, mirror = v2Key, legacyKey
elseif phase == 'new-only' then
  primary = v2Key
end
local ws = ARGV[5]
local create = ARGV[1] == 'create'

local kind = redis.call('TYPE', primary)['ok']
if create then
  -- TYPE already answered for the legacy key when it is the primary.
  if kind ~= 'none' or (primary ~= legacyKey and redis.call('EXISTS', legacyKey) == 1) then return redis.error_reply('EXISTS') end
else
  if kind == 'none' then return redis.error_reply('NOTFOUND') end
  if kind ~= 'hash' then return redis.error_reply('WRONGTYPE') end
  -- A legacy key is not scoped: another workspace's job there is "not found" to this one.
  if primary == legacyKey and redis.call('HGET', primary, 'workspace_id') ~= ws then return redis.error_reply('NOTFOUND') end
  local raw = redis.call('HGET', primary, 'rev')
  if raw and not string.match(raw, '^%d+$') then return redis.error_reply('BADREV') end
end

if ARGV[8] == '1' then
  local qkind = redis.call('TYPE', KEYS[6])['ok']
  if qkind ~= 'none' and qkind ~= 'list' then return redis.error_reply('QUEUE_WRONGTYPE') end
end
-- The index is written only when v2 is (the primary or an applied mirror).
local v2Touched = primary == v2Key or mirror == v2Key
local indexUsable = true
if v2Touched then
  local ikind = redis.call('TYPE', indexKey)['ok']
  indexUsable = ikind == 'none' or ikind == 'zset'
end

local CHUNK = 1000
local function hsetAll(key, flat, first)
  local i = first
  while i <= #flat do
    local last = math.min(i + CHUNK - 1, #flat)
    redis.call('HSET', key, unpack(flat, i, last))
    i = last + 1
  end
end

-- 1. The primary, with rev + 1. A create writes an absent key, so its rev is 1
-- and its snapshot is exactly the fields given: no HINCRBY, no read back.
local rev, pexpire, snap
if create then
  snap = {}
  for j = 9, #ARGV do snap[#snap + 1] = ARGV[j] end
  snap[#snap + 1] = 'rev'
  snap[#snap + 1] = '1'
  hsetAll(primary, snap, 1)
  rev = 1
  local ttl = tonumber(ARGV[4])
  if ttl and ttl > 0 then
    redis.call('PEXPIRE', primary, ttl)
    pexpire = redis.call('PEXPIRETIME', primary)
  else
    pexpire = -1
  end
else
  hsetAll(primary, ARGV, 9)
  rev = redis.call('HINCRBY', primary, 'rev', 1)
  pexpire = redis.call('PEXPIRETIME', primary)
  snap = redis.call('HGETALL', primary)
end

-- 2. The mirror becomes an exact copy of the snapshot.
local outcome = 'none'
if mirror then
  local mkind = redis.call('TYPE', mirror)['ok']
  if mkind == 'none' then
    outcome = 'applied'
  elseif mkind ~= 'hash' then
    outcome = 'wrongtype'
  elseif mirror == legacyKey and redis.call('HGET', mirror, 'workspace_id') ~= ws then
    outcome = 'conflict'
  else
    -- Whatever it held (an older rev, or a stale copy left from before a
    -- rollback), the mirror now equals the primary: nothing can interleave here.
    redis.call('DEL', mirror)
    outcome = 'applied'
  end
  if outcome == 'applied' then
    hsetAll(mirror, snap, 1)
    if pexpire > 0 then redis.call('PEXPIREAT', mirror, pexpire) end
  end
end

-- 3. The index follows the v2 record.
local v2Written = primary == v2Key or outcome == 'applied'
local indexMissing = '0'
if v2Written and not indexUsable then
  indexMissing = 'wrongtype'
elseif v2Written then
  if create then
    redis.call('ZADD', indexKey, ARGV[7], ARGV[6])
  elseif not redis.call('ZSCORE', indexKey, ARGV[6]) then
    indexMissing = '1'
  end
end

-- 4. The pending reference, after the record exists (a worker never pops a dangling one).
if ARGV[8] == '1' then
  local ref = ARGV[6]
  if phase ~= 'legacy' then ref = ws .. ':' .. ARGV[6] end
  redis.call('RPUSH', KEYS[6], ref)
end

local out = { epoch, phase, rev, pexpire, outcome, indexMissing }
-- A create's record is the caller's fields plus rev 1: not sent back.
if not create then
  for j = 1, #snap do out[#out + 1] = snap[j] end
end
return out
