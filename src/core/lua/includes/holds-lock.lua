-- True while the operator lock still holds this run's value. A run whose
-- lease expired, was deleted or was taken over must not change anything
-- (docs/design.md "Every mutation of a run is fenced by its lock"); '' means
-- the caller runs unlocked (a dry run), which writes nothing anyway.
local function holdsLock(lockKey, lockValue)
  return lockValue == '' or redis.call('GET', lockKey) == lockValue
end
