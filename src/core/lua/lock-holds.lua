--[[
  lock-holds: whether a run still holds its lease (its entry holds its token
  and the server clock has not passed its deadline). Run before every batch
  where the data scripts cannot read the lock (a cluster).

  KEYS[1]  lock key (hash, see lock-acquire.lua)
  ARGV[1]  the run's lock value '<token>@<holder>'

  Returns  1 held, 0 lost
]]
--- @include "includes/holds-lock"

if ARGV[1] ~= '' and holdsLock(KEYS[1], ARGV[1]) then return 1 end
return 0
