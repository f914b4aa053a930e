-- escalation_advance: give up on the SV of `attempt` and move to the next
-- (escalation.advance), if `attempt` is still the live one and nobody accepted. The
-- attempt's result is logged and counted for /metrics ('failed:21211' counts as 'failed').
--
-- KEYS[1] call hash   KEYS[2] escalation log list   KEYS[3] metrics escalation attempts hash
-- ARGV[1] attempt   ARGV[2] result (declined, timeout, busy, failed:<code>, …)   ARGV[3] now, ISO
-- Returns the next attempt, or -1 when `attempt` is no longer the live one.

local state = redis.call('HGET', KEYS[1], 'esc_state')
if state ~= 'dialing' and state ~= 'ringing' then return -1 end
if redis.call('HGET', KEYS[1], 'esc_attempt') ~= ARGV[1] then return -1 end
redis.call('HINCRBY', KEYS[3], (redis.call('HGET', KEYS[1], 'esc_reason') or '') .. '|'
  .. string.match(ARGV[2], '^[^:]*'), 1)
local nxt = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'esc_attempt', nxt, 'esc_state', 'dialing')
redis.call('RPUSH', KEYS[2], cjson.encode({attempt = tonumber(ARGV[1]), result = ARGV[2],
  at = ARGV[3], sv = redis.call('HGET', KEYS[1], 'esc_sv_name') or ''}))
redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
return nxt
