"""The contact centre's floor right now: calls in progress, the waiting line by band,
escalations under way with their 5W1H, and each active incident's latest SMS fan-out.

The console's live view shows this and asks for it every few seconds from every open
console, so it is read in two pipelined round trips whatever the number of calls shown,
and the console keeps one copy for a couple of seconds per process (ivr/console/live.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from ivr import call, incident, keys
from ivr.call import BAND_AFFECTED, BAND_OTHER, BAND_PRIORITY, BAND_SCALE
from ivr.phone import mask
from ivr.services import Services

CALLS_SHOWN = 50
IN_PROGRESS = ("dialing", "ringing", "accepted")
BANDS = (("priority", BAND_PRIORITY), ("affected", BAND_AFFECTED), ("other", BAND_OTHER))


@dataclass(frozen=True)
class LiveCall:
    call_sid: str
    caller: str  # masked
    state: str
    tags: list[str]
    waited_seconds: int


@dataclass(frozen=True)
class LiveEscalation:
    call_sid: str
    caller: str
    state: str
    reason: str
    attempt: int
    ringing: str | None
    accepted_by: str | None
    raised_by: str | None
    context: dict[str, Any] | None


@dataclass(frozen=True)
class FanOut:
    incident_id: str
    title: str
    seq: int
    recipients: int
    sent: int
    delivered: int
    failed: int
    halted: bool


@dataclass(frozen=True)
class Floor:
    at: datetime
    calls: list[LiveCall] = field(default_factory=list)
    active_calls: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    escalations: list[LiveEscalation] = field(default_factory=list)
    fan_outs: list[FanOut] = field(default_factory=list)


def _waited(record: dict[str, Any], now: datetime) -> int:
    queued_ms = int(record.get("queued_at_ms") or 0)
    if queued_ms:
        return max(0, int(now.timestamp() - queued_ms / 1000))
    try:
        return max(0, int((now - datetime.fromisoformat(record["created_at"])).total_seconds()))
    except (KeyError, ValueError):
        return 0


def snapshot(svc: Services, *, limit: int = CALLS_SHOWN) -> Floor:
    """Everything the live view shows, in two round trips: the indexes, then the records."""
    now = svc.now()
    pipe = svc.redis.pipeline(transaction=False)
    pipe.zrevrange(keys.calls_active(), 0, limit - 1)
    pipe.zcard(keys.calls_active())
    for _, band in BANDS:
        pipe.zcount(keys.waiting(), band * BAND_SCALE, f"({(band + 1) * BAND_SCALE}")
    pipe.hgetall(keys.incidents_active())
    sids, active_count, *bands, active = pipe.execute()
    docs = sorted((json.loads(raw) for raw in cast("dict[str, str]", active).values()),
                  key=lambda d: d["id"])
    pipe = svc.redis.pipeline(transaction=False)
    for sid in sids:
        pipe.hgetall(keys.call(sid))
    for doc in docs:
        pipe.scard(keys.sms_audience(doc["id"], int(doc.get("update_seq", 0))))
        pipe.hgetall(keys.incident_counters(doc["id"]))
        pipe.exists(keys.sms_halt(doc["id"], int(doc.get("update_seq", 0))))
    replies = pipe.execute()
    records = [call.decode(data) for data in replies[:len(sids)]]
    calls, escalations = [], []
    for record in records:
        if not record or record.get("state") == "completed":
            continue
        caller = mask(record.get("from") or "") if record.get("from") else "-"
        calls.append(LiveCall(record["call_sid"], caller, str(record.get("state", "")),
                              list(record["tags"]), _waited(record, now)))
        if record.get("esc_state") in IN_PROGRESS:
            first = int(record.get("esc_first") or 0)
            attempt = int(record.get("esc_attempt") or first) - first + 1
            accepted = record.get("esc_sv_name") if record["esc_state"] == "accepted" else None
            escalations.append(LiveEscalation(
                record["call_sid"], caller, record["esc_state"],
                str(record.get("esc_reason") or ""), attempt,
                None if accepted else record.get("esc_sv_name"), accepted,
                record.get("esc_raised_by") or None, record.get("context")))
    fan_outs = []
    rest = replies[len(sids):]
    for i, doc in enumerate(docs):
        scard, counters, halted = rest[3 * i:3 * i + 3]
        fan_outs.append(FanOut(doc["id"], doc["title"], int(doc.get("update_seq", 0)),
                               int(scard), int(counters.get("sms_sent", 0)),
                               int(counters.get("sms_delivered", 0)),
                               int(counters.get("sms_failed", 0)), bool(halted)))
    waiting = {name: int(n) for (name, _), n in zip(BANDS, bands, strict=True)}
    return Floor(now, calls, int(active_count), waiting, escalations, fan_outs)


def active_incidents(svc: Services) -> list[dict[str, Any]]:
    """The active incidents with counters, most severe first, then newest."""
    docs = [incident.load(svc, i) for i in incident.list_ids(svc, active_only=True)]
    return sorted(docs, key=lambda d: (incident.SEVERITIES.index(d["severity"]),
                                       -incident.from_iso(d["created_at"]).timestamp()))
