--[[
  cleanup-unlink: deletes one legacy record during cleanup, only if v2 holds
  that record at the same or a higher rev (docs/design.md "Cleanup").

  The caller read the v2 rev first. This script then checks the legacy key in
  one atomic step and UNLINKs it only if it is still a hash of the same
  workspace with rev <= that v2 rev. Single key, so it is cluster-safe: the
  v2 rev only grows, and legacy receives no writes in new-only once the settle
  window is over, so "legacy rev <= v2 rev" cannot become false afterwards.

  KEYS[1]  legacy record hash `<p>:jobs:<job_id>`
  ARGV[1]  rev the v2 record holds (integer; a v2 record without rev is 0)
  ARGV[2]  workspace_id the caller read from this legacy record
  ARGV[3]  lease deadline in server unix ms ('' or 0 = none): past it the
           run may have lost its lock, so nothing is deleted

  Returns  1 unlinked
           0 kept: legacy rev is higher than the v2 rev
          -1 kept: the key is not a hash
          -2 kept: the legacy rev field is not an integer
          -3 kept: the record's workspace_id is not ARGV[2] (it changed)
          -4 nothing to do: the key no longer exists
  Errors   'FENCED lock' past the lease deadline
]]
--- @include "includes/within-lease"

if not withinLease(ARGV[3]) then return redis.error_reply('FENCED lock') end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return -4 end
if kind ~= 'hash' then return -1 end
local vals = redis.call('HMGET', KEYS[1], 'rev', 'workspace_id')
local rev = 0
if vals[1] then
  if not string.match(vals[1], '^%d+$') then return -2 end
  rev = tonumber(vals[1])
end
if vals[2] ~= ARGV[2] then return -3 end
if rev > tonumber(ARGV[1]) then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
