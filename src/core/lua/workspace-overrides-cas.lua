--[[
  workspace-overrides-cas: sets or removes canary overrides on a Redis
  Cluster, where the overrides hash lives in another slot than the state
  record (so workspace-transition.lua cannot cover both). Compare-and-set on
  the whole group: nothing changes unless every override is what the caller
  saw, and nothing changes past the run's lease deadline (the lock key is in
  yet another slot). The epoch's compare-and-set follows in the state
  record's slot; if that refuses, the caller puts the overrides back with the
  same script (expected and new swapped), which only undoes its own change.

  KEYS[1]  overrides hash `<p>:migration:jobs:workspaces`
  ARGV[1]  lease deadline in server unix ms ('' or 0 = none)
  ARGV[2..] triples: workspace, expected override ('' = none), new override ('' = remove)

  Returns  1 applied
  Errors   'FENCED lock' past the lease deadline
           'WSPHASE <workspace> <current override>' when one is not as expected
]]
--- @include "includes/within-lease"

if not withinLease(ARGV[1]) then return redis.error_reply('FENCED lock') end
for i = 2, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if cur ~= ARGV[i + 1] then return redis.error_reply('WSPHASE ' .. ARGV[i] .. ' ' .. cur) end
end
for i = 2, #ARGV, 3 do
  if ARGV[i + 2] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 1
