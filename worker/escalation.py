"""Jobs of a warm transfer: ring the next SV, give up on one who never joins, or hand the
caller back to the priority queue when the list is exhausted."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from requests.exceptions import ConnectTimeout, RequestException
from rq import Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from twilio.base.exceptions import TwilioRestException
from urllib3.exceptions import NewConnectionError

from ivr import call, escalation, keys
from ivr.phone import mask
from ivr.services import Services
from ivr.urls import public_url
from worker import retryable, worker_services

log = logging.getLogger(__name__)

SV_LEG_EVENTS = ["initiated", "ringing", "answered", "completed"]


def dial_supervisor(call_sid: str, attempt: int) -> str | None:
    """Ring the SV for `attempt` once, or finish the ladder when nobody is left."""
    svc = worker_services()
    record = call.get(svc, call_sid)
    if not record or record.get("esc_state") not in escalation.OPEN \
            or record.get("esc_attempt") != str(attempt):
        log.info("escalation no longer at this attempt call_sid=%s attempt=%s", call_sid, attempt)
        return None
    if record.get("state") == "completed":
        escalation.set_if(svc, call_sid, escalation.OPEN, esc_state="abandoned")
        return None
    sv = escalation.candidate_at(record, attempt)
    if sv is None:
        exhaust(svc, call_sid, record)
        return None
    claim = keys.escalation_leg(call_sid, attempt)
    if not svc.redis.set(claim, "pending", nx=True, ex=keys.ESCALATION_LEG_TTL):
        log.info("sv leg already placed call_sid=%s attempt=%s", call_sid, attempt)
        return None
    schedule_watchdog(svc, call_sid, attempt)  # first: whatever happens below, the ladder moves
    settings = svc.flows.escalation
    query = {"call": call_sid, "attempt": attempt}
    try:
        leg = svc.twilio.calls.create(
            to=sv.phone,
            from_=caller_id(svc, record),
            url=public_url(svc.config, "/voice/sv-whisper", **query),
            method="POST",
            status_callback=public_url(svc.config, "/voice/escalation-status", **query),
            status_callback_event=SV_LEG_EVENTS,
            status_callback_method="POST",
            timeout=int(settings["ring_timeout"]),
        )
    except TwilioRestException as e:
        if took_nothing(e):
            svc.redis.delete(claim)  # Twilio took nothing: the retry may dial
            raise
        if retryable(e):
            # a 500 or an edge's 502/504 may come after the call was placed: as with a read
            # timeout, the claim stays and the watchdog or the leg's callbacks move on
            log.warning("sv leg outcome unknown, left to the watchdog call_sid=%s attempt=%s "
                        "status=%s", call_sid, attempt, e.status)
            return None
        log.warning("sv leg refused call_sid=%s attempt=%s code=%s to=%s", call_sid, attempt,
                    e.code, mask(sv.phone))
        escalation.advance(svc, call_sid, attempt, f"failed:{e.code}")
        return None
    except RequestException as e:
        if never_sent(e):
            svc.redis.delete(claim)  # no connection, so no call: the job's retry may dial
            raise
        # Twilio may have placed the call: the claim stays, so nobody rings this SV again for
        # this attempt; the leg's own callbacks, or the watchdog, move the ladder on.
        log.warning("sv leg outcome unknown, left to the watchdog call_sid=%s attempt=%s "
                    "error=%s", call_sid, attempt, type(e).__name__)
        return None
    svc.redis.set(claim, leg.sid, ex=keys.ESCALATION_LEG_TTL)
    escalation.set_if(svc, call_sid, ("dialing",), esc_state="ringing", esc_sv_call_sid=leg.sid,
                      esc_sv_name=sv.name, esc_sv_phone=sv.phone)
    log.info("sv leg placed call_sid=%s attempt=%s sv_call_sid=%s", call_sid, attempt, leg.sid)
    return str(leg.sid)


def caller_id(svc: Services, record: dict[str, Any]) -> str:
    """The number the SV sees ringing: TWILIO_FROM_NUMBER, or, in a deployment that sends SMS
    through a Messaging Service and sets no number (PRODUCT.md §4 asks for one of the two),
    the support number the caller dialled, which is ours and can place calls."""
    return str(svc.config.get("TWILIO_FROM_NUMBER") or record.get("to") or "")


def took_nothing(e: TwilioRestException) -> bool:
    """Twilio said it did not act on the request (rate limited, or unavailable): ringing
    again cannot ring the SV twice. Other 5xx answers leave that unknown."""
    return e.status in (429, 503) or e.code == 20429


def never_sent(e: RequestException) -> bool:
    """The connection to Twilio never opened, so Twilio cannot have acted on the request.
    A read timeout or a connection lost mid-request leaves that unknown."""
    if isinstance(e, ConnectTimeout):
        return True
    cause = e.args[0] if e.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


def schedule_watchdog(svc: Services, call_sid: str, attempt: int) -> None:
    """Move on even if Twilio's status callback for this SV leg never arrives. Counted from
    the first try of the dial-out: a retry does not push it back (`unique` does not stop
    enqueue_in from rescheduling a job that is still waiting)."""
    job_id = f"esc-watch-{call_sid}-{attempt}"
    if Job.exists(job_id, connection=svc.queue.connection):
        return
    try:
        svc.queue.enqueue_in(timedelta(seconds=int(svc.flows.escalation["join_timeout"])),
                             "worker.escalation.watchdog", call_sid, attempt,
                             job_id=job_id, unique=True)
    except DuplicateJobError:
        pass


def watchdog(call_sid: str, attempt: int, after_answer: bool = False) -> int | None:
    """No SV joined in time at this attempt: end their leg and ring the next one.

    An SV who answered gets join_timeout from their answer to hear the whisper and press a
    key: the first watchdog then waits once more, until that much after the answer. The
    caller's wait at one attempt stays under twice join_timeout.
    """
    svc = worker_services()
    record = call.get(svc, call_sid)
    if not record or record.get("esc_attempt") != str(attempt) \
            or record.get("esc_state") not in escalation.OPEN:
        return None
    answered = escalation.answered_at(record, attempt)
    if answered is not None and not after_answer:
        due = answered + int(svc.flows.escalation["join_timeout"])
        wait = due - int(svc.now().timestamp())
        if wait > 0:
            log.info("sv answered, watchdog waits call_sid=%s attempt=%s seconds=%s",
                     call_sid, attempt, wait)
            svc.queue.enqueue_in(timedelta(seconds=wait), "worker.escalation.watchdog",
                                 call_sid, attempt, True,
                                 job_id=f"esc-watch-{call_sid}-{attempt}-answered")
            return None
    leg = record.get("esc_sv_call_sid")
    nxt = escalation.advance(svc, call_sid, attempt, "timeout")
    if nxt is not None and leg:
        try:
            svc.twilio.calls(leg).update(status="completed")
        except TwilioRestException as e:
            log.info("sv leg already gone call_sid=%s code=%s", call_sid, e.code)
    return nxt


def exhaust(svc: Services, call_sid: str, record: dict[str, Any]) -> None:
    """Nobody accepted: the caller goes to the front of the queue with an apology (or stays
    with their operator), and the context stays on the call for whoever takes it."""
    if not escalation.set_if(svc, call_sid, escalation.OPEN, esc_state="exhausted",
                             band=str(call.BAND_PRIORITY)):
        return
    tags = record.get("tags") or []
    if "priority" not in tags:
        call.mark(svc, call_sid, tags=call.json_list([*tags, "priority"]))
    log.warning("no supervisor accepted call_sid=%s", call_sid)
    if record.get("esc_with_operator") == "1":
        return
    svc.queue.enqueue("worker.calls.redirect_call", call_sid,
                      public_url(svc.config, "/voice/requeue"),
                      job_id=f"requeue-{call_sid}", retry=Retry(max=3, interval=[2, 5, 10]))
