--[[
  lock-renew: extends the lease only while we still own it.

  KEYS[1]  lock key
  ARGV[1]  exact lock value this holder wrote (contains its random token)
  ARGV[2]  new lease in ms

  Returns  1 renewed, 0 lost (expired or taken over)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
