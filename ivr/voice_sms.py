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
from ivr.optout import opt_in
from ivr.phone import is_mobile, mask
from ivr.progress import JOB_RETRY
from ivr.services import Services
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice import bp, speak
from ivr.voice_twiml import callback_url, gather

log = logging.getLogger(__name__)


# The menu's SMS key, once per menu turn: flips the number on or off the suppression list
# unless the call record says this turn's key was already answered (Twilio retrying the
# webhook) or the record is gone, and notes the turn in the same step, so a retry racing
# the original cannot flip twice. KEYS: call, sms opt-out set; ARGV: turn, phone.
# Returns {opted out now (0/1), flipped (0/1)}.
_TOGGLE = """
local opted = redis.call('SISMEMBER', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'sms_key_turn') == ARGV[1]
    then return {opted, 0} end
if opted == 1 then
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('SADD', KEYS[2], ARGV[2])
end
redis.call('HSET', KEYS[1], 'sms_key_turn', ARGV[1])
return {1 - opted, 1}
"""


def toggle_sms(svc: Services, call_sid: str, turn: int = 0) -> VoiceResponse:
    """The menu's SMS key: stop updates for this number, or start them again, confirmed by
    voice; then the menu once more, and a polite goodbye if nothing else is wanted.

    `turn` is the menu the key answered (from the Gather action URL): Twilio retrying that
    webhook hears the same confirmation and changes nothing, while the key pressed again in
    the next menu (turn + 1) flips the setting back.
    """
    record = calls.get(svc, call_sid) or {}
    lang = record.get("lang") or svc.flows.default_language
    phone = record.get("from") or ""
    vr = VoiceResponse()
    if not phone or not is_mobile(phone):
        speak(svc, vr, "sms_toggle_unavailable", lang)
    else:
        opted_out, flipped = svc.eval(_TOGGLE, 2, keys.call(call_sid), keys.sms_optout(),
                                      turn, phone)
        log.info("sms %s by key phone=%s call_sid=%s turn=%s changed=%s",
                 "opt-out" if opted_out else "opt-in", mask(phone), call_sid, turn,
                 bool(flipped))
        speak(svc, vr, "sms_toggle_off" if opted_out else "sms_toggle_on", lang)
    menu = svc.prompts.render("menu", lang, incident=bool(record.get("incidents")))
    gather(vr, svc.flows, svc.flows.voice(lang), menu, hints=svc.lexicon.hints(lang),
           turn=turn + 1)
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
