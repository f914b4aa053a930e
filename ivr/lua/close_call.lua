-- close_call: close a call from its final status callback (call.close). Unknown CallSids
-- (an operator's own leg) are ignored. An escalation still ringing ends as 'abandoned' and
-- is counted for /metrics.
--
-- KEYS[1] call hash   KEYS[2] calls_active zset   KEYS[3] waiting zset
-- KEYS[4] metrics escalations hash
-- ARGV[1] CallSid   ARGV[2] n   ARGV[3..2+2n] field/value pairs (status, ended_at, …)
-- Returns 1 when the call was closed, 0 when it has no record.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local esc = redis.call('HGET', KEYS[1], 'esc_state')
if esc == 'dialing' or esc == 'ringing' then
  redis.call('HSET', KEYS[1], 'esc_state', 'abandoned')
  local reason = redis.call('HGET', KEYS[1], 'esc_reason') or ''
  redis.call('HINCRBY', KEYS[4], reason .. '|abandoned', 1)
end
redis.call('HSET', KEYS[1], 'state', 'completed', unpack(ARGV, 3, 2 + 2 * tonumber(ARGV[2])))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
