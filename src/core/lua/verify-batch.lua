--[[
  verify-batch: server-side prefilter of verify's legacy → v2 pass on a single
  node. For each pair it answers "identical" or "suspect" without shipping the
  records to the client; the client fetches and classifies only the suspects
  (src/ops/record-compare.ts is the authority on what a mismatch is). Fields
  are compared as byte strings, expiries with a tolerance, and the index entry
  against the score the client computed from created_at. Equal DUMP payloads
  (COPY keeps encoding and field order) prove equal content without building
  Lua tables; only when they differ are the field maps compared.

  KEYS     per pair: legacy record, v2 record, v2 index
  ARGV[1]  expiry tolerance in ms
  ARGV     then per pair: index member (job id), expected index score

  Returns  one code per pair: 0 identical (fields, expiry, index), 1 suspect
]]
local tol = tonumber(ARGV[1])
local out = {}
local n = #KEYS / 3
for i = 1, n do
  local a, b, idx = KEYS[i * 3 - 2], KEYS[i * 3 - 1], KEYS[i * 3]
  local member, expected = ARGV[i * 2], ARGV[i * 2 + 1]
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
    local score = redis.pcall('ZSCORE', idx, member)
    if type(score) ~= 'string' or tonumber(score) ~= tonumber(expected) then code = 1 end
  end
  out[i] = code
end
return out
