--[[
  lock-renew: extends the lease only while we still own it.

  KEYS[1]  lock key
  ARGV[1]  exact lock value this holder wrote (contains its random token)
  ARGV[2]  new lease in ms

  Returns  the server time in unix ms at which the lease was extended (the
           lease now runs until that time + ARGV[2]); 0 when it was lost
           (expired or taken over)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
return 0
