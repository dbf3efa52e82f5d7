-- Order-independent content digest of a hash: sha1 of the sorted sha1 hex
-- digests of "<byte length of field>:<field><value>", over a flat
-- field, value, ... list starting at `first`. Sorting hex strings keeps it
-- independent of the server's collation locale. src/ops/record-compare.ts
-- (recordDigest) computes the same value on the client.
local function digest(list, first)
  local parts = {}
  for i = first, #list, 2 do
    parts[#parts + 1] = redis.sha1hex(string.len(list[i]) .. ':' .. list[i] .. list[i + 1])
  end
  table.sort(parts)
  return redis.sha1hex(table.concat(parts))
end
