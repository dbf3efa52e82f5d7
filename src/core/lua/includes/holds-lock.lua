-- True while the run still holds its lease in the operator lock: its holder
-- entry carries its token and the server clock has not passed the entry's
-- deadline (src/core/lua/lock-acquire.lua). A run whose lease expired, was
-- deleted or was taken over must not change anything (docs/design.md "Every
-- mutation of a run is fenced by its lock"); '' means the caller runs
-- unlocked (a dry run), which writes nothing anyway. lockValue is
-- '<token>@<holder>'.
local function holdsLock(lockKey, lockValue)
  if lockValue == '' then return true end
  local token, holder = string.match(lockValue, '^(%x+)@(.+)$')
  if token == nil then return false end
  local entry = redis.pcall('HGET', lockKey, holder)
  if type(entry) ~= 'string' then return false end
  local deadline, t = string.match(entry, '^(%d+):(%x+):')
  if t ~= token then return false end
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) <= tonumber(deadline)
end
