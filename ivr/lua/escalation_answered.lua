-- escalation_answered: the SV of `attempt` answered (their whisper was fetched): note when,
-- once per attempt, so the watchdog gives them join_timeout from then
-- (escalation.mark_answered).
--
-- KEYS[1] call hash
-- ARGV[1] attempt   ARGV[2] now, epoch seconds
-- Returns 1 when noted, 0 when noted before or `attempt` is no longer the live one.

local state = redis.call('HGET', KEYS[1], 'esc_state')
if state ~= 'dialing' and state ~= 'ringing' then return 0 end
if redis.call('HGET', KEYS[1], 'esc_attempt') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'esc_answered_attempt') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'esc_answered_attempt', ARGV[1], 'esc_answered_epoch', ARGV[2])
return 1
