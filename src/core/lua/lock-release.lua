--[[
  lock-release: compare-and-delete, so a holder never frees a lock that
  another run has taken over after our lease expired.

  KEYS[1]  lock key
  ARGV[1]  exact lock value this holder wrote

  Returns  1 released, 0 not ours (already expired or taken over)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
