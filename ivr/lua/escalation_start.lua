-- escalation_start: start an escalation of a call that has none in progress
-- (escalation.start): write it, count it on each incident the call was counted for, and
-- take the caller out of the waiting line. Attempt numbers carry on from an earlier
-- escalation of the same call (`esc_first` is this one's first), so its dial-out job ids,
-- leg claims and callback URLs never meet the earlier one's; what the earlier one learned
-- of its SV (ARGV's fields to clear) goes. An exhausted escalation counts as started unless
-- ARGV[4] is '1' (an operator asks again), so a retried webhook of the call that raised it
-- starts nothing twice.
--
-- KEYS[1] call hash   KEYS[2] raised-by index zset   KEYS[3] metrics escalations hash
-- KEYS[4] metrics calls-by-kinds hash   KEYS[5] waiting zset
-- ARGV[1] now, epoch seconds   ARGV[2] raised-by index TTL   ARGV[3] raised_by ('' for none)
-- ARGV[4] again ('1'/'0')   ARGV[5] the key of an incident's counters, '*' for its id
-- ARGV[6] n   ARGV[7..6+2n] field/value pairs of the escalation
-- ARGV[7+2n..] the per-escalation fields to clear when the call was escalated before
-- Returns {started 0/1, the escalation state now, its first attempt}.
--
-- The incidents' counter keys, in the same `{ivr}` slot, come as a shape from ivr/keys.py
-- (see incoming.lua).

local function key_for(shape, id)  -- a key shape of ivr/keys.py: the id where its '*' is
  local at = string.find(shape, '*', 1, true)
  return string.sub(shape, 1, at - 1) .. id .. string.sub(shape, at + 1)
end

if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0} end
local state = redis.call('HGET', KEYS[1], 'esc_state')
if state == 'dialing' or state == 'ringing' or state == 'accepted'
    or (state == 'exhausted' and ARGV[4] ~= '1') then return {0, state, 0} end
if redis.call('HGET', KEYS[1], 'state') == 'completed' then return {0, 'abandoned', 0} end
local band = redis.call('HGET', KEYS[1], 'band')
local n = tonumber(ARGV[6])
local first = 0
if state then
  first = tonumber(redis.call('HGET', KEYS[1], 'esc_attempt') or '-1') + 1
  if #ARGV > 6 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 7 + 2 * n)) end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7, 6 + 2 * n))
redis.call('HSET', KEYS[1], 'esc_attempt', first, 'esc_first', first)
-- metrics: an escalation with nobody to ring ends at once (exhausted) and puts the caller
-- in the priority band; escalation_set_if.lua counts the ends that come later
if redis.call('HGET', KEYS[1], 'esc_state') == 'exhausted' then
  redis.call('HINCRBY', KEYS[3], (redis.call('HGET', KEYS[1], 'esc_reason') or '')
    .. '|exhausted', 1)
end
if band ~= '0' and redis.call('HGET', KEYS[1], 'band') == '0' then
  redis.call('HINCRBY', KEYS[4], 'priority', 1)
end
local sid = redis.call('HGET', KEYS[1], 'call_sid')
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[1], sid)
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
for _, id in ipairs(cjson.decode(redis.call('HGET', KEYS[1], 'incidents') or '[]')) do
  redis.call('HINCRBY', key_for(ARGV[5], id), 'escalations', 1)
end
redis.call('ZREM', KEYS[5], sid)
return {1, redis.call('HGET', KEYS[1], 'esc_state'), first}
