--[[
  workspace-transition: moves some workspaces (canaries) to their own phase,
  ahead of the global one, or back to it. A compare-and-set on the state
  record's epoch, fenced by the operator lock like a global transition: the
  epoch and changed_at move (writers re-read and acknowledge, the settle window
  restarts), the global phase and phase_changed_at do not.

  The optional keys are named by ARGV[1], in this order:
    'h' the history stream (the entry is appended in this script)
    'w' the per-workspace phases hash `<p>:migration:jobs:workspaces`
    's' the per-workspace state hash `<p>:migration:jobs:workspaces:state`
  On one node all three are passed: the move, its entry and its event commit
  together. On a cluster they hash to other slots: the caller writes the
  overrides first and the entry around this script (src/core/state.ts).

  KEYS[1]  migration state hash
  KEYS[2..] the optional keys ARGV[1] names
  ARGV[1]  roles: '' or 'hws'
  ARGV[2]  expected epoch
  ARGV[3]  fence ('' = not fenced)
  ARGV[4]  changed_by
  ARGV[5]  history: approximate MAXLEN
  ARGV[6]  history: JSON data of the entry (the new epoch is added)
  ARGV[7]  events channel ('' = none)
  ARGV[8]  the phase the workspaces move to ('' = back to the global phase: the override goes)
  ARGV[9..] per workspace: workspace id, its expected override ('' = none), its state JSON ('' = unchanged)

  Returns  { new epoch, changed_at ms }
  Errors   'EPOCH <epoch> <phase>', 'FENCED <fence>', 'HISTORY_WRONGTYPE <type>',
           'WSPHASE <workspace> <current override>' when a workspace is not where the caller saw it
]]
local roles = ARGV[1]
local hist, wsPhases, wsState = nil, nil, nil
if roles == 'hws' then hist, wsPhases, wsState = KEYS[2], KEYS[3], KEYS[4] end

local cur = redis.call('HMGET', KEYS[1], 'epoch', 'phase', 'lock_fence')
local epoch = tonumber(cur[1] or '0')
local phase = cur[2] or 'legacy'
if epoch == nil or epoch ~= tonumber(ARGV[2]) then return redis.error_reply('EPOCH ' .. tostring(cur[1]) .. ' ' .. phase) end
if ARGV[3] ~= '' and tostring(cur[3]) ~= ARGV[3] then return redis.error_reply('FENCED ' .. tostring(cur[3])) end
if hist then
  local kind = redis.call('TYPE', hist)['ok']
  if kind ~= 'none' and kind ~= 'stream' then return redis.error_reply('HISTORY_WRONGTYPE ' .. kind) end
end
if wsPhases then
  for i = 9, #ARGV, 3 do
    local now = redis.call('HGET', wsPhases, ARGV[i]) or ''
    if now ~= ARGV[i + 1] then return redis.error_reply('WSPHASE ' .. ARGV[i] .. ' ' .. now) end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local newEpoch = epoch + 1
if hist then
  local data = cjson.decode(ARGV[6])
  data['epoch'] = newEpoch
  redis.call('XADD', hist, 'MAXLEN', '~', ARGV[5], '*', 'type', 'workspace-transition', 'at', tostring(now), 'by', ARGV[4], 'data', cjson.encode(data))
end
if wsPhases then
  for i = 9, #ARGV, 3 do
    if ARGV[8] == '' then redis.call('HDEL', wsPhases, ARGV[i]) else redis.call('HSET', wsPhases, ARGV[i], ARGV[8]) end
    if ARGV[i + 2] ~= '' then redis.call('HSET', wsState, ARGV[i], ARGV[i + 2]) end
  end
end
redis.call('HSET', KEYS[1], 'epoch', newEpoch, 'changed_at', now, 'changed_by', ARGV[4])
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], cjson.encode({ phase = phase, epoch = newEpoch, changed_at = now, workspaces = true }))
end
return { newEpoch, now }
