--[[
  transition: compare-and-set of the migration phase on its epoch, fenced by
  the operator lock, committed together with its history entry
  (docs/design.md "Transitions").

  Two registrations share this file:
    - single node: KEYS[2] is the history stream. The entry is appended, the
      phase moved and the event published in this one script, so a phase
      never moves without its entry. The stream's type is checked before
      anything is written (a script is not rolled back on a later error).
    - cluster: the stream hashes to another slot, so there is no KEYS[2];
      the caller appends the entry first and marks it abandoned if this
      script refuses (src/core/state.ts).
  changed_at comes from the server clock (TIME), so every process measures the
  settle window against one clock.

  KEYS[1]  migration state hash
  KEYS[2]  (single node) history stream
  ARGV[1]  expected epoch (a record without epoch is epoch 0)
  ARGV[2]  expected current phase (a record without phase is 'legacy')
  ARGV[3]  new phase
  ARGV[4]  fence: the lock_fence this holder was issued; '' = not fenced
  ARGV[5]  changed_by
  ARGV[6]  reason
  ARGV[7]  default settle_ms, written only when the record has none
  ARGV[8]  '1' = bump the lineage counter (a move back to legacy)
  ARGV[9]  history: approximate MAXLEN
  ARGV[10] history: JSON object of the entry's data; the new epoch is added
  ARGV[11] events channel to PUBLISH on ('' = none)
  ARGV[12..] extra field, value pairs written in the same step

  Returns  { new epoch, changed_at ms, history entry id or '' }
  Errors   'EPOCH <epoch> <phase>' when the record moved on; 'FENCED <fence>';
           'HISTORY_WRONGTYPE <type>' when KEYS[2] is not a stream
]]
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'phase', 'lock_fence', 'settle_ms', 'lineage')
local epoch = tonumber(cur[1] or '0')
local phase = cur[2] or 'legacy'
if epoch == nil then return redis.error_reply('EPOCH ' .. tostring(cur[1]) .. ' ' .. phase) end
if ARGV[4] ~= '' and tostring(cur[3]) ~= ARGV[4] then
  return redis.error_reply('FENCED ' .. tostring(cur[3]))
end
if epoch ~= tonumber(ARGV[1]) or phase ~= ARGV[2] then
  return redis.error_reply('EPOCH ' .. epoch .. ' ' .. phase)
end
if KEYS[2] then
  local kind = redis.call('TYPE', KEYS[2])['ok']
  if kind ~= 'none' and kind ~= 'stream' then return redis.error_reply('HISTORY_WRONGTYPE ' .. kind) end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local newEpoch = epoch + 1

local id = ''
if KEYS[2] then
  local data = cjson.decode(ARGV[10])
  data['epoch'] = newEpoch
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*',
    'type', 'transition', 'at', tostring(now), 'by', ARGV[5], 'data', cjson.encode(data))
end

redis.call('HSET', KEYS[1], 'phase', ARGV[3], 'epoch', newEpoch, 'changed_at', now,
  'phase_changed_at', now, 'changed_by', ARGV[5], 'reason', ARGV[6])
if not cur[4] then redis.call('HSET', KEYS[1], 'settle_ms', ARGV[7]) end
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'lineage', (tonumber(cur[5] or '0') or 0) + 1) end
for i = 12, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[11] ~= '' then
  redis.call('PUBLISH', ARGV[11], cjson.encode({ phase = ARGV[3], epoch = newEpoch, changed_at = now }))
end
return { newEpoch, now, id }
