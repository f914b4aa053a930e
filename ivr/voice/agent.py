"""The operator line: the next caller's context whispered on the operator's leg, then the
caller's conference; TaskRouter's reservation whisper and the operator's way back."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Response, request
from twilio.twiml.voice_response import Dial, VoiceResponse

from ivr import call as calls
from ivr import current_services
from ivr.phone import mask
from ivr.services import Services
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice import bp, operator_line, without_redis
from ivr.voice.twiml import callback_url, conference, last_words, say, speak

log = logging.getLogger(__name__)

RESERVATION = re.compile(r"^WR[0-9a-fA-F]{32}$")


def _caller_sid() -> str:
    """The caller's CallSid our own callback URL carries (?call=CA…), checked as Twilio's
    CallSid field is; '' when it is missing or malformed."""
    return calls.CallInfo.parse({"CallSid": request.args.get("call", "")}).call_sid


def _whisper(svc: Services, record: dict[str, Any], lang: str) -> str:
    queued_ms = int(record.get("queued_at_ms") or 0)
    waited = int((svc.now().timestamp() * 1000 - queued_ms) // 60000) if queued_ms else 0
    return svc.prompts.render("agent_whisper", lang, name=record.get("customer_name") or "",
                              tags=record["tags"], purpose=record.get("purpose", ""),
                              intent=(record.get("intent") or "").split(","),
                              transcript=record.get("transcript", ""), waited_minutes=waited)


@bp.post("/agent-line")
@without_redis(operator_line)
@twilio_signed
def agent_line() -> Response:
    """An operator calls the operator line: hear the next caller's context on this leg only,
    then meet the caller in the conference named after the caller's CallSid."""
    agent = calls.CallInfo.parse(request.form)
    svc = current_services()
    lang = svc.flows.default_language
    vr = VoiceResponse()
    if not agent.call_sid or not svc.flows.operator_allowed(agent.raw_from, agent.phone):
        log.warning("operator line refused call_sid=%s from=%s", agent.call_sid or "-",
                    mask(agent.phone or agent.raw_from))
        vr.reject()
        return twiml(vr)
    record = calls.next_caller(svc, agent.call_sid)
    if record is None:
        speak(svc, vr, "agent_idle", lang)
        vr.pause(length=svc.flows.call["agent"]["idle_pause"])
        vr.redirect(callback_url("voice.agent_line"), method="POST")
        return twiml(vr)
    caller_sid = record["call_sid"]
    calls.redirect_to_conference(svc, caller_sid, callback_url("voice.connecting", join=1),
                                 agent.call_sid)
    say(vr, _whisper(svc, record, lang), svc.flows.voice(lang))
    conference(vr, caller_sid, svc.flows.call["queue"]["hold_music"], caller=False)
    return twiml(vr)


def _reserved(svc: Services, record: dict[str, Any] | None) -> Response:
    """The reserved caller's context when there is one, then take them from the queue."""
    lang = svc.flows.default_language
    reservation = request.args.get("reservation", "")
    caller_sid = _caller_sid()
    vr = VoiceResponse()
    if not RESERVATION.match(reservation):
        log.warning("agent-whisper without a reservation sid call_sid=%s",
                    request.form.get("CallSid", "-")[:64])
        return twiml(last_words(svc, vr, "agent_idle", lang))
    if record:
        say(vr, _whisper(svc, record, lang), svc.flows.voice(lang))
    dial = Dial(action=callback_url("voice.agent_rejoin", call=caller_sid), method="POST") \
        if caller_sid else Dial()
    dial.queue(svc.flows.queue_name, reservation_sid=reservation,
               url=callback_url("voice.connecting"))
    vr.append(dial)
    return twiml(vr)


def take_reserved_without_context(svc: Services) -> Response:
    """Without Redis the operator still takes the reserved caller, without the whisper."""
    return _reserved(svc, None)


@bp.post("/agent-whisper")
@without_redis(take_reserved_without_context)
@twilio_signed
def agent_whisper() -> Response:
    """TaskRouter reservation `call` instruction: whisper the caller's context on the
    operator's leg, then take the reserved caller (?reservation=WR…&call=CA…)."""
    svc = current_services()
    caller_sid = _caller_sid()
    record = None
    if caller_sid and RESERVATION.match(request.args.get("reservation", "")):
        record = calls.get(svc, caller_sid)
    return _reserved(svc, record)


def hang_up(svc: Services) -> Response:
    """Without Redis nobody can say where the caller went: the operator's leg ends."""
    vr = VoiceResponse()
    vr.hangup()
    return twiml(vr)


@bp.post("/agent-rejoin")
@without_redis(hang_up)
@twilio_signed
def agent_rejoin() -> Response:
    """TaskRouter mode, the operator's <Dial action> (?call=CA…): the direct bridge to the
    caller has ended. When an escalation took the caller into their conference (`bridge`
    'conference'), the operator follows to hand over to the SV in the room; otherwise the
    caller hung up and the operator's leg ends too."""
    svc = current_services()
    caller_sid = _caller_sid()
    record = calls.get(svc, caller_sid) if caller_sid else None
    if record and record.get("bridge") == "conference" and record.get("state") != "completed":
        log.info("operator follows caller into the conference call_sid=%s agent_call_sid=%s",
                 caller_sid, request.form.get("CallSid", "-")[:64])
        return twiml(conference(VoiceResponse(), caller_sid,
                                svc.flows.call["queue"]["hold_music"], caller=False))
    return hang_up(svc)
