--[[
  read-fields-batch: reads a few fields of many keys in one call (single node
  only), so a SCAN batch of 1000 records costs one command instead of 1000
  HMGETs. Keys of another type are reported by type instead of failing the
  call. One reply string per key keeps the reply small (a reply element costs
  more than the bytes in it).

  KEYS     the records
  ARGV     the field names to read (F of them; with none, only existence)

  Returns  one string per key:
             'n'                 the key does not exist
             't' .. <type>       the key is not a hash (with no fields: 'e' = exists)
             'h' then per field  '-' when absent, else <byte length> ':' <value>
           Length prefixes make the encoding unambiguous whatever the values hold.
]]
local out = {}
local nf = #ARGV
for i = 1, #KEYS do
  if nf == 0 then
    if redis.call('EXISTS', KEYS[i]) == 1 then out[i] = 'e' else out[i] = 'n' end
  else
    local vals = redis.pcall('HMGET', KEYS[i], unpack(ARGV))
    if vals.err then
      out[i] = 't' .. redis.call('TYPE', KEYS[i])['ok']
    else
      local parts = { 'h' }
      local any = false
      for j = 1, nf do
        local v = vals[j]
        if v then
          any = true
          parts[j + 1] = #v .. ':' .. v
        else
          parts[j + 1] = '-'
        end
      end
      if any or redis.call('EXISTS', KEYS[i]) == 1 then
        out[i] = table.concat(parts)
      else
        out[i] = 'n'
      end
    end
  end
end
return out
