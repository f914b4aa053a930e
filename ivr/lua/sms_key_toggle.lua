-- sms_key_toggle: the call menu's SMS key, once per menu turn (optout.toggle_by_key).
-- Flips the number on or off the suppression list unless the call record says this turn's
-- key was already answered (Twilio retrying the webhook) or the record is gone, and notes
-- the turn in the same step, so a retry racing the original cannot flip twice.
--
-- KEYS[1] the call record (hash)   KEYS[2] the SMS opt-out set
-- ARGV[1] the menu turn            ARGV[2] the caller's phone (E.164)
-- Returns {opted out now 0/1, flipped 0/1}.

local opted = redis.call('SISMEMBER', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'sms_key_turn') == ARGV[1]
    then return {opted, 0} end
if opted == 1 then
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('SADD', KEYS[2], ARGV[2])
end
redis.call('HSET', KEYS[1], 'sms_key_turn', ARGV[1])
return {1 - opted, 1}
