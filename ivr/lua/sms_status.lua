-- sms_status: record one status callback of a message we sent (delivery.record_status).
-- The status only moves forward (a late 'sent' after 'delivered' changes nothing), a final
-- state is counted once per message, and the one resend of a message is claimed here, in
-- the same step that recorded its failure, so it is queued once.
--
-- KEYS[1] message hash
-- KEYS[2] incident counters hash (the message key again when the message has no incident)
-- KEYS[3] metrics sms hash
-- KEYS[4] (optional) the update's fan-out hash: a counted final state is counted there too
-- ARGV[1] status   ARGV[2] error code or ''
-- ARGV[3] counter field or '' ('sms_delivered' counts 'delivered' in KEYS[3])
-- ARGV[4] '1' to claim the one resend   ARGV[5] now, ISO
-- ARGV[6] the fan-out hash's TTL, seconds (with KEYS[4])
-- Returns {known 0/1, status after, status changed 0/1, counted 0/1, resend claimed 0/1}.

if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0, 0, 0} end
local RANK = {accepted=0, scheduled=0, queued=1, sending=2, sent=3,
              delivered=4, undelivered=4, failed=4, canceled=4, read=5}
local current = redis.call('HGET', KEYS[1], 'status') or ''
local changed = 0
local new_rank = RANK[ARGV[1]]
if new_rank ~= nil and new_rank > (RANK[current] or -1) then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_at', ARGV[5])
  current = ARGV[1]
  changed = 1
end
if ARGV[2] ~= '' then
  if changed == 1 then
    redis.call('HSET', KEYS[1], 'error_code', ARGV[2])
  else
    redis.call('HSETNX', KEYS[1], 'error_code', ARGV[2])
  end
end
local counted = 0
if ARGV[3] ~= '' and redis.call('HSETNX', KEYS[1], 'counted', ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('HINCRBY', KEYS[3], string.sub(ARGV[3], 5), 1)
  if KEYS[4] then
    redis.call('HINCRBY', KEYS[4], string.sub(ARGV[3], 5), 1)
    redis.call('EXPIRE', KEYS[4], ARGV[6])
  end
  counted = 1
end
local resend = 0
if ARGV[4] == '1' and (current == 'undelivered' or current == 'failed')
    and redis.call('HEXISTS', KEYS[1], 'resend_of') == 0
    and redis.call('HSETNX', KEYS[1], 'resend', ARGV[5]) == 1 then
  resend = 1
end
return {1, current, changed, counted, resend}
