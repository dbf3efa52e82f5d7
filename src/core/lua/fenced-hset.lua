--[[
  fenced-hset: writes fields of the migration state record on behalf of a lock
  holder, refusing when the holder's fence is no longer current.

  KEYS[1]  migration state hash
  ARGV[1]  fence issued to this holder ('' = not fenced)
  ARGV[2..] field, value, field, value, ...

  Returns  1
  Errors   'FENCED <current fence>'
]]
if ARGV[1] ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'lock_fence')
  if tostring(cur) ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(cur)) end
end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
