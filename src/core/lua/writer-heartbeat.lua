--[[
  writer-heartbeat: a queue-core process says it is alive and which epoch of
  the state record it acts on (src/core/writers.ts). The time is the server's,
  so every reader judges liveness on one clock.

  KEYS[1]  writers hash `<p>:migration:jobs:writers`
  ARGV[1]  writer id (field name)
  ARGV[2]  epoch the writer acts on (every write it starts from now on uses it)
  ARGV[3]  lease in ms: an entry older than this is dead
  ARGV[4]  host
  ARGV[5]  pid
  ARGV[6]  name (free text, e.g. "orch-api")

  Returns  the server time in ms written as `at`
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({
  epoch = tonumber(ARGV[2]),
  at = now,
  lease_ms = tonumber(ARGV[3]),
  host = ARGV[4],
  pid = tonumber(ARGV[5]),
  name = ARGV[6],
}))
return now
