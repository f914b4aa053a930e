-- escalation_set_if: set escalation fields only while its state is one of `from`
-- (escalation.set_if). For /metrics it counts, once, a move into a final state
-- (accepted, exhausted, abandoned) and a call's first move to the priority band (calls by
-- tag 'priority').
--
-- KEYS[1] call hash   KEYS[2] metrics escalations hash   KEYS[3] metrics calls-by-kinds hash
-- ARGV[1] n_from   ARGV[2..1+n_from] the states it may be in   ARGV[2+n_from..] field/value pairs
-- Returns 1 when written, 0 when the state was none of `from`.

local state = redis.call('HGET', KEYS[1], 'esc_state')
local n = tonumber(ARGV[1])
local ok = false
for i = 2, n + 1 do if ARGV[i] == state then ok = true end end
if not ok then return 0 end
local band = redis.call('HGET', KEYS[1], 'band')
redis.call('HSET', KEYS[1], unpack(ARGV, n + 2))
local now = redis.call('HGET', KEYS[1], 'esc_state')
if now ~= state and (now == 'accepted' or now == 'exhausted' or now == 'abandoned') then
  local reason = redis.call('HGET', KEYS[1], 'esc_reason') or ''
  redis.call('HINCRBY', KEYS[2], reason .. '|' .. now, 1)
end
if band ~= '0' and redis.call('HGET', KEYS[1], 'band') == '0' then
  redis.call('HINCRBY', KEYS[3], 'priority', 1)
end
return 1
