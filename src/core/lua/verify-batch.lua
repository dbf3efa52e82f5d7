--[[
  verify-batch: verify's legacy → v2 pass on a single node, one call per batch
  of legacy keys. Per legacy record it reads the fields the client's verdict
  needs and compares the record with the v2 record they name, server-side,
  without shipping records to the client: the client decides everything from
  the reply (unmigratable records, scope, the index score against created_at)
  and reads whole only the pairs not proven equal (src/ops/record-compare.ts
  is the authority on what a mismatch is). Reading the fields and comparing in
  one script makes the proof atomic and saves a script and a call per key.

  Equal DUMP payloads (COPY keeps encoding and field order) prove equal content
  without building Lua tables; only when they differ are the field maps
  compared. Expiries are compared with a tolerance. The index entries of a
  batch are read with one ZMSCORE per index: every call from Lua has a fixed
  cost of about a µs, and a batch holds many jobs of each workspace.

  Read-only, and it reads keys it does not declare: each record's v2 key and
  its workspace's index, named from the record's workspace_id (allowed on a
  single node; docs/design.md, "Verify"). A workspace_id the client rejects
  (':' or '*' inside, say) only makes it read some other key, and the client
  reports that record unmigratable whatever this reply says.

  KEYS      the legacy records
  ARGV[1]   expiry tolerance in ms
  ARGV[2]   the legacy key head (`<p>:jobs:`): the job id is the rest of the key
  ARGV[3]   the v2 key head (`<p>:job:`): the v2 key is head .. workspace_id .. ':' .. job id
  ARGV[4]   the index key head (`<p>:job-index:`): the index is head .. workspace_id
  ARGV[5-7] the field names workspace_id, rev, created_at
  ARGV[8..] the workspaces in scope (none: all); a record of another is not compared

  Returns   one string per key:
              'n'                   the key does not exist
              't' .. <type>         the key is not a hash
              'h', the three fields (per field '-' when absent, else <byte length> ':' <value>), then
                'e' .. <score>      content and expiry equal to the v2 record's, and the job's score in
                                    the index (empty: no entry, or the index is not a sorted set)
                'd'                 anything else: they differ, or the pair was not compared
]]
local tol = tonumber(ARGV[1])
local skip = #ARGV[2] + 1
local v2Head, indexHead = ARGV[3], ARGV[4]
local f1, f2, f3 = ARGV[5], ARGV[6], ARGV[7]
local scope = nil
if #ARGV > 7 then
  scope = {}
  for j = 8, #ARGV do scope[ARGV[j]] = true end
end

-- Whether two existing keys hold equal hashes with expiries within the tolerance.
local function same(a, b)
  -- DUMP works on any type and a hash never dumps equal to another type, so
  -- equal payloads prove both are hashes with equal content.
  if redis.call('DUMP', a) ~= redis.call('DUMP', b) then
    local fa = redis.pcall('HGETALL', a)
    local fb = redis.pcall('HGETALL', b)
    if fa.err or fb.err or #fa == 0 or #fa ~= #fb then return false end
    local m = {}
    for j = 1, #fa, 2 do m[fa[j]] = fa[j + 1] end
    for j = 1, #fb, 2 do
      if m[fb[j]] ~= fb[j + 1] then return false end
    end
  end
  local ea = redis.call('PEXPIRETIME', a)
  local eb = redis.call('PEXPIRETIME', b)
  return (ea < 0) == (eb < 0) and math.abs(ea - eb) <= tol
end

local function field(v)
  if v then return #v .. ':' .. v end
  return '-'
end

local out = {}
-- Per workspace: the keys whose pair is equal so far, to read their index entries in one call.
local groups = {}
local order = {}
for i = 1, #KEYS do
  local a = KEYS[i]
  local vals = redis.pcall('HMGET', a, f1, f2, f3)
  if vals.err then
    out[i] = 't' .. redis.call('TYPE', a)['ok']
  elseif not (vals[1] or vals[2] or vals[3]) and redis.call('EXISTS', a) == 0 then
    out[i] = 'n'
  else
    local ws = vals[1]
    local row = 'h' .. field(ws) .. field(vals[2]) .. field(vals[3])
    if ws and (scope == nil or scope[ws]) and same(a, v2Head .. ws .. ':' .. string.sub(a, skip)) then
      local g = groups[ws]
      if not g then
        g = {}
        groups[ws] = g
        order[#order + 1] = ws
      end
      g[#g + 1] = i
      out[i] = row .. 'e'
    else
      out[i] = row .. 'd'
    end
  end
end
-- unpack() is bounded by the Lua C stack: read at most this many members per call.
local CHUNK = 1000
for _, ws in ipairs(order) do
  local g = groups[ws]
  local idx = indexHead .. ws
  local k = 1
  while k <= #g do
    local last = math.min(k + CHUNK - 1, #g)
    local members = {}
    for j = k, last do members[#members + 1] = string.sub(KEYS[g[j]], skip) end
    local scores = redis.pcall('ZMSCORE', idx, unpack(members))
    -- An index of another type answers an error: no score for any of its pairs.
    if not scores.err then
      for j = k, last do
        local score = scores[j - k + 1]
        if type(score) == 'string' then out[g[j]] = out[g[j]] .. score end
      end
    end
    k = last + 1
  end
end
return out
