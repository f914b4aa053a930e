-- incoming: a caller's first moment, whole, in one round trip (call.answer_incoming).
--
-- Counts the call in its number's repeat window, reads the customer and the active
-- incidents, decides which incidents apply and whether the caller is affected (the rules
-- of ivr.incident.applies), tags and bands the call, and stores it once per CallSid with
-- its counters. A retried webhook (the record exists) counts nothing again and gets back
-- what the first attempt decided. At most once a minute it also sweeps calls_active and the
-- waiting line of calls older than STALE_AFTER (their final status callback never came),
-- and trims calls_recent to RECENT_MAX.
--
-- KEYS[1] customer hash            KEYS[6] calls_active zset
-- KEYS[2] incidents_active hash    KEYS[7] metrics calls-by-kinds hash
-- KEYS[3] caller_calls zset        KEYS[8] waiting zset
--         (unused when withheld)   KEYS[9] calls_swept string
-- KEYS[4] call hash
-- KEYS[5] calls_recent zset
-- ARGV[1] CallSid   ARGV[2] now, epoch seconds   ARGV[3] phone ('' when withheld)
-- ARGV[4] To        ARGV[5] now, ISO (created_at)
-- ARGV[6] repeat window, seconds   ARGV[7] repeat threshold   ARGV[8] default language
-- ARGV[9] call TTL, seconds        ARGV[10] RECENT_MAX        ARGV[11] STALE_AFTER, seconds
-- ARGV[12], ARGV[13] the key of an incident's number set and of its counters, '*' for its id
-- Returns {created 0/1, lang, tags JSON, counted incident ids JSON, active incident pairs}.
--
-- The incidents' number sets and counter keys, known only once the active incidents are
-- read, come as shapes from ivr/keys.py: every key shares the `{ivr}` slot, so Redis
-- Cluster serves them from this node. The constants below mirror ivr/call.py and ivr/incident.py (tests/test_lua.py
-- keeps them equal). Each redis.call costs Redis's one thread a few µs and this runs for
-- every caller: it reads only the customer fields it uses, trims the number's window and
-- looks up its first call only for a repeat, and counts the call's metrics in one field.

local BAND_PRIORITY, BAND_AFFECTED, BAND_OTHER = 0, 1, 2
local BAND_SCALE = 10000000000000
local RANK = {critical = 1, major = 2, minor = 3}
local METRIC_TAGS = {'affected', 'vip', 'repeat', 'priority'}

local function key_for(shape, id)  -- a key shape of ivr/keys.py: the id where its '*' is
  local at = string.find(shape, '*', 1, true)
  return string.sub(shape, 1, at - 1) .. id .. string.sub(shape, at + 1)
end

local active = redis.call('HGETALL', KEYS[2])
local stored = redis.call('HMGET', KEYS[4], 'lang', 'tags', 'incidents')
if stored[1] then return {0, stored[1], stored[2], stored[3], active} end

local sid, epoch, phone = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local window, threshold = tonumber(ARGV[6]), tonumber(ARGV[7])
local place, first = 1, false
if phone ~= '' then
  local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[2], sid)
  place = redis.call('ZCARD', KEYS[3])
  if place > 1 then  -- calls before this one: drop those older than the window, then count
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (epoch - window))
    local score = added == 0 and redis.call('ZSCORE', KEYS[3], sid)
    if score then
      place = redis.call('ZCOUNT', KEYS[3], '-inf', score)
    else
      if added == 0 then  -- its own entry (record lost) fell out of the window: anew
        redis.call('ZADD', KEYS[3], ARGV[2], sid)
      end
      place = redis.call('ZCARD', KEYS[3])
    end
    if place > 1 then first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2] end
  end
  redis.call('EXPIRE', KEYS[3], window)
end
if epoch - tonumber(redis.call('GET', KEYS[9]) or 0) >= 60 then
  redis.call('SET', KEYS[9], ARGV[2])
  local stale = epoch - tonumber(ARGV[11])
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. stale)
  for band = BAND_PRIORITY, BAND_OTHER do
    redis.call('ZREMRANGEBYSCORE', KEYS[8], band * BAND_SCALE,
               '(' .. (band * BAND_SCALE + stale * 1000))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -1 - tonumber(ARGV[10]))
end

local c = {}
if phone ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'phone', 'name', 'tier', 'services', 'region',
                       'language')
  if f[1] then
    c = {phone = f[1], name = f[2] or nil, tier = f[3] or nil, services = f[4] or nil,
         region = f[5] or nil, language = f[6] or nil}
  end
end
local known = c.phone ~= nil
local services = {}
if known then
  for _, s in ipairs(cjson.decode(c.services or '[]')) do services[s] = true end
end
local docs = {}
for i = 2, #active, 2 do docs[#docs + 1] = cjson.decode(active[i]) end
table.sort(docs, function(a, b)
  if RANK[a.severity] ~= RANK[b.severity] then return RANK[a.severity] < RANK[b.severity] end
  if a.created_at ~= b.created_at then return a.created_at < b.created_at end
  return a.id < b.id
end)
local counted, affected_ids, hits = {}, {}, {}
for _, doc in ipairs(docs) do
  local scope = type(doc.scope) == 'table' and doc.scope or {}
  local hit = false
  if phone ~= '' and (tonumber(scope.number_count) or 0) > 0 then
    hit = redis.call('SISMEMBER', key_for(ARGV[12], doc.id), phone) == 1
  end
  if known and not hit and type(scope.services) == 'table' then
    for _, s in ipairs(scope.services) do if services[s] then hit = true end end
  end
  if known and not hit and (c.region or '') ~= '' and type(scope.regions) == 'table' then
    for _, r in ipairs(scope.regions) do if r == c.region then hit = true end end
  end
  if doc.audience == 'all' or hit then
    counted[#counted + 1] = doc.id
    hits[#counted] = hit
    if hit then affected_ids[#affected_ids + 1] = doc.id end
  end
end
local vip = known and c.tier == 'vip'
local tags = {}
if #affected_ids > 0 then tags[#tags + 1] = 'affected' end
if vip then tags[#tags + 1] = 'vip' end
if place >= threshold then tags[#tags + 1] = 'repeat' end
for _, id in ipairs(affected_ids) do tags[#tags + 1] = 'incident:' .. id end
local band = tostring((#affected_ids > 0 or vip) and BAND_AFFECTED or BAND_OTHER)
local function list(items)  -- as Python's json.dumps writes a list of strings
  if #items == 0 then return '[]' end
  local quoted = {}
  for i, s in ipairs(items) do quoted[i] = cjson.encode(s) end
  return '[' .. table.concat(quoted, ', ') .. ']'
end
local lang = ARGV[8]
if known then lang = c.language or 'ja' end
local tags_json, ids_json = list(tags), list(counted)
local first_at = ARGV[2]
if first then first_at = tostring(math.floor(tonumber(first))) end
redis.call('HSET', KEYS[4], 'call_sid', sid, 'from', phone, 'to', ARGV[4],
  'withheld', phone == '' and '1' or '0', 'lang', lang, 'tags', tags_json,
  'incidents', ids_json, 'band', band, 'state', 'greeting', 'created_at', ARGV[5],
  'customer_name', known and (c.name or '') or '', 'tier', known and (c.tier or 'standard') or '',
  'services', known and (c.services or '[]') or '[]', 'call_number', tostring(place),
  'first_call_at', first_at)
redis.call('EXPIRE', KEYS[4], ARGV[9])
redis.call('ZADD', KEYS[5], ARGV[2], sid)
redis.call('ZADD', KEYS[6], ARGV[2], sid)
for i, id in ipairs(counted) do
  local key = key_for(ARGV[13], id)
  redis.call('HINCRBY', key, 'calls', 1)
  if hits[i] then redis.call('HINCRBY', key, 'affected_calls', 1) end
end
local has, kinds = {}, {}  -- metrics: one counter per combination of tag kinds
for _, t in ipairs(tags) do has[t] = true end
for _, kind in ipairs(METRIC_TAGS) do
  if has[kind] then kinds[#kinds + 1] = kind end
end
redis.call('HINCRBY', KEYS[7], #kinds > 0 and table.concat(kinds, ',') or 'untagged', 1)
return {1, lang, tags_json, ids_json, active}
