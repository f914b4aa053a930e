-- next_caller: give an operator the next waiting caller (call.next_caller): the same one
-- again if this operator's webhook is retried; callers who hung up are skipped.
--
-- KEYS[1] waiting zset   KEYS[2] the operator's assignment string
-- ARGV[1] the operator leg's CallSid   ARGV[2] assignment TTL, seconds
-- ARGV[3] the key of a call, '*' for its CallSid
-- Returns the caller's CallSid, or false when nobody is waiting.

local function key_for(shape, id)  -- a key shape of ivr/keys.py: the id where its '*' is
  local at = string.find(shape, '*', 1, true)
  return string.sub(shape, 1, at - 1) .. id .. string.sub(shape, at + 1)
end

local assigned = redis.call('GET', KEYS[2])
if assigned then return assigned end
while true do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then return false end
  local sid = popped[1]
  local key = key_for(ARGV[3], sid)
  if redis.call('HGET', key, 'state') == 'queued' then
    redis.call('HSET', key, 'state', 'connecting', 'agent_call_sid', ARGV[1])
    redis.call('SET', KEYS[2], sid, 'EX', ARGV[2])
    return sid
  end
end
