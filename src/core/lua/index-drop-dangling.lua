--[[
  index-drop-dangling: verify --repair's removal of an index entry whose v2
  record does not exist, in one atomic step on a single node: a writer that
  creates the record meanwhile keeps its entry (a check-then-ZREM from the
  client could drop the entry of a record written between the two).

  KEYS[1]  v2 index sorted set `<p>:job-index:<workspace_id>`
  KEYS[2]  the member's v2 record `<p>:job:<workspace_id>:<job_id>`
  KEYS[3]  the operator lock
  ARGV[1]  the member (job id)
  ARGV[2]  lock value ('' = unlocked)

  Returns  1 removed, 0 kept (the record exists now)
  Errors   'FENCED lock' when the run no longer holds the lock
]]
--- @include "includes/holds-lock"

if not holdsLock(KEYS[3], ARGV[2]) then return redis.error_reply('FENCED lock') end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
