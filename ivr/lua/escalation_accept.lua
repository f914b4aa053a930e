-- escalation_accept: the SV pressed 1 (escalation.accept). Accept if `attempt` is still
-- the live one, note the SV leg that did (a retried key press from it joins again), log
-- it and count it for /metrics.
--
-- KEYS[1] call hash   KEYS[2] escalation log list   KEYS[3] metrics escalations hash
-- ARGV[1] attempt   ARGV[2] now, ISO   ARGV[3] now, epoch seconds   ARGV[4] the SV leg's CallSid
-- Returns 1 when accepted, 0 when `attempt` is no longer the live one.

local state = redis.call('HGET', KEYS[1], 'esc_state')
if state ~= 'dialing' and state ~= 'ringing' then return 0 end
if redis.call('HGET', KEYS[1], 'esc_attempt') ~= ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[3], (redis.call('HGET', KEYS[1], 'esc_reason') or '') .. '|accepted',
  1)
local started = tonumber(redis.call('HGET', KEYS[1], 'esc_started_epoch') or ARGV[3])
redis.call('HSET', KEYS[1], 'esc_state', 'accepted', 'esc_joined_at', ARGV[2],
  'esc_wait_seconds', tostring(math.floor(tonumber(ARGV[3]) - started)),
  'esc_accepted_leg', ARGV[4])
redis.call('RPUSH', KEYS[2], cjson.encode({attempt = tonumber(ARGV[1]), result = 'accepted',
  at = ARGV[2], sv = redis.call('HGET', KEYS[1], 'esc_sv_name') or ''}))
redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
return 1
