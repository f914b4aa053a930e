-- sms_record: record a message Twilio took (worker.sms._record): the claim takes its SID,
-- and the message record and the sms_sent counts appear once per message.
--   'sent'   its sender sent it: recorded unless another worker already settled this very
--            message from Twilio's record while the sender was held up (the claim then
--            holds this SID, and the record may already carry a later status).
--   'settle' a stale 'pending:…' claim, settled from Twilio's record: only while the claim
--            still holds the stale value, and the record only if its sender never wrote it.
--
-- KEYS[1] claim string   KEYS[2] message hash   KEYS[3] incident counters hash
-- KEYS[4] metrics sms hash   KEYS[5] (optional) the update's fan-out hash: given when the
--         message belongs to a numbered update, its 'sent' counted with the others
-- ARGV[1] 'sent' or 'settle'   ARGV[2] the claim value the sender held (or the stale one)
-- ARGV[3] MessageSid   ARGV[4] TTL, seconds   ARGV[5..] the record's field/value pairs
-- Returns, for 'sent': 0 when already settled, 1 when recorded, 2 when recorded over a claim
-- another worker had taken; for 'settle': 1 when this call settled it, else 0.

local function write_record()
  redis.call('HSET', KEYS[2], unpack(ARGV, 5))
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('HINCRBY', KEYS[3], 'sms_sent', 1)
  redis.call('HINCRBY', KEYS[4], 'sent', 1)
  if KEYS[5] then
    redis.call('HINCRBY', KEYS[5], 'sent', 1)
    redis.call('EXPIRE', KEYS[5], ARGV[4])
  end
end

local claim = redis.call('GET', KEYS[1])
if ARGV[1] == 'settle' then
  if claim ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  if redis.call('EXISTS', KEYS[2]) == 0 then write_record() end
  return 1
end
if claim == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
write_record()
if claim ~= ARGV[2] then return 2 end
return 1
