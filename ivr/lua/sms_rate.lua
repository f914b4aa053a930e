-- sms_rate: the global SMS send rate as a sliding log of grants, on Redis time
-- (ratelimit.SegmentRate.attempt; the module docstring proves the bound). Grants are
-- members '<time us>:<segments>:<tag>' scored by their time; those older than the window
-- go first. A request is granted when the window has room for it (or the log is empty);
-- otherwise it reserves nothing and learns how long until enough grants have left.
--
-- KEYS[1] the sorted set of grants
-- ARGV[1] segments   ARGV[2] capacity (segments a window)   ARGV[3] window, microseconds
-- ARGV[4] a random tag (keeps two grants in one microsecond apart)
-- Returns {granted 0/1, wait in microseconds (0 when granted), server time in microseconds}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n, cap, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])  -- left by an older limiter
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
local grants = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local sizes, total = {}, 0
for i = 1, #grants, 2 do
  local size = tonumber(string.match(grants[i], '^%d+:(%d+):'))
  sizes[#sizes + 1] = size
  total = total + size
end
if #grants == 0 or total + n <= cap then
  local member = string.format('%.0f:%d:%s', now, n, ARGV[4])
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), member)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
  return {1, 0, now}
end
local left = 0
for i = 1, #sizes do
  left = left + sizes[i]
  if left == total or total - left + n <= cap then
    return {0, tonumber(grants[2 * i]) + window - now, now}
  end
end
return {0, window, now}
