--[[
  fenced-hset: writes fields of the migration state record on behalf of a lock
  holder, refusing when the holder's fence is no longer current.

  KEYS[1]  migration state hash
  ARGV[1]  fence issued to this holder: '<n>' for the global holder (current
           while lock_fence equals it), '<n>@shard:<i>/<n>' for a shard
           (current while shard_fences names it for that shard; see
           lock-fence.lua); '' = not fenced
  ARGV[2..] field, value, field, value, ...

  Returns  1
  Errors   'FENCED <current fence>'
]]
if ARGV[1] ~= '' then
  local f, holder = string.match(ARGV[1], '^(%d+)@(.+)$')
  if f then
    local cur = nil
    local raw = redis.call('HGET', KEYS[1], 'shard_fences')
    if raw then
      local ok, v = pcall(cjson.decode, raw)
      if ok and type(v) == 'table' and v[holder] ~= nil then cur = string.format('%d', v[holder]) end
    end
    if cur ~= f then return redis.error_reply('FENCED ' .. tostring(cur)) end
  else
    local cur = redis.call('HGET', KEYS[1], 'lock_fence')
    if tostring(cur) ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(cur)) end
  end
end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
