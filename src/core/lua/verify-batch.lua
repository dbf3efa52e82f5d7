--[[
  verify-batch: server-side prefilter of verify's legacy → v2 pass on a single
  node. For each pair it answers "identical" or "suspect" without shipping the
  records to the client; the client fetches and classifies only the suspects
  (src/ops/record-compare.ts is the authority on what a mismatch is). Fields
  are compared as byte strings, expiries with a tolerance, and the index entry
  against the score the client computed from created_at. Equal DUMP payloads
  (COPY keeps encoding and field order) prove equal content without building
  Lua tables; only when they differ are the field maps compared. The index
  entries of a batch are read with one ZMSCORE per index instead of one
  ZSCORE per pair: every call from Lua has a fixed cost of a few µs, and a
  batch holds many jobs of each workspace.

  KEYS     per pair: legacy record, v2 record; then the distinct v2 indexes
  ARGV[1]  expiry tolerance in ms
  ARGV[2]  number of pairs (P)
  ARGV     then per pair: index member (job id), expected index score,
           position of its index among the indexes (1-based)

  Returns  one code per pair: 0 identical (fields, expiry, index), 1 suspect
]]
local tol = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
-- Per index position: the pairs still identical, to read their entries in one call.
local groups = {}
local order = {}
for i = 1, n do
  local a, b = KEYS[i * 2 - 1], KEYS[i * 2]
  local code = 0
  -- DUMP works on any type and a hash never dumps equal to another type, so
  -- equal payloads prove both are hashes with equal content.
  local da = redis.call('DUMP', a)
  if not da or da ~= redis.call('DUMP', b) then
    local fa = redis.pcall('HGETALL', a)
    local fb = redis.pcall('HGETALL', b)
    if fa.err or fb.err or #fa == 0 or #fa ~= #fb then
      code = 1
    else
      local m = {}
      for j = 1, #fa, 2 do m[fa[j]] = fa[j + 1] end
      for j = 1, #fb, 2 do
        if m[fb[j]] ~= fb[j + 1] then
          code = 1
          break
        end
      end
    end
  end
  if code == 0 then
    local ea = redis.call('PEXPIRETIME', a)
    local eb = redis.call('PEXPIRETIME', b)
    if (ea < 0) ~= (eb < 0) or math.abs(ea - eb) > tol then code = 1 end
  end
  if code == 0 then
    local ix = ARGV[i * 3 + 2]
    local g = groups[ix]
    if not g then
      g = {}
      groups[ix] = g
      order[#order + 1] = ix
    end
    g[#g + 1] = i
  end
  out[i] = code
end
-- unpack() is bounded by the Lua C stack: read at most this many members per call.
local CHUNK = 1000
for _, ix in ipairs(order) do
  local g = groups[ix]
  local idx = KEYS[2 * n + tonumber(ix)]
  local k = 1
  while k <= #g do
    local last = math.min(k + CHUNK - 1, #g)
    local members = {}
    for j = k, last do members[#members + 1] = ARGV[g[j] * 3] end
    local scores = redis.pcall('ZMSCORE', idx, unpack(members))
    for j = k, last do
      local i = g[j]
      -- An index of another type answers an error: every pair of it is a suspect.
      local score = (not scores.err) and scores[j - k + 1]
      if type(score) ~= 'string' or tonumber(score) ~= tonumber(ARGV[i * 3 + 1]) then out[i] = 1 end
    end
    k = last + 1
  end
end
return out
