-- sms_claim_swap: replace a send claim only if it still holds what this worker last saw
-- (worker.sms): taking over a stale 'pending:…' claim, and a sender renewing its own just
-- before it sends, so a sender held up longer than settle_after_seconds (in the rate
-- limiter or retries) sends nothing once another worker has taken its claim over.
--
-- KEYS[1] claim string
-- ARGV[1] the value expected   ARGV[2] the new value   ARGV[3] TTL, seconds
-- Returns 1 when replaced, 0 when the claim held something else.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
