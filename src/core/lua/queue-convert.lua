--[[
  queue-convert: rewrites bare legacy references on the pending list
  (`<job_id>`) into the v2 form (`<workspace_id>:<job_id>`, docs/design.md "The pending list") in one
  atomic step, so no worker pops a half-converted list. Cleanup runs it before
  any legacy key is deleted; the mapping comes from the legacy records.

  Elements keep their positions (LSET), so the queue order is unchanged.
  Elements not in the mapping are left as they are; running it twice is a no-op.

  KEYS[1]  pending list `<p>:queue`
  ARGV[1..] bare, converted, bare, converted, ...

  Returns  number of list elements rewritten
]]
local map = {}
for i = 1, #ARGV, 2 do map[ARGV[i]] = ARGV[i + 1] end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'list' then return 0 end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local n = 0
for i = 1, #items do
  local to = map[items[i]]
  if to then
    redis.call('LSET', KEYS[1], i - 1, to)
    n = n + 1
  end
end
return n
