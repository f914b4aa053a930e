"""Call records: who called, what they were told, their tags, and their place in line.

The voice path touches Redis once per webhook (one Lua script, or one pipeline), and every
write is keyed by CallSid so a webhook that Twilio retries changes nothing twice.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from rq.exceptions import DuplicateJobError

from ivr import incident, keys
from ivr.phone import caller_id, is_mobile
from ivr.services import Services, field_args

log = logging.getLogger(__name__)

BAND_PRIORITY, BAND_AFFECTED, BAND_OTHER = 0, 1, 2
BAND_SCALE = 10**13
_BAND_SCALE = f"local BAND_SCALE = {BAND_SCALE}\n"  # the waiting line's score, in Lua
TRANSCRIPT_MAX = 1000

# The caller's first moment, whole, in one round trip: count the call in the number's
# repeat window, read the customer and the active incidents, decide which incidents apply and
# whether the caller is affected (the rules of ivr.incident.applies), tag and band the call,
# and store it once per CallSid with its counters. A retried webhook (the record exists)
# counts nothing again and gets back what the first attempt decided. At most once a minute
# it also sweeps calls_active and the waiting line of calls older than STALE_AFTER, whose
# final status callback never came (Twilio ends calls long before), so the gauges and the
# place in line callers hear count no ghosts, and trims calls_recent to RECENT_MAX.
# Each redis.call costs a few µs of Redis's one thread on top of the command, and this
# script runs for every caller: it reads only the customer fields it uses, trims the
# number's window and looks up its first call only when the number called before, counts
# the call's metrics in one field (its combination of tag kinds), and sweeps once a minute.
# The settings (repeat window and threshold, default language, TTLs, METRIC_TAGS) and the
# constants it shares with Python (bands, severity order) are written into the source by
# _incoming_script, so each call sends only what changes and nothing is spelled twice.
# KEYS: customer, incidents_active, caller_calls (unused when withheld), call, calls_recent,
# calls_active, metrics calls-by-tag, waiting, calls_swept. ARGV: sid, epoch, phone ('' when
# withheld), to, created_at. The incidents' number sets and counter keys are built here
# from KEYS[2]'s hash-tag prefix: every key shares the `{ivr}` slot (ivr/keys.py), so Redis
# Cluster serves these undeclared keys from the same node.
# Returns {created 0/1, lang, tags JSON, incident ids JSON, active incident pairs}.
_INCOMING = """
local active = redis.call('HGETALL', KEYS[2])
local stored = redis.call('HMGET', KEYS[4], 'lang', 'tags', 'incidents')
if stored[1] then return {0, stored[1], stored[2], stored[3], active} end

local epoch, phone = tonumber(ARGV[2]), ARGV[3]
local place, first = 1, false
if phone ~= '' then
  local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[2], ARGV[1])
  place = redis.call('ZCARD', KEYS[3])
  if place > 1 then  -- calls before this one: drop those older than the window, then count
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (epoch - WINDOW))
    local score = added == 0 and redis.call('ZSCORE', KEYS[3], ARGV[1])
    if score then
      place = redis.call('ZCOUNT', KEYS[3], '-inf', score)
    else
      if added == 0 then  -- its own entry (record lost) fell out of the window: anew
        redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
      end
      place = redis.call('ZCARD', KEYS[3])
    end
    if place > 1 then first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2] end
  end
  redis.call('EXPIRE', KEYS[3], WINDOW)
end
if epoch - tonumber(redis.call('GET', KEYS[9]) or 0) >= 60 then
  redis.call('SET', KEYS[9], ARGV[2])
  local stale = epoch - STALE_AFTER
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. stale)
  for band = BAND_PRIORITY, BAND_OTHER do
    redis.call('ZREMRANGEBYSCORE', KEYS[8], band * BAND_SCALE,
               '(' .. (band * BAND_SCALE + stale * 1000))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -1 - RECENT_MAX)
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
local prefix = string.sub(KEYS[2], 1, string.find(KEYS[2], ':', 1, true)) .. 'incident:'
local counted, affected_ids, hits = {}, {}, {}
for _, doc in ipairs(docs) do
  local scope = type(doc.scope) == 'table' and doc.scope or {}
  local hit = false
  if phone ~= '' and (tonumber(scope.number_count) or 0) > 0 then
    hit = redis.call('SISMEMBER', prefix .. doc.id .. ':numbers', phone) == 1
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
if place >= THRESHOLD then tags[#tags + 1] = 'repeat' end
for _, id in ipairs(affected_ids) do tags[#tags + 1] = 'incident:' .. id end
local band = tostring((#affected_ids > 0 or vip) and BAND_AFFECTED or BAND_OTHER)
local function list(items)  -- as Python's json.dumps writes a list of strings
  if #items == 0 then return '[]' end
  local quoted = {}
  for i, s in ipairs(items) do quoted[i] = cjson.encode(s) end
  return '[' .. table.concat(quoted, ', ') .. ']'
end
local lang = DEFAULT_LANG
if known then lang = c.language or 'ja' end
local tags_json, ids_json = list(tags), list(counted)
local first_at = ARGV[2]
if first then first_at = tostring(math.floor(tonumber(first))) end
redis.call('HSET', KEYS[4], 'call_sid', ARGV[1], 'from', phone, 'to', ARGV[4],
  'withheld', phone == '' and '1' or '0', 'lang', lang, 'tags', tags_json,
  'incidents', ids_json, 'band', band, 'state', 'greeting', 'created_at', ARGV[5],
  'customer_name', known and (c.name or '') or '', 'tier', known and (c.tier or 'standard') or '',
  'services', known and (c.services or '[]') or '[]', 'call_number', tostring(place),
  'first_call_at', first_at)
redis.call('EXPIRE', KEYS[4], CALL_TTL)
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
for i, id in ipairs(counted) do
  local key = prefix .. id .. ':counters'
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
"""

STALE_AFTER = 24 * 3600
"""A call still listed as active or waiting this long after it came in lost its final status
callback: Twilio ends every call well within a day."""

METRIC_TAGS = ("affected", "vip", "repeat", "priority")
"""Tag kinds /metrics counts calls by (ivr_calls_total{tag}); a call with none is 'untagged'.
Incident ids are left out to keep the label set bounded."""

# Puts a known call in the waiting line once (a retried webhook keeps its place) and records
# what the caller said. KEYS: call, waiting; ARGV: sid, now_ms, n, field/value pairs…
# Returns {band, lang, tags JSON}, or false when the call has no record or has ended.
_ENQUEUE = _BAND_SCALE + """
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
        return cls(call_sid=sid, phone=caller_id(raw_from), to=(form.get("To") or "")[:64],
                   raw_from=raw_from)


@dataclass(frozen=True)
class Announcement:
    incident_id: str
    recording: str | None
    text: str | None
    eta: str | None
    next_update_at: str | None
    status: str


def announcement_of(doc: Mapping[str, Any], lang: str) -> Announcement:
    """What a caller in `lang` hears of one incident document."""
    recording, text = incident.announcement_for(doc, lang)
    return Announcement(doc["id"], recording, text, doc.get("eta"), doc.get("next_update_at"),
                        doc["status"])


@dataclass(frozen=True)
class Greeting:
    """What /voice/incoming plays and how the call was tagged, as _INCOMING decided."""

    lang: str
    tags: list[str]
    announcements: tuple[Announcement, ...]
    created: bool

    @property
    def repeat(self) -> bool:
        return "repeat" in self.tags


@functools.lru_cache(maxsize=64)
def _incident_doc(raw: str) -> dict[str, Any]:
    """Every caller reads the same few incident documents: parse each version once.
    The dict is shared by every caller; nothing may change it."""
    doc: dict[str, Any] = json.loads(raw)
    return doc


@functools.lru_cache(maxsize=8)
def _incoming_script(window: int, threshold: int, default_lang: str) -> str:
    """_INCOMING with this deployment's settings written in as Lua constants."""
    tags = ", ".join(json.dumps(t) for t in METRIC_TAGS)
    rank = ", ".join(f"{name} = {i}" for i, name in enumerate(incident.SEVERITIES, 1))
    return (f"local WINDOW, THRESHOLD, DEFAULT_LANG = {window}, {threshold}, "
            f"{json.dumps(default_lang)}\n"
            f"local CALL_TTL, RECENT_MAX, STALE_AFTER = {keys.CALL_TTL}, "
            f"{keys.RECENT_CALLS_MAX}, {STALE_AFTER}\n"
            f"local BAND_PRIORITY, BAND_AFFECTED, BAND_OTHER = {BAND_PRIORITY}, "
            f"{BAND_AFFECTED}, {BAND_OTHER}\n"
            f"local METRIC_TAGS, RANK = {{{tags}}}, {{{rank}}}\n" + _BAND_SCALE + _INCOMING)


def answer_incoming(svc: Services, call: CallInfo) -> Greeting:
    """Count, look up, tag and record a new call in one round trip (_INCOMING), and say
    which incidents to announce. Twilio retrying the webhook changes nothing and gets the
    first attempt's tags (`created` False)."""
    phone, now = call.phone, svc.now()
    repeat = svc.flows.escalation["repeat"]
    source = _incoming_script(int(repeat["window_hours"]) * 3600, int(repeat["threshold"]),
                              svc.flows.default_language)
    created, lang, tags, ids, active = svc.script(source)(
        keys=[keys.customer(phone or ""), keys.incidents_active(),
              keys.caller_calls(phone or ""), keys.call(call.call_sid),
              keys.calls_recent(), keys.calls_active(), keys.metrics_calls_by_kinds(),
              keys.waiting(), keys.calls_swept()],
        args=[call.call_sid, int(now.timestamp()), phone or "", call.to, now.isoformat()])
    docs = dict(zip(active[::2], active[1::2], strict=True))
    announcements = []
    for incident_id in json.loads(ids):
        if incident_id in docs:
            announcements.append(announcement_of(_incident_doc(docs[incident_id]), lang))
    return Greeting(lang, json.loads(tags), tuple(announcements), bool(created))


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
    found = svc.eval(_ENQUEUE, 2, keys.call(call_sid), keys.waiting(), call_sid, now_ms,
                     len(fields), *field_args(fields))
    if not found:
        return None
    band, lang, tags = found
    return Queued(int(band), str(lang), json.loads(tags or "[]"))


def requeue_priority(svc: Services, call_sid: str) -> list[str]:
    """Put a caller nobody could take back in the waiting line, at its front (band
    BAND_PRIORITY, state 'requeued'); their tags for the task."""
    mark(svc, call_sid, state="requeued", band=str(BAND_PRIORITY))
    queued = enqueue(svc, call_sid)
    return queued.tags if queued else []


def requeue_if_unanswered(svc: Services, call_sid: str, esc_state: str, *,
                          with_operator: bool = False) -> list[str] | None:
    """After an escalation started: when no SV is on call (`esc_state` 'exhausted') and no
    operator comes into the room with the caller, requeue them with priority and return
    their tags; otherwise None (the caller goes to their conference)."""
    if esc_state == "exhausted" and not with_operator:
        return requeue_priority(svc, call_sid)
    return None


def next_caller(svc: Services, agent_call_sid: str) -> dict[str, Any] | None:
    """Take the waiting caller with the highest priority for this operator."""
    sid = svc.eval(_NEXT_CALLER, 2, keys.waiting(), keys.agent_assignment(agent_call_sid),
                   agent_call_sid, keys.AGENT_ASSIGNMENT_TTL, keys.call(""))
    return get(svc, sid) if sid else None


def redirect_to_conference(svc: Services, caller_sid: str, url: str, agent_sid: str) -> None:
    """Queue the REST redirect that takes the caller out of the Twilio queue to `url` (their
    conference); the job id makes a retried operator webhook queue it once."""
    try:
        svc.queue.enqueue("worker.calls.redirect_call", caller_sid, url,
                          job_id=f"redirect-{caller_sid}", unique=True,
                          retry=None, description=f"redirect {caller_sid}")
        log.info("operator takes caller call_sid=%s agent_call_sid=%s", caller_sid, agent_sid)
    except DuplicateJobError:
        log.info("redirect already queued call_sid=%s", caller_sid)


def note_connected(svc: Services, call_sid: str, record: Mapping[str, Any], *, joined: bool,
                   taskrouter: bool) -> None:
    """The caller is now with an operator: mark the call connected, so an escalation does
    not move them away from one.

    `joined`: they meet in their conference (the REST redirect out of the queue). Otherwise
    the operator's <Dial><Queue> bridges the two directly, outside the conference; in
    TaskRouter mode that is noted as `bridge` 'queue', so that an escalation brings both
    into the room (the operator's <Dial action> follows the caller there). A retry keeps a
    later 'conference'. Without TaskRouter only the Redis-down operator line bridges so: its
    <Dial> has no action to follow the caller, and nobody is in the room, so the call is
    noted `bridge` 'direct' and an escalation is refused (BRIDGED_OUTSIDE_ROOM).
    """
    if joined:
        mark(svc, call_sid, state="connected")
    elif record.get("state") != "completed":
        how = "queue" if taskrouter else "direct"
        bridge = {} if record.get("bridge") else {"bridge": how}
        mark(svc, call_sid, state="connected", **bridge)


BRIDGED_OUTSIDE_ROOM = "direct"
"""`bridge` of a caller the Redis-down operator line took straight from Twilio's queue: they
talk outside their conference, where no SV can join them."""


def close(svc: Services, call_sid: str, status: str, duration: str | None) -> bool:
    fields = {"status": status[:32], "ended_at": svc.now().isoformat()}
    if duration and duration.isdigit():
        fields["duration"] = duration
    done = svc.eval(_CLOSE, 4, keys.call(call_sid), keys.calls_active(), keys.waiting(),
                    keys.metrics_escalations(), call_sid, len(fields), *field_args(fields))
    return bool(done)


def get(svc: Services, call_sid: str) -> dict[str, Any] | None:
    return decode(cast("dict[str, str]", svc.redis.hgetall(keys.call(call_sid))))


def decode(data: Mapping[str, str]) -> dict[str, Any] | None:
    """A call hash as a record (JSON fields parsed), or None for an empty hash."""
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
    sids = cast("list[str]", svc.redis.zrevrange(index, 0, (limit if not tag else limit * 20) - 1))
    pipe = svc.redis.pipeline(transaction=False)
    for sid in sids:
        pipe.hgetall(keys.call(sid))
    out = []
    for data in pipe.execute():
        record = decode(data)
        if record and (not tag or tag in record["tags"]) \
                and not (active and record.get("state") == "completed"):
            out.append(record)
        if len(out) >= limit:
            break
    return out


def mark(svc: Services, call_sid: str, **fields: str) -> bool:
    """Set fields on an existing call record; never creates one for an unknown CallSid."""
    return bool(svc.eval(_MARK, 1, keys.call(call_sid), *field_args(fields)))


@dataclass(frozen=True)
class Waiting:
    """What the hold loop tells one caller."""

    lang: str
    place: int | None
    latest: str | None
    status_code: str | None
    incident_id: str | None
    sms_phone: str | None
    """The caller's number when it can take an SMS (a mobile): only then is the incident's
    SMS offered and a key press subscribed. A landline, or an E.164-shaped From the
    numbering plan refuses (call.CallInfo keeps those), gets no offer."""


def waiting_status(svc: Services, call_sid: str) -> Waiting:
    """Language, place in line and the newest word on the caller's incident, in one trip."""
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hmget(keys.call(call_sid), "lang", "incidents", "from")
    pipe.zrank(keys.waiting(), call_sid)
    pipe.hgetall(keys.incidents_active())
    (lang, incident_ids, phone), rank, active = pipe.execute()
    lang = lang or svc.flows.default_language
    docs = [_incident_doc(active[i]) for i in json.loads(incident_ids or "[]") if i in active]
    docs.sort(key=lambda d: incident.SEVERITIES.index(d["severity"]))
    top = docs[0] if docs else None
    return Waiting(lang=lang, place=None if rank is None else int(rank) + 1,
                   latest=incident.latest_status(top, lang) if top else None,
                   status_code=top["status"] if top else None,
                   incident_id=top["id"] if top else None,
                   sms_phone=phone if phone and is_mobile(phone) else None)


def json_list(items: list[str]) -> str:
    return json.dumps(items, ensure_ascii=False)
