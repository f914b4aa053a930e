"""Warm-transfer webhooks: the SV's whisper and key press, the SV leg's status, and the
caller's side: into their conference, or back to the queue when no SV could take the call."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Response, request
from twilio.twiml.voice_response import VoiceResponse

from ivr import call as calls
from ivr import current_services, escalation
from ivr.services import Services
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice import bp, caller_leg, status_callback, sv_leg, without_redis
from ivr.voice.twiml import (
    callback_url,
    conference,
    degraded,
    last_words,
    priority_queue,
    say,
    speak,
    transfer_or_requeue,
)

log = logging.getLogger(__name__)

SID = re.compile(r"^CA[0-9a-zA-Z]{32}$")
GAVE_UP = {"busy", "no-answer", "failed", "canceled"}


def _target() -> tuple[str, int] | None:
    """The caller's CallSid and attempt number our own callback URLs carry."""
    sid, attempt = request.args.get("call", ""), request.args.get("attempt", "")
    if not SID.match(sid) or not attempt.isdigit() or len(attempt) > 3:
        return None
    return sid, int(attempt)


def _sv_lang(record: dict[str, Any], attempt: int) -> str:
    sv = escalation.candidate_at(record, attempt)
    return sv.lang if sv else "ja"


def _accepted_by(record: dict[str, Any], attempt: int, leg_sid: str) -> bool:
    """This SV leg already accepted this attempt: Twilio retried its key press, and the SV
    must be joined again rather than hung up on."""
    return (record.get("esc_state") == "accepted" and record.get("esc_attempt") == str(attempt)
            and bool(leg_sid) and record.get("esc_accepted_leg") == leg_sid)


def _closed(svc: Services, lang: str) -> Response:
    """This attempt is no longer the SV's to take: say so and end their leg."""
    return twiml(last_words(svc, VoiceResponse(), "sv_closed", lang))


@bp.post("/sv-whisper")
@without_redis(sv_leg)
@twilio_signed
def sv_whisper() -> Response:
    """The SV answered our call: the 5W1H context on their leg only, then 1 to join or 2 to
    decline. The caller hears none of it. The first whisper of an attempt notes the answer,
    so the watchdog does not cut off an SV still listening to it."""
    svc = current_services()
    target = _target()
    record = calls.get(svc, target[0]) if target else None
    if not target or not record or record.get("esc_attempt") != str(target[1]) \
            or record.get("esc_state") not in escalation.OPEN:
        return _closed(svc, "ja")
    sid, attempt = target
    escalation.mark_answered(svc, sid, attempt)
    lang = _sv_lang(record, attempt)
    ctx = record.get("context") or {}
    text = svc.prompts.render(
        "sv_whisper", lang, **ctx,
        window_hours=int(svc.flows.escalation["repeat"]["window_hours"]),
        incident_start=svc.local(ctx.get("when", {}).get("incident_started_at")),
        first_call=svc.local(ctx.get("when", {}).get("first_call_at")))
    vr = VoiceResponse()
    g = vr.gather(input="dtmf", num_digits=1, timeout=8, method="POST",
                  action=callback_url("voice.sv_connect", call=sid, attempt=attempt))
    say(g, text, svc.flows.voice(lang))
    return twiml(last_words(svc, vr, "sv_no_input", lang))


@bp.post("/sv-connect")
@without_redis(sv_leg)
@twilio_signed
def sv_connect() -> Response:
    """The SV's key: 1 joins the caller's conference (if still theirs to take), 2 declines
    and the next SV is rung; anything else repeats the whisper."""
    svc = current_services()
    target = _target()
    if not target:
        return _closed(svc, "ja")
    sid, attempt = target
    record = calls.get(svc, sid) or {}
    lang = _sv_lang(record, attempt)
    digits = request.form.get("Digits", "")
    vr = VoiceResponse()
    if digits == "1":
        leg_sid = request.form.get("CallSid", "")[:64]
        if escalation.accept(svc, sid, attempt, leg_sid):
            log.info("supervisor joined call_sid=%s attempt=%s sv_call_sid=%s", sid, attempt,
                     leg_sid or "-")
        else:
            record = calls.get(svc, sid) or {}
            if not _accepted_by(record, attempt, leg_sid):
                return _closed(svc, lang)
            log.info("supervisor join retried call_sid=%s attempt=%s", sid, attempt)
        speak(svc, vr, "sv_connecting", lang)
        alone_with_caller = record.get("esc_with_operator") != "1"
        return twiml(conference(vr, sid, svc.flows.call["queue"]["hold_music"], caller=False,
                                end_on_exit=alone_with_caller))
    if digits == "2":
        escalation.advance(svc, sid, attempt, "declined")
        return twiml(last_words(svc, vr, "sv_declined", lang))
    vr.redirect(callback_url("voice.sv_whisper", call=sid, attempt=attempt), method="POST")
    return twiml(vr)


@bp.post("/escalation-status")
@without_redis(status_callback)
@twilio_signed
def escalation_status() -> Response:
    """Status callback of an SV leg: no answer, busy, failed, canceled, or a leg that ended
    without joining moves the ladder to the next SV."""
    svc = current_services()
    target = _target()
    status = (request.form.get("CallStatus") or "")[:32]
    if target and (status in GAVE_UP or status == "completed"):
        escalation.advance(svc, target[0], target[1], status)
    return twiml(VoiceResponse())


@bp.post("/transfer")
@without_redis(caller_leg)
@twilio_signed
def transfer() -> Response:
    """The REST redirect when an operator escalates a caller who is still waiting, or one
    TaskRouter bridged to them directly (the operator follows, /voice/agent-rejoin): the
    cushion sentence, then the caller's conference until the SV joins."""
    svc = current_services()
    sid, record = _redirected_caller(svc)
    if record is None:
        return twiml(degraded(svc))
    trigger = request.args.get("trigger", "operator")
    trigger = trigger if trigger in escalation.TRIGGERS else "operator"
    requeued = calls.requeue_if_unanswered(
        svc, sid, record.get("esc_state", ""),
        with_operator=record.get("esc_with_operator") == "1")
    return twiml(transfer_or_requeue(svc, VoiceResponse(), sid, record["lang"], trigger,
                                     requeued))


@bp.post("/requeue")
@without_redis(caller_leg)
@twilio_signed
def requeue() -> Response:
    """The REST redirect after no SV accepted: apologise and go to the front of the queue."""
    svc = current_services()
    sid, record = _redirected_caller(svc)
    if record is None:
        return twiml(degraded(svc))
    return twiml(priority_queue(svc, VoiceResponse(), sid, record["lang"],
                                calls.requeue_priority(svc, sid)))


def _redirected_caller(svc: Services) -> tuple[str, dict[str, Any] | None]:
    """The CallSid of a caller we redirected by REST, and its record (None when the record
    is gone: the caller then gets the plain queue, as with Redis down)."""
    sid = calls.CallInfo.parse(request.form).call_sid
    return sid, (calls.get(svc, sid) if sid else None)
