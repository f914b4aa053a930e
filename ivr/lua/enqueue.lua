-- enqueue: put a known call in the waiting line once and record what the caller said
-- (call.enqueue). A retried webhook keeps the caller's place; a call already queued,
-- connecting, connected or in transfer is not queued again.
--
-- KEYS[1] call hash   KEYS[2] waiting zset
-- ARGV[1] CallSid   ARGV[2] now, epoch ms   ARGV[3] n   ARGV[4..3+2n] field/value pairs
-- Returns {band, lang, tags JSON}, or false when the call has no record or has ended.
--
-- The waiting line's score is band * BAND_SCALE + the time queued, as in incoming.lua
-- (tests/test_lua.py keeps BAND_SCALE equal to ivr/call.py's).

local BAND_SCALE = 10000000000000

local band = redis.call('HGET', KEYS[1], 'band')
if not band then return false end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'completed' then return false end
local n = tonumber(ARGV[3])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * n)) end
if state ~= 'queued' and state ~= 'connecting' and state ~= 'connected'
    and state ~= 'transfer' then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at_ms', ARGV[2])
  redis.call('ZADD', KEYS[2], 'NX', tonumber(band) * BAND_SCALE + tonumber(ARGV[2]), ARGV[1])
end
return {tonumber(band), redis.call('HGET', KEYS[1], 'lang'), redis.call('HGET', KEYS[1], 'tags')}
