-- concerning: the active incidents and which of their number sets hold a sender, read at
-- once (inbound.concerning): two round trips could mix an incident's document with the
-- membership of its next version (a scope PATCH landing in between). An incident without
-- numbers has no set (incident.store_active), so asking every one is the same answer as
-- asking those with `scope.number_count`.
--
-- KEYS[1] incidents_active hash
-- ARGV[1] phone (E.164)
-- Returns {active incident id/document pairs, ids of the incidents whose numbers hold it}.
--
-- The sets' keys are built from KEYS[1]'s hash-tag prefix, in the same `{ivr}` slot (see
-- incoming.lua).

local active = redis.call('HGETALL', KEYS[1])
local prefix = string.sub(KEYS[1], 1, string.find(KEYS[1], ':', 1, true)) .. 'incident:'
local listed = {}
for i = 1, #active, 2 do
  if redis.call('SISMEMBER', prefix .. active[i] .. ':numbers', ARGV[1]) == 1 then
    listed[#listed + 1] = active[i]
  end
end
return {active, listed}
