--[[
  cleanup-batch: deletes a batch of legacy records on a single node, each only
  if v2 holds that record at the same or a higher rev, in one atomic step
  that first checks the run still holds the operator lock: a cleanup paused
  past its lease (SIGSTOP, a partition, a deleted lock key) changes nothing
  once it resumes (docs/design.md "Every mutation of a run is fenced by its lock").

  The caller read each legacy record's workspace_id first (to name its v2 key);
  this script re-checks everything it relies on.

  KEYS[1]  the operator lock
  KEYS     then per pair: legacy record `<p>:jobs:<id>`, v2 record `<p>:job:<ws>:<id>`
  ARGV[1]  lock value ('' = unlocked: only a dry run)
  ARGV[2]  '1' = dry run: delete nothing, only classify
  ARGV     then per pair: the workspace_id the caller read from the legacy record

  Returns  one code per pair:
            1  unlinked (dry run: would be)
            0  kept: v2 holds a lower rev than legacy
           -1  kept: the legacy key is not a hash
           -2  kept: the legacy rev is not an integer
           -3  kept: the legacy record's workspace_id changed since it was read
           -4  nothing to do: the legacy key no longer exists
           -6  kept: v2 has no record for this job
           -7  kept: the v2 key is not a hash
           -8  kept: the v2 rev is not an integer
           -9  kept: the v2 record names another workspace
  Errors   'FENCED lock' when the run no longer holds the lock
]]
--- @include "includes/holds-lock"

if not holdsLock(KEYS[1], ARGV[1]) then return redis.error_reply('FENCED lock') end
local dry = ARGV[2] == '1'
local out = {}
local n = (#KEYS - 1) / 2

local function revOf(key)
  local raw = redis.call('HGET', key, 'rev')
  if not raw then return 0 end
  if not string.match(raw, '^%d+$') then return nil end
  return tonumber(raw)
end

for i = 1, n do
  local legacy, v2 = KEYS[i * 2], KEYS[i * 2 + 1]
  local ws = ARGV[i + 2]
  local code
  local kind = redis.call('TYPE', legacy)['ok']
  if kind == 'none' then
    code = -4
  elseif kind ~= 'hash' then
    code = -1
  elseif redis.call('HGET', legacy, 'workspace_id') ~= ws then
    code = -3
  else
    local lrev = revOf(legacy)
    local vkind = redis.call('TYPE', v2)['ok']
    if lrev == nil then
      code = -2
    elseif vkind == 'none' then
      code = -6
    elseif vkind ~= 'hash' then
      code = -7
    elseif redis.call('HGET', v2, 'workspace_id') ~= ws then
      code = -9
    else
      local vrev = revOf(v2)
      if vrev == nil then
        code = -8
      elseif vrev < lrev then
        code = 0
      else
        if not dry then redis.call('UNLINK', legacy) end
        code = 1
      end
    end
  end
  out[i] = code
end
return out
