--[[
  verify-batch: server-side prefilter of verify's legacy → v2 pass on a single
  node. For each pair it answers "identical" or "suspect" without shipping the
  records to the client; the client fetches and classifies only the suspects
  (src/ops/record-compare.ts is the authority on what a mismatch is). Fields
  are compared as byte strings; expiries with a tolerance.

  KEYS     per pair: legacy record, v2 record
  ARGV[1]  expiry tolerance in ms

  Returns  one code per pair: 0 identical (fields and expiry), 1 suspect
]]
local tol = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  local a, b = KEYS[i], KEYS[i + 1]
  local code = 0
  if redis.call('TYPE', b)['ok'] ~= 'hash' or redis.call('TYPE', a)['ok'] ~= 'hash' then
    code = 1
  else
    local fa = redis.call('HGETALL', a)
    local fb = redis.call('HGETALL', b)
    if #fa ~= #fb then
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
    if code == 0 then
      local ea = redis.call('PEXPIRETIME', a)
      local eb = redis.call('PEXPIRETIME', b)
      if (ea < 0) ~= (eb < 0) or math.abs(ea - eb) > tol then code = 1 end
    end
  end
  out[#out + 1] = code
end
return out
