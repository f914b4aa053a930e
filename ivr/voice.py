"""Twilio voice webhooks (PRODUCT.md §1): what callers and operators hear, and the queue.

Every view answers TwiML even when Redis is down or slow: the caller hears an apology and
waits in the plain Twilio queue, so nobody is dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from rq.exceptions import DuplicateJobError
from twilio.twiml.voice_response import Dial, VoiceResponse
from werkzeug.exceptions import HTTPException

from ivr import call as calls
from ivr import current_services, escalation
from ivr.phone import mask
from ivr.services import Services
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice_twiml import callback_url, conference, enqueue, gather, say

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")

DIGITS = re.compile(r"^[0-9*#]{1,10}$")
TURN = re.compile(r"^[0-9]{1,4}$")
RESERVATION = re.compile(r"^WR[0-9a-fA-F]{32}$")
TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}


def speak(svc: Services, target: Any, name: str, lang: str, /, **ctx: Any) -> None:
    """Say prompt `name` in `lang` with that language's voice."""
    say(target, svc.prompts.render(name, lang, **ctx), svc.flows.voice(lang))


def degraded(svc: Services, lang: str | None = None) -> VoiceResponse:
    """Apology, then the plain Twilio queue: what a caller gets when Redis cannot answer."""
    lang = lang or svc.flows.default_language
    vr = VoiceResponse()
    speak(svc, vr, "apology", lang)
    return enqueue(vr, svc.flows, workflow_sid=current_app.config["TWILIO_WORKFLOW_SID"])


def operator_degraded(svc: Services) -> VoiceResponse:
    """Without Redis the operator still takes callers, in Twilio's own arrival order."""
    lang = svc.flows.default_language
    vr = VoiceResponse()
    speak(svc, vr, "apology", lang)
    dial = Dial()
    dial.queue(svc.flows.queue_name, url=callback_url("voice.connecting"))
    vr.append(dial)
    return vr


def _safely(view: Callable[[Services], Response], what: str) -> Response:
    """Run a view; on a Redis fault answer the degraded TwiML instead of an error."""
    svc = current_services()
    try:
        return view(svc)
    except redis.RedisError as e:
        log.warning("redis unavailable in %s (%s) call_sid=%s", what, type(e).__name__,
                    request.form.get("CallSid", "-")[:64])
        return twiml(degraded(svc))


@bp.errorhandler(Exception)
def unexpected(e: Exception) -> Response | HTTPException:
    """Never let Twilio play its error message: log the fault and still queue the caller."""
    if isinstance(e, HTTPException):
        return e
    log.exception("voice webhook failed path=%s call_sid=%s", request.path,
                  request.form.get("CallSid", "-")[:64])
    if request.endpoint == "voice.agent_line":
        return twiml(operator_degraded(current_services()))
    if request.endpoint in ("voice.status", "voice.agent_rejoin"):
        return twiml(VoiceResponse())
    return twiml(degraded(current_services()))


@bp.post("/incoming")
@twilio_signed
def incoming() -> Response:
    """Twilio 'A call comes in': greet, announce the incidents that apply, ask the purpose."""
    call = calls.CallInfo.parse(request.form)

    def answer(svc: Services) -> Response:
        if not call.call_sid:
            return twiml(degraded(svc))
        greeting = calls.answer_incoming(svc, call)
        if greeting.created:
            log.info("call in call_sid=%s from=%s tags=%s", call.call_sid, mask(call.phone),
                     ",".join(greeting.tags) or "-")
        if greeting.repeat:
            state = escalation.start(svc, call.call_sid, trigger="repeat")
            return twiml(transfer_or_requeue(svc, announce(svc, greeting), call.call_sid,
                                             greeting.lang, "repeat", state))
        return greeting_twiml(svc, greeting)

    return _safely(answer, "incoming")


def announce(svc: Services, greeting: calls.Greeting) -> VoiceResponse:
    """Welcome, then each incident that applies: the SV's recording or text, ETA, next update."""
    lang, voice = greeting.lang, svc.flows.voice(greeting.lang)
    vr = VoiceResponse()
    speak(svc, vr, "welcome", lang)
    for item in greeting.announcements:
        if item.recording:
            vr.play(item.recording)
        text = svc.prompts.render(
            "announcement", lang, text="" if item.recording else item.text or "",
            eta=svc.local(item.eta), next_update=svc.local(item.next_update_at))
        say(vr, text, voice)
    return vr


GREETINGS_KEPT = 256


def greeting_twiml(svc: Services, greeting: calls.Greeting) -> Response:
    """The announcements, then the purpose question (or straight to the next step).

    Everyone who hears the same announcements in the same language gets the same document
    (nothing in it names the caller), so each one is built once and kept, up to
    GREETINGS_KEPT per app; an edited incident is a new key. Flows and prompts are loaded
    once at start, so they cannot change under a kept document.
    """
    kept: dict[Any, str] = current_app.extensions.setdefault("ivr.voice.greetings", {})
    key = (id(svc), request.script_root, greeting.lang, tuple(greeting.announcements))
    xml = kept.get(key)
    if xml is None:
        vr = announce(svc, greeting)
        if svc.flows.call["gather"]["enabled"]:
            lang = greeting.lang
            menu = svc.prompts.render("menu", lang, incident=bool(greeting.announcements))
            gather(vr, svc.flows, svc.flows.voice(lang), menu, hints=svc.lexicon.hints(lang))
        vr.redirect(callback_url("voice.gather_result"), method="POST")
        xml = str(vr)
        if len(kept) >= GREETINGS_KEPT:
            kept.clear()
        kept[key] = xml
    return twiml(xml)


def _said(form: Any, menu: dict[str, str]) -> dict[str, str]:
    """What the caller said or pressed, bounded, as call-record fields."""
    speech = " ".join((form.get("SpeechResult") or "").split())[: calls.TRANSCRIPT_MAX]
    digits = form.get("Digits") or ""
    digits = digits if DIGITS.match(digits) else ""
    confidence = form.get("Confidence") or ""
    try:
        confidence = f"{min(max(float(confidence), 0.0), 1.0):.3f}" if confidence else ""
    except ValueError:
        confidence = ""
    purpose = menu.get(digits[:1], "") if digits else ("speech" if speech else "none")
    return {"transcript": speech, "digits": digits, "confidence": confidence,
            "purpose": purpose}


@bp.post("/gather")
@twilio_signed
def gather_result() -> Response:
    """Twilio <Gather action>: record what the caller wants, then queue them by priority."""
    call = calls.CallInfo.parse(request.form)

    def answer(svc: Services) -> Response:
        said = _said(request.form, svc.flows.call["menu"])
        if said["purpose"] == "sms" and call.call_sid:
            from ivr.voice_sms import toggle_sms

            turn = request.args.get("turn", "")
            return twiml(toggle_sms(svc, call.call_sid, int(turn) if TURN.match(turn) else 0))
        intent = svc.lexicon.classify(said["transcript"], said["digits"])
        said["intent"] = ",".join(sorted(intent.labels))
        said["intent_phrases"] = " | ".join(intent.matched)[:300]
        if intent.wants_manager and call.call_sid and calls.mark(svc, call.call_sid, **said):
            state = escalation.start(svc, call.call_sid, trigger="manager",
                                     labels=intent.labels)
            record = calls.get(svc, call.call_sid) or {}
            lang = record.get("lang") or svc.flows.default_language
            return twiml(transfer_or_requeue(svc, VoiceResponse(), call.call_sid, lang,
                                             "manager", state))
        queued = calls.enqueue(svc, call.call_sid, said) if call.call_sid else None
        if queued is None:
            return twiml(degraded(svc))
        vr = VoiceResponse()
        speak(svc, vr, "queue_intro", queued.lang)
        task = {"call_sid": call.call_sid, "tags": queued.tags, "purpose": said["purpose"],
                "transcript": said["transcript"], "language": queued.lang}
        return twiml(enqueue(vr, svc.flows, workflow_sid=current_app.config[
            "TWILIO_WORKFLOW_SID"], task=task, band=queued.band))

    return _safely(answer, "gather")


@bp.post("/queue-wait")
@twilio_signed
def queue_wait() -> Response:
    """Twilio <Enqueue waitUrl>: place in line, the latest incident status, hold music."""
    sid = calls.CallInfo.parse(request.form).call_sid
    svc = current_services()
    vr = VoiceResponse()
    lang = svc.flows.default_language
    try:
        info = calls.waiting_status(svc, sid)
        target: Any = vr
        if info.incident_id and info.sms_phone:
            target = vr.gather(input="dtmf", num_digits=1, timeout=1, method="POST",
                               action=callback_url("voice.queue_key"))
        speak(svc, target, "queue_wait", info.lang, position=info.place, status=info.latest,
              status_code=info.status_code, offer_sms=target is not vr)
    except redis.RedisError as e:
        log.warning("redis unavailable in queue-wait (%s) call_sid=%s", type(e).__name__, sid)
        twilio_place = request.form.get("QueuePosition", "")
        speak(svc, vr, "queue_wait", lang, status=None, status_code=None, offer_sms=False,
              position=int(twilio_place) if twilio_place.isdigit() else None)
    vr.play(svc.flows.call["queue"]["hold_music"])
    return twiml(vr)


@bp.post("/connecting")
@twilio_signed
def connecting() -> Response:
    """Played to the caller only, just before an operator joins (<Queue url>, or the REST
    redirect out of the queue, which adds ?join=1 to meet in the caller's conference).

    Either way the caller is now with an operator, so an escalation must not move them away
    from one: the call is marked connected. Without ?join=1 the operator's <Dial><Queue>
    bridges the two directly, outside the conference; in TaskRouter mode the call record
    notes that as `bridge` 'queue', so that an escalation brings both into the room (the
    operator's <Dial action> follows the caller there, see agent_rejoin). The Redis-down
    operator line's bridge has no such action, so its caller stays where they are.
    """
    call = calls.CallInfo.parse(request.form)
    svc = current_services()
    lang = svc.flows.default_language
    try:
        record = calls.get(svc, call.call_sid) if call.call_sid else None
        lang = record["lang"] if record else lang
        if record and request.args.get("join") == "1":
            calls.mark(svc, call.call_sid, state="connected")
        elif record and record.get("state") != "completed":
            direct = current_app.config["TWILIO_WORKFLOW_SID"] and not record.get("bridge")
            bridge = {"bridge": "queue"} if direct else {}  # a retry keeps a later 'conference'
            calls.mark(svc, call.call_sid, state="connected", **bridge)
    except redis.RedisError:
        log.warning("redis unavailable in connecting call_sid=%s", call.call_sid)
    vr = VoiceResponse()
    speak(svc, vr, "connecting", lang)
    if request.args.get("join") == "1" and call.call_sid:
        conference(vr, call.call_sid, svc.flows.call["queue"]["hold_music"], caller=True)
    return twiml(vr)


def _whisper(svc: Services, record: dict[str, Any], lang: str) -> str:
    queued_ms = int(record.get("queued_at_ms") or 0)
    waited = int((svc.now().timestamp() * 1000 - queued_ms) // 60000) if queued_ms else 0
    return svc.prompts.render("agent_whisper", lang, name=record.get("customer_name") or "",
                              tags=record["tags"], purpose=record.get("purpose", ""),
                              intent=(record.get("intent") or "").split(","),
                              transcript=record.get("transcript", ""), waited_minutes=waited)


@bp.post("/agent-line")
@twilio_signed
def agent_line() -> Response:
    """An operator calls the operator line: hear the next caller's context on this leg only,
    then meet the caller in the conference named after the caller's CallSid."""
    agent = calls.CallInfo.parse(request.form)
    svc = current_services()
    lang = svc.flows.default_language
    voice = svc.flows.voice(lang)
    vr = VoiceResponse()
    if not agent.call_sid or not svc.flows.operator_allowed(agent.raw_from, agent.phone):
        log.warning("operator line refused call_sid=%s from=%s", agent.call_sid or "-",
                    mask(agent.phone or agent.raw_from))
        vr.reject()
        return twiml(vr)
    try:
        record = calls.next_caller(svc, agent.call_sid)
    except redis.RedisError as e:
        log.warning("redis unavailable in agent-line (%s) call_sid=%s", type(e).__name__,
                    agent.call_sid)
        return twiml(operator_degraded(svc))
    if record is None:
        speak(svc, vr, "agent_idle", lang)
        vr.pause(length=svc.flows.call["agent"]["idle_pause"])
        vr.redirect(callback_url("voice.agent_line"), method="POST")
        return twiml(vr)
    caller_sid = record["call_sid"]
    _move_to_conference(svc, caller_sid, agent.call_sid)
    say(vr, _whisper(svc, record, lang), voice)
    conference(vr, caller_sid, svc.flows.call["queue"]["hold_music"], caller=False)
    return twiml(vr)


def _move_to_conference(svc: Services, caller_sid: str, agent_sid: str) -> None:
    """Queue the REST redirect that takes the caller out of the Twilio queue into the room;
    the job id makes a retried operator webhook enqueue it once."""
    try:
        svc.queue.enqueue("worker.calls.redirect_call", caller_sid,
                          callback_url("voice.connecting", join=1),
                          job_id=f"redirect-{caller_sid}", unique=True,
                          retry=None, description=f"redirect {caller_sid}")
        log.info("operator takes caller call_sid=%s agent_call_sid=%s", caller_sid, agent_sid)
    except DuplicateJobError:
        log.info("redirect already queued call_sid=%s", caller_sid)


@bp.post("/agent-whisper")
@twilio_signed
def agent_whisper() -> Response:
    """TaskRouter reservation `call` instruction: whisper the caller's context on the
    operator's leg, then take the reserved caller (?reservation=WR…&call=CA…)."""
    svc = current_services()
    lang = svc.flows.default_language
    reservation = request.args.get("reservation", "")
    caller_sid = calls.CallInfo.parse({"CallSid": request.args.get("call", "")}).call_sid
    vr = VoiceResponse()
    if not RESERVATION.match(reservation):
        log.warning("agent-whisper without a reservation sid call_sid=%s",
                    request.form.get("CallSid", "-")[:64])
        speak(svc, vr, "agent_idle", lang)
        vr.hangup()
        return twiml(vr)
    try:
        record = calls.get(svc, caller_sid) if caller_sid else None
    except redis.RedisError:
        record = None
    if record:
        say(vr, _whisper(svc, record, lang), svc.flows.voice(lang))
    dial = Dial(action=callback_url("voice.agent_rejoin", call=caller_sid), method="POST") \
        if caller_sid else Dial()
    dial.queue(svc.flows.queue_name, reservation_sid=reservation,
               url=callback_url("voice.connecting"))
    vr.append(dial)
    return twiml(vr)


@bp.post("/agent-rejoin")
@twilio_signed
def agent_rejoin() -> Response:
    """TaskRouter mode, the operator's <Dial action> (?call=CA…): the direct bridge to the
    caller has ended. When an escalation took the caller into their conference (`bridge`
    'conference'), the operator follows to hand over to the SV in the room; otherwise the
    caller hung up and the operator's leg ends too."""
    svc = current_services()
    caller_sid = calls.CallInfo.parse({"CallSid": request.args.get("call", "")}).call_sid
    vr = VoiceResponse()
    try:
        record = calls.get(svc, caller_sid) if caller_sid else None
    except redis.RedisError:
        log.warning("redis unavailable in agent-rejoin call_sid=%s", caller_sid)
        record = None
    if record and record.get("bridge") == "conference" and record.get("state") != "completed":
        log.info("operator follows caller into the conference call_sid=%s agent_call_sid=%s",
                 caller_sid, request.form.get("CallSid", "-")[:64])
        return twiml(conference(vr, caller_sid, svc.flows.call["queue"]["hold_music"],
                                caller=False))
    vr.hangup()
    return twiml(vr)


@bp.post("/status")
@twilio_signed
def status() -> Response:
    """Call status callback: a finished call leaves the live list and the waiting line."""
    sid = calls.CallInfo.parse(request.form).call_sid
    state = (request.form.get("CallStatus") or "")[:32]
    if sid and state in TERMINAL:
        try:
            calls.close(current_services(), sid, state, request.form.get("CallDuration"))
        except redis.RedisError:
            log.warning("redis unavailable in status call_sid=%s", sid)
            return Response("redis unavailable", status=503, mimetype="text/plain")
    return twiml(VoiceResponse())


@bp.post("/fallback")
@twilio_signed
def fallback() -> Response:
    """Twilio's fallback URL: a fixed apology and the plain queue, needing nothing but this
    process, in the basic fallback voice in case the primary voice is what failed."""
    svc = current_services()
    lang = svc.flows.default_language
    vr = VoiceResponse()
    say(vr, svc.prompts.render("apology", lang), svc.flows.voice(lang), fallback=True)
    vr.enqueue(svc.flows.queue_name)
    return twiml(vr)


def transfer_or_requeue(svc: Services, vr: VoiceResponse, call_sid: str, lang: str,
                        trigger: str, state: str, *, with_operator: bool = False
                        ) -> VoiceResponse:
    """The caller's side of a warm transfer: a cushion sentence, then the conference named
    after their CallSid with hold music until the SV joins; with nobody on call, the front of
    the queue instead, unless their operator is coming into the room with them."""
    from ivr.voice_sv import priority_queue

    if state == "exhausted" and not with_operator:
        return priority_queue(svc, call_sid, lang, vr)
    speak(svc, vr, "transfer_cushion", lang, trigger=trigger)
    conference(vr, call_sid, svc.flows.call["queue"]["hold_music"], caller=True)
    speak(svc, vr, "transfer_end", lang)
    return vr


from ivr import voice_sms, voice_sv  # noqa: E402,F401  (their routes register on bp)
