-- concerning: the active incidents and which of their number sets hold a sender, read at
-- once (inbound.concerning): two round trips could mix an incident's document with the
-- membership of its next version (a scope PATCH landing in between). An incident without
-- numbers has no set (incident.store_active), so asking every one is the same answer as
-- asking those with `scope.number_count`.
--
-- KEYS[1] incidents_active hash
-- ARGV[1] phone (E.164)   ARGV[2] the key of an incident's number set, '*' for its id
-- Returns {active incident id/document pairs, ids of the incidents whose numbers hold it}.
--
-- The sets' keys, in the same `{ivr}` slot, come as a shape from ivr/keys.py (see
-- incoming.lua).

local function key_for(shape, id)  -- a key shape of ivr/keys.py: the id where its '*' is
  local at = string.find(shape, '*', 1, true)
  return string.sub(shape, 1, at - 1) .. id .. string.sub(shape, at + 1)
end

local active = redis.call('HGETALL', KEYS[1])
local listed = {}
for i = 1, #active, 2 do
  if redis.call('SISMEMBER', key_for(ARGV[2], active[i]), ARGV[1]) == 1 then
    listed[#listed + 1] = active[i]
  end
end
return {active, listed}
