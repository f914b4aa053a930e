"""Call records: who called, what they were told, their tags, and their place in line.

The voice path touches Redis at most twice per webhook (one read pipeline, one Lua script),
and every write is keyed by CallSid so a webhook that Twilio retries changes nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr import incident, keys
from ivr.customer import Customer
from ivr.phone import normalize
from ivr.services import Services

BAND_PRIORITY, BAND_AFFECTED, BAND_OTHER = 0, 1, 2
BAND_SCALE = 10**13
TRANSCRIPT_MAX = 1000

# Creates the record once per CallSid and counts the call on each incident it concerns (and,
# for /metrics, under each tag kind it carries).
# KEYS: call, calls_recent, calls_active, metrics calls-by-tag, counters of each incident;
# ARGV: sid, epoch, ttl, recent_max, n_fields, field/value pairs…, then one "1"/"0" affected
# flag per incident, then the tag kinds to count (METRIC_TAGS, or 'untagged').
_RECORD_CALL = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + 2 * n))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[4]))
for i = 5, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'calls', 1)
  if ARGV[5 + 2 * n + i - 4] == '1' then redis.call('HINCRBY', KEYS[i], 'affected_calls', 1) end
end
redis.call('HINCRBY', KEYS[4], 'all', 1)  -- metrics
for j = 6 + 2 * n + #KEYS - 4, #ARGV do redis.call('HINCRBY', KEYS[4], ARGV[j], 1) end  -- metrics
return 1
"""

METRIC_TAGS = ("affected", "vip", "repeat", "priority")
"""Tag kinds /metrics counts calls by (ivr_calls_total{tag}); a call with none is 'untagged'.
Incident ids are left out to keep the label set bounded."""

# Puts a known call in the waiting line once (a retried webhook keeps its place) and records
# what the caller said. KEYS: call, waiting; ARGV: sid, now_ms, n, field/value pairs…
# Returns {band, lang, tags JSON}, or false when the call has no record or has ended.
_ENQUEUE = """
local band = redis.call('HGET', KEYS[1], 'band')
if not band then return false end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'completed' then return false end
local n = tonumber(ARGV[3])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * n)) end
if state ~= 'queued' and state ~= 'connecting' and state ~= 'connected'
    and state ~= 'transfer' then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at_ms', ARGV[2])
  redis.call('ZADD', KEYS[2], 'NX', tonumber(band) * 1e13 + tonumber(ARGV[2]), ARGV[1])
end
return {tonumber(band), redis.call('HGET', KEYS[1], 'lang'), redis.call('HGET', KEYS[1], 'tags')}
"""

# Gives an operator the next waiting caller: the same one again if this operator's webhook is
# retried; skips callers who hung up. KEYS: waiting, agent assignment; ARGV: agent sid, ttl,
# call key prefix. Returns the caller's CallSid or false.
_NEXT_CALLER = """
local assigned = redis.call('GET', KEYS[2])
if assigned then return assigned end
while true do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then return false end
  local sid = popped[1]
  local key = ARGV[3] .. sid
  if redis.call('HGET', key, 'state') == 'queued' then
    redis.call('HSET', key, 'state', 'connecting', 'agent_call_sid', ARGV[1])
    redis.call('SET', KEYS[2], sid, 'EX', ARGV[2])
    return sid
  end
end
"""

# Closes a call from its status callback; unknown sids (an operator's own leg) are ignored.
# KEYS: call, calls_active, waiting, metrics escalations; ARGV: sid, n, field/value pairs…
_CLOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local esc = redis.call('HGET', KEYS[1], 'esc_state')
if esc == 'dialing' or esc == 'ringing' then
  redis.call('HSET', KEYS[1], 'esc_state', 'abandoned')
  local reason = redis.call('HGET', KEYS[1], 'esc_reason') or ''
  redis.call('HINCRBY', KEYS[4], reason .. '|abandoned', 1)  -- metrics
end
redis.call('HSET', KEYS[1], 'state', 'completed', unpack(ARGV, 3, 2 + 2 * tonumber(ARGV[2])))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


# Counts one call from a number in its sliding window, once per CallSid (a retried webhook
# re-adds the same member). KEYS: the number's calls; ARGV: sid, epoch, window seconds.
# Returns {this call's place in the window (1 = first), epoch of the window's first call}:
# the count at insertion (atomic, so simultaneous calls get 1, 2, 3…), or on a retry the
# calls up to this one's arrival time.
_COUNT_CALL = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3])))
local place
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 1 then
  place = redis.call('ZCARD', KEYS[1])
else
  place = redis.call('ZCOUNT', KEYS[1], '-inf', redis.call('ZSCORE', KEYS[1], ARGV[1]))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {place, first[2]}
"""

_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


@dataclass(frozen=True)
class CallInfo:
    """The parts of Twilio's webhook form the service uses; nothing else leaves the view."""

    call_sid: str
    phone: str | None
    to: str
    raw_from: str

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> CallInfo:
        sid = form.get("CallSid", "")
        if not (sid.startswith("CA") and sid.isalnum() and len(sid) <= 64):
            sid = ""
        raw_from = (form.get("From") or "")[:64]
        return cls(call_sid=sid, phone=normalize(raw_from), to=(form.get("To") or "")[:64],
                   raw_from=raw_from)


@dataclass(frozen=True)
class Announcement:
    incident_id: str
    recording: str | None
    text: str | None
    eta: str | None
    next_update_at: str | None
    status: str


@dataclass
class Greeting:
    """What /voice/incoming plays: in which language, which incidents, and the call's tags."""

    lang: str
    tags: list[str]
    announcements: list[Announcement]
    customer: Customer | None
    new: bool = True
    band: int = BAND_OTHER
    incident_ids: list[str] = field(default_factory=list)
    call_number: int = 1
    first_call_at: float | None = None

    @property
    def repeat(self) -> bool:
        return "repeat" in self.tags


@dataclass(frozen=True)
class Lookup:
    """What Redis knows about a caller the moment they call."""

    customer: Customer | None
    incidents: list[dict[str, Any]]
    call_number: int = 1
    first_call_at: float | None = None


def caller_lookup(svc: Services, call: CallInfo) -> Lookup:
    """The customer record, every active incident and the repeat count, in one round trip.

    Counting here (before the record exists) is safe because the count is keyed by CallSid:
    a retried webhook finds its own member and gets the same place in the window.
    """
    phone = call.phone
    window = int(svc.flows.escalation["repeat"]["window_hours"]) * 3600
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hgetall(keys.customer(phone) if phone else keys.customer("unknown"))
    pipe.hgetall(keys.incidents_active())
    if phone and call.call_sid:
        pipe.eval(_COUNT_CALL, 1, keys.caller_calls(phone), call.call_sid,
                  int(svc.now().timestamp()), window)
    results = pipe.execute()
    data, active = results[0], results[1]
    customer = Customer.from_hash(data) if phone else None
    incidents = sorted((json.loads(v) for v in active.values()),
                       key=lambda d: (incident.SEVERITIES.index(d["severity"]), d["created_at"]))
    if len(results) == 3:
        place, first = results[2]
        return Lookup(customer, incidents, int(place), float(first) if first else None)
    return Lookup(customer, incidents)


def plan_greeting(svc: Services, call: CallInfo, lookup: Lookup) -> Greeting:
    customer, incidents = lookup.customer, lookup.incidents
    lang = customer.language if customer else svc.flows.default_language
    tags: list[str] = []
    announcements: list[Announcement] = []
    affected_ids: list[str] = []
    counted: list[str] = []
    for doc in incidents:
        announce, affected = incident.applies(doc, call.phone, customer)
        if not announce:
            continue
        counted.append(doc["id"])
        if affected:
            affected_ids.append(doc["id"])
        recording, text = incident.announcement_for(doc, lang)
        announcements.append(Announcement(doc["id"], recording, text, doc.get("eta"),
                                          doc.get("next_update_at"), doc["status"]))
    if affected_ids:
        tags.append("affected")
    if customer and customer.tier == "vip":
        tags.append("vip")
    if lookup.call_number >= int(svc.flows.escalation["repeat"]["threshold"]):
        tags.append("repeat")
    tags += [f"incident:{i}" for i in affected_ids]
    band = BAND_AFFECTED if ("affected" in tags or "vip" in tags) else BAND_OTHER
    return Greeting(lang=lang, tags=tags, announcements=announcements, customer=customer,
                    band=band, incident_ids=counted, call_number=lookup.call_number,
                    first_call_at=lookup.first_call_at)


def record_incoming(svc: Services, call: CallInfo, greeting: Greeting) -> bool:
    """Store the call once per CallSid; False when this is Twilio retrying the webhook."""
    now = svc.now()
    record = {
        "call_sid": call.call_sid,
        "from": call.phone or "",
        "to": call.to,
        "withheld": "1" if call.phone is None else "0",
        "lang": greeting.lang,
        "tags": json.dumps(greeting.tags),
        "incidents": json.dumps(greeting.incident_ids),
        "band": str(greeting.band),
        "state": "greeting",
        "created_at": now.isoformat(),
        "customer_name": greeting.customer.name if greeting.customer else "",
        "tier": greeting.customer.tier if greeting.customer else "",
        "services": json.dumps(greeting.customer.services if greeting.customer else [],
                               ensure_ascii=False),
        "call_number": str(greeting.call_number),
        "first_call_at": str(int(greeting.first_call_at or now.timestamp())),
    }
    flat = [x for pair in record.items() for x in pair]
    affected = ["1" if f"incident:{i}" in greeting.tags else "0" for i in greeting.incident_ids]
    kinds = [t for t in METRIC_TAGS if t in greeting.tags] or ["untagged"]
    created = svc.redis.eval(
        _RECORD_CALL,
        4 + len(greeting.incident_ids),
        keys.call(call.call_sid), keys.calls_recent(), keys.calls_active(),
        keys.metrics_calls_by_tag(),
        *[keys.incident_counters(i) for i in greeting.incident_ids],
        call.call_sid, int(now.timestamp()), keys.CALL_TTL, keys.RECENT_CALLS_MAX,
        len(record), *flat, *affected, *kinds,
    )
    return bool(created)


@dataclass(frozen=True)
class Queued:
    band: int
    lang: str
    tags: list[str]


def enqueue(svc: Services, call_sid: str, said: Mapping[str, str] | None = None
            ) -> Queued | None:
    """Join the service's waiting line (once); None when the call has no record."""
    now_ms = int(svc.now().timestamp() * 1000)
    fields = {k: v for k, v in (said or {}).items() if v}
    flat = [x for pair in fields.items() for x in pair]
    found = svc.redis.eval(_ENQUEUE, 2, keys.call(call_sid), keys.waiting(), call_sid, now_ms,
                           len(fields), *flat)
    if not found:
        return None
    band, lang, tags = found
    return Queued(int(band), str(lang), json.loads(tags or "[]"))


def next_caller(svc: Services, agent_call_sid: str) -> dict[str, Any] | None:
    """Take the waiting caller with the highest priority for this operator."""
    sid = svc.redis.eval(_NEXT_CALLER, 2, keys.waiting(), keys.agent_assignment(agent_call_sid),
                         agent_call_sid, keys.AGENT_ASSIGNMENT_TTL, keys.call(""))
    return get(svc, sid) if sid else None


def close(svc: Services, call_sid: str, status: str, duration: str | None) -> bool:
    fields = {"status": status[:32], "ended_at": svc.now().isoformat()}
    if duration and duration.isdigit():
        fields["duration"] = duration
    flat = [x for pair in fields.items() for x in pair]
    done = svc.redis.eval(_CLOSE, 4, keys.call(call_sid), keys.calls_active(), keys.waiting(),
                          keys.metrics_escalations(), call_sid, len(fields), *flat)
    return bool(done)


def get(svc: Services, call_sid: str) -> dict[str, Any] | None:
    return _decode(svc.redis.hgetall(keys.call(call_sid)))


def _decode(data: Mapping[str, str]) -> dict[str, Any] | None:
    if not data:
        return None
    record: dict[str, Any] = dict(data)
    for name in ("tags", "incidents", "context", "services", "esc_candidates"):
        if name in record:
            record[name] = json.loads(record[name])
    record.setdefault("tags", [])
    record["band"] = int(record.get("band", BAND_OTHER))
    return record


def list_calls(svc: Services, *, active: bool, tag: str | None, limit: int,
               index: str | None = None) -> list[dict[str, Any]]:
    """Newest first; the tag filter reads records, which is fine at the console's page sizes."""
    index = index or (keys.calls_active() if active else keys.calls_recent())
    sids = svc.redis.zrevrange(index, 0, (limit if not tag else limit * 20) - 1)
    pipe = svc.redis.pipeline(transaction=False)
    for sid in sids:
        pipe.hgetall(keys.call(sid))
    out = []
    for data in pipe.execute():
        record = _decode(data)
        if record and (not tag or tag in record["tags"]) \
                and not (active and record.get("state") == "completed"):
            out.append(record)
        if len(out) >= limit:
            break
    return out


def mark(svc: Services, call_sid: str, **fields: str) -> bool:
    """Set fields on an existing call record; never creates one for an unknown CallSid."""
    flat = [x for pair in fields.items() for x in pair]
    return bool(svc.redis.eval(_MARK, 1, keys.call(call_sid), *flat))


@dataclass(frozen=True)
class Waiting:
    """What the hold loop tells one caller."""

    lang: str
    place: int | None
    latest: str | None
    status_code: str | None
    incident_id: str | None
    phone: str | None


def waiting_status(svc: Services, call_sid: str) -> Waiting:
    """Language, place in line and the newest word on the caller's incident, in one trip."""
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hmget(keys.call(call_sid), "lang", "incidents", "from")
    pipe.zrank(keys.waiting(), call_sid)
    pipe.hgetall(keys.incidents_active())
    (lang, incident_ids, phone), rank, active = pipe.execute()
    lang = lang or svc.flows.default_language
    docs = [json.loads(active[i]) for i in json.loads(incident_ids or "[]") if i in active]
    docs.sort(key=lambda d: incident.SEVERITIES.index(d["severity"]))
    top = docs[0] if docs else None
    return Waiting(lang=lang, place=None if rank is None else int(rank) + 1,
                   latest=incident.latest_status(top, lang) if top else None,
                   status_code=top["status"] if top else None,
                   incident_id=top["id"] if top else None, phone=phone or None)


def json_list(items: list[str]) -> str:
    return json.dumps(items, ensure_ascii=False)
