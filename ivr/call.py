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

# The waiting line orders callers by band, then by when they joined: a score of
# band * BAND_SCALE + epoch ms. ivr/lua/incoming.lua and enqueue.lua hold the same numbers
# (tests/test_lua.py keeps them equal).
BAND_PRIORITY, BAND_AFFECTED, BAND_OTHER = 0, 1, 2
BAND_SCALE = 10**13
TRANSCRIPT_MAX = 1000

STALE_AFTER = 24 * 3600
"""A call still listed as active or waiting this long after it came in lost its final status
callback: Twilio ends every call well within a day."""

METRIC_TAGS = ("affected", "vip", "repeat", "priority")
"""Tag kinds /metrics counts calls by (ivr_calls_total{tag}); a call with none is 'untagged'.
Incident ids are left out to keep the label set bounded (ivr/lua/incoming.lua lists them in
this order)."""


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


def announcement_spoken(svc: Services, item: Announcement, lang: str, *,
                        keep_lines: bool = False) -> str:
    """The words said of one incident, after its recording when one is published (then the
    SV's text is not repeated): the text, ETA and next update in `lang`. /voice/incoming says
    this and the console's preview (ivr.preview) shows it, so the two cannot drift;
    `keep_lines` keeps the prompt's line breaks (the preview's sentences)."""
    return svc.prompts.render(
        "announcement", lang, keep_lines=keep_lines,
        text="" if item.recording else item.text or "",
        eta=svc.local(item.eta), next_update=svc.local(item.next_update_at))


@dataclass(frozen=True)
class Greeting:
    """What /voice/incoming plays and how the call was tagged, as incoming.lua decided."""

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


def answer_incoming(svc: Services, call: CallInfo) -> Greeting:
    """Count, look up, tag and record a new call in one round trip (ivr/lua/incoming.lua),
    and say which incidents to announce. Twilio retrying the webhook changes nothing and gets
    the first attempt's tags (`created` False)."""
    phone, now = call.phone, svc.now()
    repeat = svc.flows.escalation["repeat"]
    created, lang, tags, ids, active = svc.script("incoming")(
        keys=[keys.customer(phone or ""), keys.incidents_active(),
              keys.caller_calls(phone or ""), keys.call(call.call_sid),
              keys.calls_recent(), keys.calls_active(), keys.metrics_calls_by_kinds(),
              keys.waiting(), keys.calls_swept()],
        args=[call.call_sid, int(now.timestamp()), phone or "", call.to, now.isoformat(),
              int(repeat["window_hours"]) * 3600, int(repeat["threshold"]),
              svc.flows.default_language, keys.CALL_TTL, keys.RECENT_CALLS_MAX, STALE_AFTER,
              keys.incident_numbers("*"), keys.incident_counters("*")])
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
    found = svc.script("enqueue")(keys=[keys.call(call_sid), keys.waiting()],
                                  args=[call_sid, now_ms, len(fields), *field_args(fields)])
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
    sid = svc.script("next_caller")(
        keys=[keys.waiting(), keys.agent_assignment(agent_call_sid)],
        args=[agent_call_sid, keys.AGENT_ASSIGNMENT_TTL, keys.call("*")])
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
    done = svc.script("close_call")(
        keys=[keys.call(call_sid), keys.calls_active(), keys.waiting(),
              keys.metrics_escalations()],
        args=[call_sid, len(fields), *field_args(fields)])
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
    return bool(svc.script("mark_call")(keys=[keys.call(call_sid)], args=field_args(fields)))


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
