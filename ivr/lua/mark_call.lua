-- mark_call: set fields on an existing call record, never creating one for an unknown
-- CallSid (call.mark).
--
-- KEYS[1] call hash
-- ARGV field/value pairs (at least one pair)
-- Returns 1 when written, 0 when the call has no record.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
