"""Warm transfer to a supervisor: who is rung, in which order, and what state it is in.

The escalation lives in the caller's call record (fields `esc_*`), so it is read with the
call and expires with it. Every transition is one Lua script (ivr/lua/escalation_*.lua)
that checks the attempt number, so a late status callback, a watchdog and an SV's key press
can race without moving the ladder twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq import Retry
from rq.exceptions import DuplicateJobError

from ivr import call, keys, supervisor
from ivr.services import Services, field_args

log = logging.getLogger(__name__)

OPEN = ("dialing", "ringing")
TRIGGERS = ("manager", "repeat", "operator", "anger")

OUTCOME_FIELDS = ("esc_outcome_result", "esc_outcome_note", "esc_outcome_by", "esc_outcome_at")
# What one escalation learned about its SV and how it ended: a call escalated again starts
# without them, so the API, the console and the watchdog never read the last one's SV.
_PER_ESCALATION = ("esc_sv_call_sid", "esc_sv_name", "esc_sv_phone", "esc_joined_at",
                   "esc_wait_seconds", "esc_accepted_leg", *OUTCOME_FIELDS)


@dataclass(frozen=True)
class Candidate:
    phone: str
    name: str
    lang: str


def ladder_reason(trigger: str, labels: frozenset[str] | set[str] = frozenset()) -> str:
    """The ladder to ring: a specialist when the caller's words say money or technical
    (a refund demand goes to billing even when phrased as "get me a manager"), else the
    trigger's own ladder."""
    if "money" in labels:
        return "money"
    if "technical" in labels and trigger != "repeat":
        return "technical"
    return trigger


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def build_context(svc: Services, record: dict[str, Any], *, trigger: str, reason: str,
                  note: str = "", active: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The 5W1H hand-over the SV hears and the console shows, from the call record.
    `active`: the active incidents hash when the caller has read it (a resolved incident is
    still read from its own key)."""
    now = svc.now().timestamp()
    created = datetime.fromisoformat(record["created_at"]).timestamp()
    queued_ms = int(record.get("queued_at_ms") or 0)
    incident_ids = record.get("incidents") or []
    started = None
    if incident_ids:
        raw = (active or {}).get(incident_ids[0]) or svc.redis.get(keys.incident(incident_ids[0]))
        started = json.loads(raw)["created_at"] if raw else None
    labels = [x for x in (record.get("intent") or "").split(",") if x]
    return {
        "who": {"name": record.get("customer_name") or "", "tier": record.get("tier") or "",
                "registered": bool(record.get("customer_name") or record.get("tier")),
                "call_number": int(record.get("call_number") or 1)},
        "what": {"transcript": record.get("transcript", ""), "intent": labels,
                 "purpose": record.get("purpose", "")},
        "where": {"line": record.get("to", ""), "services": record.get("services") or []},
        "when": {"incident_started_at": started,
                 "first_call_at": _iso(float(record.get("first_call_at") or created)),
                 "call_started_at": _iso(created)},
        "how": {"repeat_count": int(record.get("call_number") or 1),
                "waited_seconds": int(now - (queued_ms / 1000 if queued_ms else created)),
                "anger": "anger" in labels},
        "why": {"trigger": trigger, "reason": reason, "note": note},
    }


def start(svc: Services, call_sid: str, *, trigger: str, labels: frozenset[str] = frozenset(),
          raised_by: str = "", note: str = "", reason: str | None = None) -> str:
    """Begin a warm transfer once per call and queue the first SV's dial-out.

    Returns the escalation state: 'dialing' (or 'ringing'/'accepted' when Twilio retried the
    webhook), 'exhausted' when nobody on call fits the ladder, '' for an unknown call, and
    'abandoned' when the caller has already hung up. An exhausted escalation is started
    again only by an operator (`trigger` 'operator'); the caller's own triggers meeting it
    are Twilio retrying the webhook that raised it.
    """
    pipe = svc.redis.pipeline(transaction=False)  # everything it reads, in one round trip
    pipe.hgetall(keys.call(call_sid))
    pipe.hgetall(keys.supervisor_roster())
    pipe.hgetall(keys.incidents_active())
    raw_record, roster, active = pipe.execute()
    record = call.decode(raw_record)
    if record is None:
        return ""
    reason = reason or ladder_reason(trigger, labels)
    people = [Candidate(s.phone, s.name, s.lang)
              for s in supervisor.candidates(svc, reason, supervisor.decode(roster))]
    context = build_context(svc, record, trigger=trigger, reason=reason, note=note,
                            active=active)
    now = svc.now()
    with_operator = record.get("state") in ("connecting", "connected")
    fields = {
        "esc_state": "dialing" if people else "exhausted", "esc_trigger": trigger,
        "esc_reason": reason, "esc_raised_by": raised_by, "esc_note": note,
        "esc_started_at": now.isoformat(), "esc_started_epoch": str(int(now.timestamp())),
        "esc_candidates": json.dumps([c.__dict__ for c in people], ensure_ascii=False),
        "esc_with_operator": "1" if with_operator else "0",
        "context": json.dumps(context, ensure_ascii=False),
    }
    if not with_operator:
        fields["state"] = "transfer"
    if not people:
        fields["band"] = str(call.BAND_PRIORITY)
    started = svc.script("escalation_start")(
        keys=[keys.call(call_sid), keys.escalations_raised_by(raised_by or "-"),
              keys.metrics_escalations(), keys.metrics_calls_by_kinds(), keys.waiting()],
        args=[int(now.timestamp()), keys.CALL_TTL, raised_by,
              "1" if trigger == "operator" else "0", keys.incident_counters("*"), len(fields),
              *field_args(fields),
              *_PER_ESCALATION])
    was_started, state, first = started
    if not was_started:
        return str(state)
    log.info("escalation started call_sid=%s trigger=%s reason=%s candidates=%d attempt=%s",
             call_sid, trigger, reason, len(people), first)
    if people:
        queue_dial(svc, call_sid, int(first))
    return str(state)


# A dial-out Twilio took nothing of (5xx, 429, no connection) is tried again soon: the
# caller is on hold music meanwhile, and the watchdog moves on if every try fails.
DIAL_RETRY = Retry(max=3, interval=[2, 5, 10])


def queue_dial(svc: Services, call_sid: str, attempt: int) -> None:
    """Queue the dial-out for one attempt; the job id makes it happen once per attempt."""
    try:
        svc.queue.enqueue("worker.escalation.dial_supervisor", call_sid, attempt,
                          job_id=f"esc-{call_sid}-{attempt}", unique=True, retry=DIAL_RETRY)
    except DuplicateJobError:
        log.info("dial already queued call_sid=%s attempt=%s", call_sid, attempt)


def advance(svc: Services, call_sid: str, attempt: int, result: str) -> int | None:
    """Give up on `attempt` (no answer, busy, declined, timed out) and queue the next SV."""
    nxt = svc.script("escalation_advance")(
        keys=[keys.call(call_sid), keys.escalation_log(call_sid),
              keys.metrics_escalation_attempts()],
        args=[attempt, result, svc.now().isoformat()])
    if int(nxt) < 0:
        return None
    log.info("escalation moves on call_sid=%s attempt=%s result=%s", call_sid, attempt, result)
    queue_dial(svc, call_sid, int(nxt))
    return int(nxt)


def accept(svc: Services, call_sid: str, attempt: int, leg_sid: str) -> bool:
    """The SV on leg `leg_sid` takes the call, if `attempt` is still the live one. The leg
    is noted here, from the key press itself: the dial-out may not have recorded its
    CallSid (an answer that timed out, a worker that died after placing the call)."""
    now = svc.now()
    return bool(svc.script("escalation_accept")(
        keys=[keys.call(call_sid), keys.escalation_log(call_sid), keys.metrics_escalations()],
        args=[attempt, now.isoformat(), int(now.timestamp()), leg_sid]))


def mark_answered(svc: Services, call_sid: str, attempt: int) -> bool:
    """Note that the SV of `attempt` answered; False when it was noted before (a repeated
    whisper) or the attempt is no longer the live one."""
    return bool(svc.script("escalation_answered")(
        keys=[keys.call(call_sid)], args=[attempt, int(svc.now().timestamp())]))


def answered_at(record: dict[str, Any], attempt: int) -> int | None:
    """When the SV of `attempt` answered (epoch seconds), None if they have not."""
    if record.get("esc_answered_attempt") != str(attempt):
        return None
    return int(record.get("esc_answered_epoch") or 0) or None


def set_if(svc: Services, call_sid: str, states: tuple[str, ...], **fields: str) -> bool:
    """Set escalation fields only while the state is one of `states`."""
    return bool(svc.script("escalation_set_if")(
        keys=[keys.call(call_sid), keys.metrics_escalations(), keys.metrics_calls_by_kinds()],
        args=[len(states), *states, *field_args(fields)]))


def candidates_of(record: dict[str, Any]) -> list[Candidate]:
    return [Candidate(**c) for c in record.get("esc_candidates") or []]


def candidate_at(record: dict[str, Any], attempt: int) -> Candidate | None:
    """The SV rung at `attempt` of the current escalation, None past the end of its list.
    Attempts count on across a call's escalations, so the list starts at `esc_first`."""
    index = attempt - int(record.get("esc_first") or 0)
    people = candidates_of(record)
    return people[index] if 0 <= index < len(people) else None


def attempts(svc: Services, call_sid: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in svc.redis.lrange(keys.escalation_log(call_sid), 0, -1)]



def record_outcome(svc: Services, call_sid: str, *, result: str, note: str, by: str) -> bool:
    """The SV's word on how it ended, for the operator who raised it; False without an
    escalation on the call."""
    return set_if(svc, call_sid, ("accepted", "exhausted", "abandoned", "dialing", "ringing"),
                  esc_outcome_result=result, esc_outcome_note=note, esc_outcome_by=by,
                  esc_outcome_at=svc.now().isoformat())


def summary(svc: Services, record: dict[str, Any]) -> dict[str, Any] | None:
    """The escalation part of a call record as the API and console show it."""
    if not record.get("esc_state"):
        return None
    outcome = {name.removeprefix("esc_outcome_"): record[name]
               for name in OUTCOME_FIELDS if record.get(name)}
    return {
        "state": record["esc_state"],
        "trigger": record.get("esc_trigger"),
        "reason": record.get("esc_reason"),
        "raised_by": record.get("esc_raised_by") or None,
        "note": record.get("esc_note") or "",
        "started_at": record.get("esc_started_at"),
        "supervisor": {"name": record.get("esc_sv_name"), "phone": record.get("esc_sv_phone")}
        if record.get("esc_sv_phone") else None,
        "joined_at": record.get("esc_joined_at"),
        "wait_seconds": int(record["esc_wait_seconds"]) if record.get("esc_wait_seconds")
        else None,
        "attempts": attempts(svc, record["call_sid"]),
        "candidates": [c["name"] for c in record.get("esc_candidates") or []],
        "outcome": outcome or None,
    }


MOVABLE = ("greeting", "queued", "requeued")
"""Call states in which a caller is moved into their conference when an operator escalates."""


def raise_for(svc: Services, call_sid: str, *, reason: str, note: str, by: str) -> None:
    """An operator hands a live call up (the API's POST /api/calls/<sid>/escalate and the
    console's call page): the SV is rung with the context and the note; a caller still
    waiting is moved into their conference first, and so is one TaskRouter bridged to their
    operator directly, whose operator follows (/voice/agent-rejoin). `reason` is a ladder
    (flows/escalation.yaml) or one of the roster's words (schemas.ROSTER_REASONS). Refusals
    are 404 (no such call) and 409 (ended, already escalated, nobody on call)."""
    from ivr.errors import ApiError
    from ivr.schemas import ROSTER_REASONS
    from ivr.urls import public_url

    ladder = ROSTER_REASONS.get(reason, reason)
    record = call.get(svc, call_sid) if call_sid.startswith("CA") else None
    if record is None:
        raise ApiError(404, "not_found", f"no call {call_sid[:64]}")
    if record.get("state") == "completed":
        raise ApiError(409, "call_ended", f"call {call_sid} has ended")
    if record.get("bridge") == call.BRIDGED_OUTSIDE_ROOM and record.get("state") == "connected":
        raise ApiError(409, "not_in_conference", f"call {call_sid} was taken on the operator "
                       "line while Redis was down and is not in its conference, so no "
                       "supervisor can join it; hand it over by phone")
    if record.get("esc_state") in ("dialing", "ringing", "accepted"):
        raise ApiError(409, "already_escalated", f"call {call_sid} is already escalated")
    if not supervisor.candidates(svc, ladder):
        raise ApiError(409, "no_supervisor", f"no supervisor on call for {reason}; check "
                                             "GET /api/supervisors", "reason")
    bridged = record.get("state") == "connected" and record.get("bridge") == "queue"
    move = record.get("state") in MOVABLE or bridged
    start(svc, call_sid, trigger="operator", reason=ladder, raised_by=by, note=note)
    if bridged:  # TaskRouter's direct bridge: the operator's leg follows to the room
        call.mark(svc, call_sid, bridge="conference")
    if move:
        svc.queue.enqueue("worker.calls.redirect_call", call_sid,
                          public_url(svc.config, "/voice/transfer", trigger="operator"),
                          job_id=f"transfer-{call_sid}")
