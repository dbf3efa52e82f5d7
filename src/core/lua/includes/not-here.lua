-- True when a redis.pcall reply is the refusal of a key this node does not
-- serve: in a script flagged allow-cross-slot-keys whose keys come undeclared
-- in ARGV, Redis refuses a key whose slot moved away or is migrating without
-- the key ("Script attempted to access a non local key"), or any key while the
-- cluster is down. The script answers that key "not here" and the client
-- sends it through the per-key path, which follows MOVED/ASK
-- (src/ops/cluster-batch.ts).
local function notHere(reply)
  if type(reply) ~= 'table' or not reply.err then return false end
  local e = reply.err
  return string.find(e, 'non local key', 1, true) ~= nil or string.find(e, 'cluster is down', 1, true) ~= nil
end
