-- sms_release: let go of a send claim this sender still holds (worker.sms._release):
-- deleted (Twilio took nothing; a retry or a resumed fan-out may send) or marked
-- 'failed:<code>' and counted (refused for this number). A claim another worker has taken
-- meanwhile is left alone.
--
-- KEYS[1] claim string   KEYS[2] incident counters hash   KEYS[3] metrics sms hash
-- KEYS[4] (optional) the update's fan-out hash, its 'failed' counted with the others
-- ARGV[1] the claim value held   ARGV[2] '' to delete, or the failed value   ARGV[3] TTL, seconds
-- Returns 1 when released, 0 when the claim was not this sender's.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'sms_failed', 1)
redis.call('HINCRBY', KEYS[3], 'failed', 1)
if KEYS[4] then
  redis.call('HINCRBY', KEYS[4], 'failed', 1)
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return 1
