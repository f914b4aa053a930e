"""Keys on the phone for SMS updates: Japanese mobiles cannot reply to an SMS, so the call
itself is where a caller stops, restarts or asks for updates."""

from __future__ import annotations

import logging

import redis
from flask import Response, request
from rq.exceptions import DuplicateJobError
from twilio.twiml.voice_response import VoiceResponse

from ivr import call as calls
from ivr import current_services, keys
from ivr.optout import opt_in, opt_out
from ivr.phone import is_mobile, mask
from ivr.progress import JOB_RETRY
from ivr.services import Services
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice import bp, speak
from ivr.voice_twiml import callback_url, gather

log = logging.getLogger(__name__)


def toggle_sms(svc: Services, call_sid: str) -> VoiceResponse:
    """The menu's SMS key: stop updates for this number, or start them again, confirmed by
    voice; then the menu once more, and a polite goodbye if nothing else is wanted."""
    record = calls.get(svc, call_sid) or {}
    lang = record.get("lang") or svc.flows.default_language
    phone = record.get("from") or ""
    vr = VoiceResponse()
    if not phone or not is_mobile(phone):
        speak(svc, vr, "sms_toggle_unavailable", lang)
    elif svc.redis.sismember(keys.sms_optout(), phone):
        opt_in(svc, phone, "voice-key")
        speak(svc, vr, "sms_toggle_on", lang)
    else:
        opt_out(svc, phone, "voice-key")
        speak(svc, vr, "sms_toggle_off", lang)
    menu = svc.prompts.render("menu", lang, incident=bool(record.get("incidents")))
    gather(vr, svc.flows, svc.flows.voice(lang), menu, hints=svc.lexicon.hints(lang))
    speak(svc, vr, "goodbye", lang)
    vr.hangup()
    return vr


@bp.post("/queue-key")
@twilio_signed
def queue_key() -> Response:
    """A key pressed while waiting: 1 subscribes the calling number to the incident's SMS
    updates (confirmed by voice now and by one SMS); the caller keeps their place."""
    svc = current_services()
    sid = calls.CallInfo.parse(request.form).call_sid
    vr = VoiceResponse()
    if request.form.get("Digits") != "1" or not sid:
        return twiml(vr)
    try:
        info = calls.waiting_status(svc, sid)
        phone = info.sms_phone
        if not info.incident_id or not phone:
            return twiml(vr)
        opt_in(svc, phone, "voice-queue-key")
        if svc.redis.sadd(keys.incident_subscribers(info.incident_id), phone):
            try:
                svc.sms_queue.enqueue("worker.sms.confirm_subscription", info.incident_id,
                                      phone, job_id=f"subscribed-{info.incident_id}-{sid}",
                                      unique=True, retry=JOB_RETRY)
            except DuplicateJobError:
                pass
            log.info("subscribed by key call_sid=%s from=%s", sid, mask(phone))
        speak(svc, vr, "queue_subscribed", info.lang)
    except redis.RedisError:
        log.warning("redis unavailable in queue-key call_sid=%s", sid)
    vr.redirect(callback_url("voice.queue_wait"), method="POST")
    return twiml(vr)
