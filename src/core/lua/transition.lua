--[[
  transition: compare-and-set of the migration phase on its epoch (DESIGN §3).
  Fenced: a lock holder whose lease was taken over cannot move the phase.
  changed_at comes from the server clock (TIME), so every process measures the
  settle window against one clock.

  KEYS[1]  migration state hash
  ARGV[1]  expected epoch (a missing record is epoch 0)
  ARGV[2]  expected current phase (a missing record is 'legacy')
  ARGV[3]  new phase
  ARGV[4]  fence: the lock_fence this holder was issued; '' = not fenced
  ARGV[5]  changed_by
  ARGV[6]  reason
  ARGV[7]  default settle_ms, written only when the record has none
  ARGV[8..] extra field, value pairs written in the same step

  Returns  { new epoch, changed_at ms }
  Errors   'EPOCH <epoch> <phase>' when the record moved on; 'FENCED <fence>'
]]
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'phase', 'lock_fence', 'settle_ms')
local epoch = tonumber(cur[1] or '0')
local phase = cur[2] or 'legacy'
if epoch == nil then return redis.error_reply('EPOCH ' .. tostring(cur[1]) .. ' ' .. phase) end
if ARGV[4] ~= '' and tostring(cur[3]) ~= ARGV[4] then
  return redis.error_reply('FENCED ' .. tostring(cur[3]))
end
if epoch ~= tonumber(ARGV[1]) or phase ~= ARGV[2] then
  return redis.error_reply('EPOCH ' .. epoch .. ' ' .. phase)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local newEpoch = epoch + 1
redis.call('HSET', KEYS[1], 'phase', ARGV[3], 'epoch', newEpoch, 'changed_at', now,
  'changed_by', ARGV[5], 'reason', ARGV[6])
if not cur[4] then redis.call('HSET', KEYS[1], 'settle_ms', ARGV[7]) end
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return { newEpoch, now }
