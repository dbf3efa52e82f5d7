-- True while the server clock has not passed the run's lease deadline (unix
-- ms, computed by the holder from the server TIME of its last renewal, minus
-- a margin). On a cluster the lock key lives in another slot than the data,
-- so a script cannot read it; the deadline stops a holder that was paused
-- past its lease from writing once it wakes (docs/design.md "Every mutation
-- of a run is fenced by its lock"). '' or '0' means no deadline (unlocked).
local function withinLease(deadline)
  if deadline == nil or deadline == '' or deadline == '0' then return true end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return now <= tonumber(deadline)
end
