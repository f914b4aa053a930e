"""The caller's webhooks: the greeting and menu, the waiting line, the SMS keys, the
operator joining, the call's end, and Twilio's fallback URL."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Response, current_app, request
from twilio.twiml.voice_response import VoiceResponse

from ivr import announcement, current_services, escalation, optout, progress
from ivr import call as calls
from ivr.phone import is_mobile, mask
from ivr.services import Services
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice import bp, caller_leg, without_redis
from ivr.voice.twiml import (
    callback_url,
    conference,
    degraded,
    enqueue,
    gather,
    last_words,
    say,
    speak,
    transfer_or_requeue,
    workflow_sid,
)

log = logging.getLogger(__name__)

DIGITS = re.compile(r"^[0-9*#]{1,10}$")
TURN = re.compile(r"^[0-9]{1,4}$")
TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}
GREETINGS_KEPT = 256


@bp.post("/incoming")
@without_redis(caller_leg)
@twilio_signed
def incoming() -> Response:
    """Twilio 'A call comes in': greet, announce the incidents that apply, ask the purpose."""
    call = calls.CallInfo.parse(request.form)
    svc = current_services()
    if not call.call_sid:
        return twiml(degraded(svc))
    greeting = calls.answer_incoming(svc, call)
    if greeting.created:
        log.info("call in call_sid=%s from=%s tags=%s", call.call_sid, mask(call.phone),
                 ",".join(greeting.tags) or "-")
    if greeting.repeat:
        state = escalation.start(svc, call.call_sid, trigger="repeat")
        requeued = calls.requeue_if_unanswered(svc, call.call_sid, state)
        return twiml(transfer_or_requeue(svc, greeted(svc, greeting, menu_follows=False)[0],
                                         call.call_sid,
                                         greeting.lang, "repeat", requeued))
    return greeting_twiml(svc, greeting)


def announce(svc: Services, vr: VoiceResponse, lang: str,
             announcements: tuple[calls.Announcement, ...], start: int = 0, *,
             offer_more: bool = True) -> int:
    """From `start`, the next few incidents (flows `announcements.in_full`, most severe
    first) in full: the SV's recording or text, ETA, next update; then how many remain and
    the key that plays them. At most ANNOUNCED_IN_FULL_MAX texts: every answer stays under
    Twilio's 64 kB however many incidents are active. Returns how many have been heard, or
    0 when none remain."""
    settings = svc.flows.call["announcements"]
    voice = svc.flows.voice(lang)
    end = start + int(settings["in_full"])
    for item in announcements[start:end]:
        if item.recording:
            vr.play(item.recording)
        say(vr, calls.announcement_spoken(svc, item, lang), voice)
    others = len(announcements) - end
    if others <= 0:
        return 0
    offer_more = offer_more and svc.flows.call["gather"]["enabled"]
    more_key = settings["more_key"] if offer_more else ""
    speak(svc, vr, "announcement_others", lang, others=others, more_key=more_key)
    return end


def greeted(svc: Services, greeting: calls.Greeting, *, menu_follows: bool = True
            ) -> tuple[VoiceResponse, int]:
    """Welcome, then the announcements that apply (announce); how many were heard. The
    "more" key is offered only when the menu follows."""
    vr = VoiceResponse()
    speak(svc, vr, "welcome", greeting.lang)
    return vr, announce(svc, vr, greeting.lang, greeting.announcements,
                        offer_more=menu_follows)


def menu(svc: Services, vr: VoiceResponse, lang: str, *, incident: bool, turn: int = 0,
         heard: int = 0) -> None:
    """The purpose question (when flows enable it), then on to the gather step."""
    if svc.flows.call["gather"]["enabled"]:
        prompt = svc.prompts.render("menu", lang, incident=incident)
        gather(vr, svc.flows, svc.flows.voice(lang), prompt, hints=svc.lexicon.hints(lang),
               turn=turn, heard=heard)
    vr.redirect(callback_url("voice.gather_result"), method="POST")


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
        vr, heard = greeted(svc, greeting)
        menu(svc, vr, greeting.lang, incident=bool(greeting.announcements), heard=heard)
        xml = str(vr)
        if len(kept) >= GREETINGS_KEPT:
            kept.clear()
        kept[key] = xml
    return twiml(xml)


def more_announcements(svc: Services, call_sid: str, heard: int, turn: int) -> VoiceResponse:
    """The menu's "more" key: the next few announcements after the `heard` ones, then the
    menu again (its next turn)."""
    found = announcement.for_call(svc, call_sid)
    lang = found.lang if found else svc.flows.default_language
    vr = VoiceResponse()
    heard = announce(svc, vr, lang, found.announcements, heard) if found else 0
    menu(svc, vr, lang, incident=bool(found and found.announcements), turn=turn + 1,
         heard=heard)
    return vr


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
@without_redis(caller_leg)
@twilio_signed
def gather_result() -> Response:
    """Twilio <Gather action>: record what the caller wants, then queue them by priority."""
    call = calls.CallInfo.parse(request.form)
    svc = current_services()
    turn_text, heard = request.args.get("turn", ""), request.args.get("heard", "")
    turn = int(turn_text) if TURN.match(turn_text) else 0
    if heard and TURN.match(heard) and call.call_sid and request.form.get("Digits") == \
            svc.flows.call["announcements"]["more_key"]:
        return twiml(more_announcements(svc, call.call_sid, int(heard), turn))
    said = _said(request.form, svc.flows.call["menu"])
    if said["purpose"] == "sms" and call.call_sid:
        return twiml(toggle_sms(svc, call.call_sid, turn))
    intent = svc.lexicon.classify(said["transcript"], said["digits"])
    said["intent"] = ",".join(sorted(intent.labels))
    said["intent_phrases"] = " | ".join(intent.matched)[:300]
    if intent.wants_manager and call.call_sid and calls.mark(svc, call.call_sid, **said):
        state = escalation.start(svc, call.call_sid, trigger="manager", labels=intent.labels)
        record = calls.get(svc, call.call_sid) or {}
        lang = record.get("lang") or svc.flows.default_language
        requeued = calls.requeue_if_unanswered(svc, call.call_sid, state)
        return twiml(transfer_or_requeue(svc, VoiceResponse(), call.call_sid, lang,
                                         "manager", requeued))
    queued = calls.enqueue(svc, call.call_sid, said) if call.call_sid else None
    if queued is None:
        return twiml(degraded(svc))
    vr = VoiceResponse()
    speak(svc, vr, "queue_intro", queued.lang)
    task = {"call_sid": call.call_sid, "tags": queued.tags, "purpose": said["purpose"],
            "transcript": said["transcript"], "language": queued.lang}
    return twiml(enqueue(vr, svc.flows, workflow_sid=workflow_sid(), task=task,
                         band=queued.band))


def toggle_sms(svc: Services, call_sid: str, turn: int = 0) -> VoiceResponse:
    """The menu's SMS key: stop updates for this number, or start them again, confirmed by
    voice; then the menu once more, and a polite goodbye if nothing else is wanted.

    `turn` is the menu the key answered (from the Gather action URL): Twilio retrying that
    webhook hears the same confirmation and changes nothing, while the key pressed again in
    the next menu (turn + 1) flips the setting back (optout.toggle_by_key).
    """
    record = calls.get(svc, call_sid) or {}
    lang = record.get("lang") or svc.flows.default_language
    phone = record.get("from") or ""
    vr = VoiceResponse()
    if not phone or not is_mobile(phone):
        speak(svc, vr, "sms_toggle_unavailable", lang)
    else:
        opted_out = optout.toggle_by_key(svc, call_sid, phone, turn)
        speak(svc, vr, "sms_toggle_off" if opted_out else "sms_toggle_on", lang)
    menu = svc.prompts.render("menu", lang, incident=bool(record.get("incidents")))
    gather(vr, svc.flows, svc.flows.voice(lang), menu, hints=svc.lexicon.hints(lang),
           turn=turn + 1)
    return last_words(svc, vr, "goodbye", lang)


def _hold(svc: Services, vr: VoiceResponse) -> Response:
    vr.play(svc.flows.call["queue"]["hold_music"])
    return twiml(vr)


def queue_wait_without_redis(svc: Services) -> Response:
    """Still in the queue: the place Twilio reports, no incident status, hold music."""
    vr = VoiceResponse()
    twilio_place = request.form.get("QueuePosition", "")
    speak(svc, vr, "queue_wait", svc.flows.default_language, status=None, status_code=None,
          offer_sms=False, position=int(twilio_place) if twilio_place.isdigit() else None)
    return _hold(svc, vr)


@bp.post("/queue-wait")
@without_redis(queue_wait_without_redis)
@twilio_signed
def queue_wait() -> Response:
    """Twilio <Enqueue waitUrl>: place in line, the latest incident status, hold music."""
    sid = calls.CallInfo.parse(request.form).call_sid
    svc = current_services()
    vr = VoiceResponse()
    info = calls.waiting_status(svc, sid)
    target: Any = vr
    if info.incident_id and info.sms_phone:
        target = vr.gather(input="dtmf", num_digits=1, timeout=1, method="POST",
                           action=callback_url("voice.queue_key"))
    speak(svc, target, "queue_wait", info.lang, position=info.place, status=info.latest,
          status_code=info.status_code, offer_sms=target is not vr)
    return _hold(svc, vr)


def back_to_waiting(svc: Services) -> Response:
    """Back to the hold loop; the caller keeps their place."""
    vr = VoiceResponse()
    vr.redirect(callback_url("voice.queue_wait"), method="POST")
    return twiml(vr)


@bp.post("/queue-key")
@without_redis(back_to_waiting)
@twilio_signed
def queue_key() -> Response:
    """A key pressed while waiting: 1 subscribes the calling number to the incident's SMS
    updates (confirmed by voice now and by one SMS); the caller keeps their place."""
    svc = current_services()
    sid = calls.CallInfo.parse(request.form).call_sid
    vr = VoiceResponse()
    if request.form.get("Digits") != "1" or not sid:
        return twiml(vr)
    info = calls.waiting_status(svc, sid)
    if not info.incident_id or not info.sms_phone:
        return twiml(vr)
    progress.subscribe_caller(svc, sid, info.incident_id, info.sms_phone)
    speak(svc, vr, "queue_subscribed", info.lang)
    vr.redirect(callback_url("voice.queue_wait"), method="POST")
    return twiml(vr)


def _connecting(svc: Services, call_sid: str, lang: str) -> Response:
    vr = VoiceResponse()
    speak(svc, vr, "connecting", lang)
    if request.args.get("join") == "1" and call_sid:
        conference(vr, call_sid, svc.flows.call["queue"]["hold_music"], caller=True)
    return twiml(vr)


def connecting_without_redis(svc: Services) -> Response:
    """The operator is coming all the same: the sentence, and the room when it is one."""
    return _connecting(svc, calls.CallInfo.parse(request.form).call_sid,
                       svc.flows.default_language)


@bp.post("/connecting")
@without_redis(connecting_without_redis)
@twilio_signed
def connecting() -> Response:
    """Played to the caller only, just before an operator joins (<Queue url>, or the REST
    redirect out of the queue, which adds ?join=1 to meet in the caller's conference).

    Either way the caller is now with an operator, so an escalation must not move them away
    from one: the call is marked connected, with how (call.note_connected).
    """
    call = calls.CallInfo.parse(request.form)
    svc = current_services()
    lang = svc.flows.default_language
    record = calls.get(svc, call.call_sid) if call.call_sid else None
    if record:
        lang = record["lang"]
        calls.note_connected(svc, call.call_sid, record, joined=request.args.get("join") == "1",
                             taskrouter=bool(workflow_sid()))
    return _connecting(svc, call.call_sid, lang)


def status_without_redis(svc: Services) -> Response:
    """503, so that Twilio tries the callback again (a callback URL with retry overrides)."""
    return Response("redis unavailable", status=503, mimetype="text/plain")


@bp.post("/status")
@without_redis(status_without_redis)
@twilio_signed
def status() -> Response:
    """Call status callback: a finished call leaves the live list and the waiting line."""
    sid = calls.CallInfo.parse(request.form).call_sid
    state = (request.form.get("CallStatus") or "")[:32]
    if sid and state in TERMINAL:
        calls.close(current_services(), sid, state, request.form.get("CallDuration"))
    return twiml(VoiceResponse())


@bp.post("/fallback")
@without_redis(caller_leg)
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
