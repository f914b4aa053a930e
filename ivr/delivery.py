"""Delivery status of the messages we sent: the record, the counters, and what errors mean.

Twilio posts a status callback for each step of a message (queued, sent, delivered or
undelivered/failed), possibly twice and not always in order. The message record
(keys.sms_message, created by the sender job) only moves forward, and each message adds to
its incident's sms_delivered or sms_failed counter exactly once.

21408 and 30007 are configuration or content problems: the same message would fail for
everyone, so they halt the rest of that update's fan-out (`halt`) and alert instead of
retrying. 21408 comes back when the sender job sends, and so does every refusal about the
account, the sender or the message (SENDER_REFUSAL_CODES); 30007 only in a status callback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from ivr import keys, optout, undeliverable
from ivr.inbound import MESSAGE_SID
from ivr.phone import mask, normalize
from ivr.progress import JOB_RETRY
from ivr.services import Services

log = logging.getLogger(__name__)

# How far along a message is; a callback never moves the record back. Final states share a
# rank, so the first final state reported is the one kept.
RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
        "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5}
COUNTER = {"delivered": "sms_delivered", "undelivered": "sms_failed", "failed": "sms_failed"}
FAILED = ("undelivered", "failed")
OPT_OUT_CODES = frozenset({21610})
UNDELIVERABLE_CODES = frozenset({30004, 30005, 30006})
# What Twilio's answer to a send says is wrong with the account, the sender or the message
# (authentication, a sender that cannot send SMS or is not ours, a region not enabled, an
# empty or too long body): every recipient would be answered the same way, so the fan-out
# halts (`halt`) until ops have looked. Any other refusal is taken as about the number (not
# a valid number, not SMS-capable, landline, unreachable, the sender's own number, codes we
# do not know): a failure for this recipient only, so one odd number cannot stop an update
# for everyone. 21211, 21614 and 21635 are for good: the number is remembered as
# undeliverable like 30004-30006; 21610 opts it out. An HTTP 401 or 403 halts whatever its
# code says.
SENDER_REFUSAL_CODES = frozenset({20003, 20404, 21408, 21602, 21606, 21617, 21659, 21660})
REFUSED_NUMBER_CODES = frozenset({21211, 21610, 21612, 21614, 21635})
"""The refusals about a number that Twilio documents; any other is logged as a warning."""
REFUSED_FOR_GOOD_CODES = frozenset({21211, 21614, 21635})
RETRY_ONCE_CODES = frozenset({30003, 30008})
HALT_CODES = frozenset({21408, 30007})
RESEND_DELAY = timedelta(minutes=15)
RESEND_JOB = "worker.sms.resend_message"
ERROR_CODE = re.compile(r"^[0-9]{1,6}$")

@dataclass(frozen=True)
class StatusCallback:
    """The parts of Twilio's message status callback the service uses."""

    message_sid: str
    status: str
    error_code: int | None
    to: str | None

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> StatusCallback | None:
        """None when the callback names no message or a status we do not know."""
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        if not MESSAGE_SID.match(sid) or status not in RANK:
            return None
        code = (form.get("ErrorCode") or "").strip()
        return cls(sid, status, int(code) if ERROR_CODE.match(code) and int(code) else None,
                   normalize((form.get("To") or "")[:64]))


@dataclass(frozen=True)
class Recorded:
    """What one callback did."""

    known: bool
    status: str = ""
    changed: bool = False
    counted: bool = False
    opted_out: bool = False
    undeliverable: bool = False
    resend_queued: bool = False
    halted: bool = False


def fanout_keys(incident_id: str | None, seq: int | str | None) -> list[str]:
    """[the update's fan-out hash] when a message belongs to a numbered update of an
    incident (its counts for the live view), else [] (a one-off: 'subscribed', 'resend-…');
    the optional last KEY of sms_record/sms_release/sms_status.lua."""
    if incident_id and seq is not None and str(seq).isdigit():
        return [keys.sms_fanout(incident_id, int(seq))]
    return []


def record_status(svc: Services, callback: StatusCallback) -> Recorded:
    """Move the message record forward, count a final state once, and act on the error code:
    21610 opts the number out, 30004-30006 mark it undeliverable, 30003/30008 queue one resend,
    30007 (21408) halts the rest of the update's fan-out.

    A message we have no record of (not ours, or expired) is left alone.
    """
    sid = callback.message_sid
    message_key = keys.sms_message(sid)
    incident_id, seq, to = cast(list[str | None],
                                svc.redis.hmget(message_key, "incident_id", "seq", "to"))
    if incident_id is None and to is None:
        log.info("status callback for an unknown message message_sid=%s status=%s", sid,
                 callback.status)
        return Recorded(known=False)
    code = callback.error_code
    counter = COUNTER.get(callback.status, "") if incident_id else ""
    counters_key = keys.incident_counters(incident_id) if incident_id else message_key
    want_resend = code in RETRY_ONCE_CODES and callback.status in FAILED
    known, status, changed, counted, resend = svc.script("sms_status")(
        keys=[message_key, counters_key, keys.metrics_sms(), *fanout_keys(incident_id, seq)],
        args=[callback.status, "" if code is None else str(code), counter,
              "1" if want_resend else "0", svc.now().isoformat(), keys.SMS_TTL])
    if not known:
        return Recorded(known=False)
    phone = to or callback.to
    log.info("sms status message_sid=%s status=%s stored=%s error_code=%s to=%s", sid,
             callback.status, status, code or "-", mask(phone))
    opted_out = marked = False
    if phone and code in OPT_OUT_CODES:
        opted_out = optout.opt_out(svc, phone, "twilio-21610")
    if phone and code in UNDELIVERABLE_CODES:
        marked = undeliverable.mark(svc, phone, code)
    if resend:
        _queue_resend(svc, sid)
    stopped = False
    if incident_id and seq and code in HALT_CODES:
        stopped = halt(svc, incident_id, seq, code, message_sid=sid)
    return Recorded(known=True, status=status, changed=bool(changed), counted=bool(counted),
                    opted_out=opted_out, undeliverable=marked,
                    resend_queued=bool(resend), halted=stopped)


def update_of(seq: int | str) -> int | None:
    """The timeline entry a message belongs to: its own seq, or the one a resend repeats;
    None for one-off messages ('subscribed')."""
    text = str(seq).removeprefix("resend-")
    return int(text) if text.isdigit() else None


def halted(svc: Services, incident_id: str, seq: int | str) -> bool:
    """Whether the update a message belongs to has been halted (see `halt`)."""
    update = update_of(seq)
    return update is not None and bool(svc.redis.exists(keys.sms_halt(incident_id, update)))


def halt(svc: Services, incident_id: str, seq: int | str, code: int, *,
         message_sid: str | None = None) -> bool:
    """Stop sending the update a message belongs to on an account, configuration or content
    problem (HALT_CODES, or a send refused for the account, sender or message:
    SENDER_REFUSAL_CODES), and say so loudly: sending on blindly would only fail the same way
    for every recipient. The sender jobs and the sweep check keys.sms_halt before each
    message; `ivr sms-resume` (resume) lifts it once ops have fixed the cause. A one-off
    message ('subscribed') only raises the alarm. Returns True when this call set the halt.
    """
    update = update_of(seq)
    if update is None:
        log.error("sms refused for its content or configuration incident=%s message=%s "
                  "code=%s message_sid=%s: check the account, sender number, geo "
                  "permissions and message content", incident_id, seq, code, message_sid or "-")
        return False
    if not svc.redis.set(keys.sms_halt(incident_id, update), str(code), nx=True,
                         ex=keys.SMS_TTL):
        return False
    log.error("sms fan-out halted incident=%s seq=%s code=%s message_sid=%s: check the "
              "account, sender number, geo permissions and message content, then "
              "`ivr sms-resume %s %s`",
              incident_id, update, code, message_sid or "-", incident_id, update)
    return True


def resume(svc: Services, incident_id: str, seq: int) -> str | None:
    """Lift the halt of an update's fan-out and queue its sweep, which sends to everyone who
    has no message yet (claims settle what was in flight, so nobody gets one twice). Returns
    the error code that had halted it, or None when it was not halted (nothing queued)."""
    code = cast("str | None", svc.redis.getdel(keys.sms_halt(incident_id, seq)))
    if code is None:
        return None
    svc.sms_queue.enqueue("worker.sms.sweep", incident_id, seq, 1,
                          job_id=f"resume-{incident_id}-{seq}-{code}", retry=JOB_RETRY)
    log.warning("sms fan-out resumed incident=%s seq=%s (halted by code=%s)", incident_id, seq,
                code)
    return code


def _queue_resend(svc: Services, message_sid: str) -> None:
    """Schedule the one resend of a message; the `resend` field of its record, taken in the
    same script that recorded the failure, makes sure this runs once per message."""
    try:
        svc.sms_queue.enqueue_in(RESEND_DELAY, RESEND_JOB, message_sid,
                                 job_id=f"resend-{message_sid}", retry=JOB_RETRY)
    except Exception:
        svc.redis.hdel(keys.sms_message(message_sid), "resend")  # a later callback may retry
        raise
    log.info("sms resend scheduled message_sid=%s in=%s", message_sid, RESEND_DELAY)
