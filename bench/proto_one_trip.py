"""A measured proposal: /voice/incoming's caller logic in one Redis round trip.

Run from the repository root:
    .venv/bin/python bench/proto_one_trip.py [--calls 3000] [--json out.json]

Today the view makes two trips: caller_lookup (a pipeline: customer, active incidents, the
repeat-window script) and record_incoming (a script), because the record's tags, language
and band are planned in Python from what the first trip read. INCOMING below does all of
it in one EVALSHA: read, count, plan (the same rules as ivr.call.plan_greeting and
ivr.incident.applies) and record, and returns what the view still needs to build the TwiML.

This script is not used by the service. It checks the idea and measures it: the same calls
(bench's caller mix, frozen clock) go through the current functions into one Redis
database and through INCOMING into another, every key of the two databases must be equal,
and then the two paths are timed against each other, interleaved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    app_config,
    db_of,
    declare_incident,
    redis_url,
    seed_customers,
    seed_roster,
    with_db,
)
from loadgen import CallerMix, twilio_form  # noqa: E402

from ivr import call as calls  # noqa: E402
from ivr import incident, keys  # noqa: E402
from ivr.customer import Customer  # noqa: E402
from ivr.services import Services, build_services  # noqa: E402

# KEYS: customer, incidents_active, caller_calls ('' when withheld), call, calls_recent,
# calls_active, metrics calls-by-tag ('' for none). ARGV: sid, epoch, window, call_ttl,
# recent_max, threshold, phone ('' when withheld), to, created_at, default_lang, counters key
# prefix, counters key suffix, then the tag kinds /metrics counts (ivr.call.METRIC_TAGS).
# Returns {created 0/1, customer pairs, active incident pairs, place, first call epoch}.
INCOMING = """
local phone = ARGV[7]
local place, first = 1, false
if phone ~= '' then
  local epoch = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (epoch - tonumber(ARGV[3])))
  if redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1]) == 1 then
    place = redis.call('ZCARD', KEYS[3])
  else
    place = redis.call('ZCOUNT', KEYS[3], '-inf', redis.call('ZSCORE', KEYS[3], ARGV[1]))
  end
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
end
local cust = redis.call('HGETALL', KEYS[1])
local active = redis.call('HGETALL', KEYS[2])
if redis.call('EXISTS', KEYS[4]) == 1 then return {0, cust, active, place, first} end

local c = {}
for i = 1, #cust, 2 do c[cust[i]] = cust[i + 1] end
local known = phone ~= '' and c.phone ~= nil
local services = {}
if known then
  for _, s in ipairs(cjson.decode(c.services or '[]')) do services[s] = true end
end
local rank = {critical = 1, major = 2, minor = 3}
local docs = {}
for i = 2, #active, 2 do docs[#docs + 1] = cjson.decode(active[i]) end
table.sort(docs, function(a, b)
  if rank[a.severity] ~= rank[b.severity] then return rank[a.severity] < rank[b.severity] end
  return a.created_at < b.created_at
end)
local counted, affected_ids, affected_flag = {}, {}, {}
for _, doc in ipairs(docs) do
  local scope = doc.scope
  if type(scope) ~= 'table' then scope = {} end
  local hit = false
  if phone ~= '' and type(scope.numbers) == 'table' then
    for _, n in ipairs(scope.numbers) do if n == phone then hit = true end end
  end
  if known and not hit and type(scope.services) == 'table' then
    for _, s in ipairs(scope.services) do if services[s] then hit = true end end
  end
  if known and not hit and (c.region or '') ~= '' and type(scope.regions) == 'table' then
    for _, r in ipairs(scope.regions) do if r == c.region then hit = true end end
  end
  if doc.audience == 'all' or hit then
    counted[#counted + 1] = doc.id
    affected_flag[#counted] = hit
    if hit then affected_ids[#affected_ids + 1] = doc.id end
  end
end
local tags = {}
if #affected_ids > 0 then tags[#tags + 1] = 'affected' end
if known and c.tier == 'vip' then tags[#tags + 1] = 'vip' end
if place >= tonumber(ARGV[6]) then tags[#tags + 1] = 'repeat' end
for _, id in ipairs(affected_ids) do tags[#tags + 1] = 'incident:' .. id end
local band = '2'
if #affected_ids > 0 or (known and c.tier == 'vip') then band = '1' end
-- json.dumps of a list of ASCII strings: ", " between items
local function list(items)
  if #items == 0 then return '[]' end
  local quoted = {}
  for i, s in ipairs(items) do quoted[i] = cjson.encode(s) end
  return '[' .. table.concat(quoted, ', ') .. ']'
end
local lang = ARGV[10]
if known then lang = c.language or 'ja' end
local first_at = ARGV[2]
if first then first_at = tostring(math.floor(tonumber(first))) end
redis.call('HSET', KEYS[4], 'call_sid', ARGV[1], 'from', phone, 'to', ARGV[8],
  'withheld', phone == '' and '1' or '0', 'lang', lang, 'tags', list(tags),
  'incidents', list(counted), 'band', band, 'state', 'greeting', 'created_at', ARGV[9],
  'customer_name', known and (c.name or '') or '', 'tier', known and (c.tier or 'standard') or '',
  'services', known and (c.services or '[]') or '[]', 'call_number', tostring(place),
  'first_call_at', first_at)
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -1 - tonumber(ARGV[5]))
for i, id in ipairs(counted) do
  local key = ARGV[11] .. id .. ARGV[12]
  redis.call('HINCRBY', key, 'calls', 1)
  if affected_flag[i] then redis.call('HINCRBY', key, 'affected_calls', 1) end
end
if KEYS[7] ~= '' then
  redis.call('HINCRBY', KEYS[7], 'all', 1)
  local has, counted_kinds = {}, 0
  for _, t in ipairs(tags) do has[t] = true end
  for j = 13, #ARGV do
    if has[ARGV[j]] then
      redis.call('HINCRBY', KEYS[7], ARGV[j], 1)
      counted_kinds = counted_kinds + 1
    end
  end
  if counted_kinds == 0 then redis.call('HINCRBY', KEYS[7], 'untagged', 1) end
end
return {1, cust, active, place, first}
"""


class OneTrip:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.script = svc.redis.register_script(INCOMING)
        prefix, suffix = keys.incident_counters("\0").split("\0")
        self.counters = (prefix, suffix)
        # follows ivr.call as it is: the /metrics tag counter when record_incoming keeps one
        self.metrics = (keys.metrics_calls_by_tag()
                        if hasattr(keys, "metrics_calls_by_tag") else "")
        self.kinds = list(getattr(calls, "METRIC_TAGS", ()))

    def __call__(self, call: calls.CallInfo) -> tuple[calls.Greeting, bool]:
        svc, phone = self.svc, call.phone
        now = svc.now()
        created, cust, active, place, first = self.script(
            keys=[keys.customer(phone or "unknown"), keys.incidents_active(),
                  keys.caller_calls(phone) if phone else "", keys.call(call.call_sid),
                  keys.calls_recent(), keys.calls_active(), self.metrics],
            args=[call.call_sid, int(now.timestamp()),
                  int(svc.flows.escalation["repeat"]["window_hours"]) * 3600, keys.CALL_TTL,
                  keys.RECENT_CALLS_MAX, int(svc.flows.escalation["repeat"]["threshold"]),
                  phone or "", call.to, now.isoformat(), svc.flows.default_language,
                  *self.counters, *self.kinds])
        data = dict(zip(cust[::2], cust[1::2], strict=True))
        docs = sorted((json.loads(v) for v in active[1::2]),
                      key=lambda d: (incident.SEVERITIES.index(d["severity"]),
                                     d["created_at"]))
        lookup = calls.Lookup(Customer.from_hash(data) if phone else None, docs, int(place),
                              float(first) if first else None)
        return calls.plan_greeting(svc, call, lookup), bool(created)


def current(svc: Services, call: calls.CallInfo) -> tuple[calls.Greeting, bool]:
    greeting = calls.plan_greeting(svc, call, calls.caller_lookup(svc, call))
    return greeting, calls.record_incoming(svc, call, greeting)


def dump(r: redis.Redis) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in r.scan_iter(count=10_000):
        kind = r.type(key)
        if key.startswith("ivr:customer"):
            continue
        if kind == "hash":
            out[key] = r.hgetall(key)
        elif kind == "zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            out[key] = r.get(key)
        elif kind == "set":
            out[key] = sorted(r.smembers(key))
        elif kind == "list":
            out[key] = r.lrange(key, 0, -1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    frozen = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    with redis_url(databases=2) as url:
        pair = []
        for db in (db_of(url), db_of(url) + 1):
            u = with_db(url, db)
            svc = build_services(app_config(u), clock=lambda: frozen, redis_timeout=5.0)
            svc.redis.flushdb()
            seed_customers(redis.Redis.from_url(u), 0, 10_000, updated_at=frozen.isoformat())
            declare_incident(svc)
            seed_roster(svc)
            pair.append(svc)
        real_svc, proto_svc = pair
        one_trip = OneTrip(proto_svc)
        froms = CallerMix(list(range(10_000)), seed=31).take(args.calls)
        infos = [calls.CallInfo.parse(twilio_form(f"CA{i:032x}", f))
                 for i, f in enumerate(froms)]
        infos += infos[:200]  # Twilio retrying 200 webhooks: nothing may change twice
        mismatched = 0
        for info in infos:
            (g1, c1), (g2, c2) = current(real_svc, info), one_trip(info)
            if (g1, c1) != (g2, c2):
                mismatched += 1
        a, b = dump(real_svc.redis), dump(proto_svc.redis)
        same = a == b
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                print(f"  differs: {key}: {str(a.get(key))[:150]} / {str(b.get(key))[:150]}")
                break
        print(f"{len(infos)} calls (200 of them retried): greetings differ for {mismatched}, "
              f"Redis contents {'identical' if same else 'DIFFER'}")

        timings: dict[str, list[float]] = {"current": [], "one_trip": []}
        cpu: dict[str, list[float]] = {"current": [], "one_trip": []}
        for n in range(args.rounds):
            batch = [calls.CallInfo.parse(twilio_form(f"CA{(n + 1) << 100 | i:032x}", f))
                     for i, f in enumerate(froms)]
            for name, fn in (("current", lambda c: current(real_svc, c)),
                             ("one_trip", one_trip)):
                w, p = time.perf_counter(), time.process_time()
                for info in batch:
                    fn(info)
                timings[name].append((time.perf_counter() - w) / len(batch) * 1e6)
                cpu[name].append((time.process_time() - p) / len(batch) * 1e6)
        result = {"calls": len(infos), "greetings_differ": mismatched, "redis_identical": same}
        for name in timings:
            result[f"{name}_us"] = round(min(timings[name]), 1)
            result[f"{name}_cpu_us"] = round(min(cpu[name]), 1)
            print(f"{name:<9} {min(timings[name]):7.1f} µs/call wall, "
                  f"{min(cpu[name]):7.1f} µs CPU (best of {args.rounds})")
        for svc in pair:
            svc.redis.flushdb()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if mismatched or not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
