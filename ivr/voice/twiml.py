"""TwiML builders shared by the voice views; each fills and returns a VoiceResponse.

Every word a leg hears goes through say(), the one place text reaches TwiML, so text from
Redis (announcements, notes, customer names) cannot make a document that is not XML 1.0.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import current_app, url_for
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ivr import call as calls
from ivr.flows import Flows, Voice
from ivr.services import Services

TASK_PRIORITY = {0: 100, 1: 50, 2: 10}
# What XML 1.0 forbids or Unicode reserves, whatever Redis holds (text stored before the
# API refused it, a customer CSV): C0 controls but tab, newline and CR; lone surrogates;
# the noncharacters U+FDD0-U+FDEF and U+xFFFE/U+xFFFF of every plane.
UNSPEAKABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]")


def speakable(text: str) -> str:
    """`text` without the characters UNSPEAKABLE names, so a document stays XML 1.0."""
    return UNSPEAKABLE.sub("", text)


def callback_url(endpoint: str, **values: Any) -> str:
    """An absolute URL Twilio can reach: PUBLIC_BASE_URL + our route (ASCII ids only)."""
    base = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    return base + url_for(endpoint, **values)


def say(vr: VoiceResponse | Gather, text: str, voice: Voice, *, fallback: bool = False
        ) -> None:
    """Speak `text` in `voice` (or its basic fallback voice): the one place text reaches
    TwiML, so nothing XML 1.0 forbids gets into a document (speakable)."""
    vr.say(speakable(text), voice=voice.fallback_voice if fallback else voice.voice,
           language=voice.tts_language)


def gather(vr: VoiceResponse, flows: Flows, voice: Voice, prompt: str,
           hints: list[str] | None = None, *, turn: int = 0, heard: int = 0) -> Gather:
    """Speech and keys together; speech_timeout 'auto' only without a speech model; `hints`
    (from the intent lexicon) help the recogniser with the phrases that matter. `turn`
    numbers the menus one call has heard (the first is 0) and goes in the action URL, so a
    Twilio retry of the answer is told from a key pressed again in a later menu; `heard`,
    when some announcements are still unheard, how many were, for the "more" key."""
    settings = flows.call["gather"]
    query = {name: value for name, value in (("turn", turn), ("heard", heard)) if value}
    action = callback_url("voice.gather_result", **query)
    options: dict[str, Any] = {
        "input": "speech dtmf",
        "action": action,
        "method": "POST",
        "language": voice.tts_language,
        "timeout": settings["timeout"],
        "num_digits": 1,
        "action_on_empty_result": False,
    }
    if hints:
        options["hints"] = ", ".join(hints)
    if settings.get("speech_model"):
        options["speech_model"] = settings["speech_model"]
        options["speech_timeout"] = settings["speech_timeout"]
    else:
        options["speech_timeout"] = "auto"
    g = vr.gather(**options)
    say(g, prompt, voice)
    return g


def enqueue(vr: VoiceResponse, flows: Flows, *, workflow_sid: str = "",
            task: dict[str, Any] | None = None, band: int = 2) -> VoiceResponse:
    """Put the caller in the queue: TaskRouter with the tags as task attributes when a
    workflow is configured, else the plain Twilio queue ordered by our own waiting line."""
    wait_url = callback_url("voice.queue_wait")
    if workflow_sid:
        e = vr.enqueue(workflow_sid=workflow_sid, wait_url=wait_url, wait_url_method="POST")
        e.task(json.dumps(task or {}, ensure_ascii=False), priority=TASK_PRIORITY.get(band, 10))
    else:
        vr.enqueue(flows.queue_name, wait_url=wait_url, wait_url_method="POST")
    return vr


def conference(vr: VoiceResponse, room: str, hold_music: str, *, caller: bool,
               end_on_exit: bool | None = None) -> VoiceResponse:
    """Meet in the room named after the caller's CallSid. The caller waits (hold music) until
    staff arrive; the caller's leaving ends it, staff leaving does not unless `end_on_exit`
    (an SV alone with the caller), so a supervisor can stay after the operator leaves."""
    dial = Dial()
    dial.conference(room, start_conference_on_enter=not caller,
                    end_conference_on_exit=caller if end_on_exit is None else end_on_exit,
                    beep=False, wait_url=hold_music, wait_method="GET")
    vr.append(dial)
    return vr


def speak(svc: Services, target: Any, name: str, lang: str, /, **ctx: Any) -> None:
    """Say prompt `name` in `lang` with that language's voice."""
    say(target, svc.prompts.render(name, lang, **ctx), svc.flows.voice(lang))


def last_words(svc: Services, vr: VoiceResponse, name: str, lang: str) -> VoiceResponse:
    """Say prompt `name` in `lang`, then <Hangup/>: how a leg with nothing more to do ends."""
    speak(svc, vr, name, lang)
    vr.hangup()
    return vr


def workflow_sid() -> str:
    """The TaskRouter workflow callers are queued in, or "" for the plain Twilio queue."""
    return str(current_app.config["TWILIO_WORKFLOW_SID"] or "")


def degraded(svc: Services, lang: str | None = None) -> VoiceResponse:
    """Apology, then the plain Twilio queue: what a caller gets when Redis cannot answer."""
    lang = lang or svc.flows.default_language
    vr = VoiceResponse()
    speak(svc, vr, "apology", lang)
    return enqueue(vr, svc.flows, workflow_sid=workflow_sid())


def operator_degraded(svc: Services) -> VoiceResponse:
    """Without Redis the operator still takes callers, in Twilio's own arrival order."""
    lang = svc.flows.default_language
    vr = VoiceResponse()
    speak(svc, vr, "apology", lang)
    dial = Dial()
    dial.queue(svc.flows.queue_name, url=callback_url("voice.connecting"))
    vr.append(dial)
    return vr


def staff_degraded(svc: Services, lang: str | None = None) -> VoiceResponse:
    """An SV's leg without Redis: a short apology, then hang up. Never the customers' queue;
    the escalation watchdog rings the ladder on once Redis is back."""
    return last_words(svc, VoiceResponse(), "sv_unavailable",
                      lang or svc.flows.default_language)


def priority_queue(svc: Services, vr: VoiceResponse, call_sid: str, lang: str,
                   tags: list[str]) -> VoiceResponse:
    """Apology, then the waiting line with priority (call.requeue_priority put the caller at
    its front): the caller's context stays on the call record for the operator."""
    speak(svc, vr, "requeue", lang)
    return enqueue(vr, svc.flows, workflow_sid=workflow_sid(),
                   task={"call_sid": call_sid, "tags": tags}, band=calls.BAND_PRIORITY)


def transfer_or_requeue(svc: Services, vr: VoiceResponse, call_sid: str, lang: str,
                        trigger: str, requeued: list[str] | None) -> VoiceResponse:
    """The caller's side of a warm transfer: a cushion sentence, then the conference named
    after their CallSid with hold music until the SV joins; or, when nobody could take it
    and the caller was put back at the front of the line (`requeued`: their tags, from
    call.requeue_priority), the priority queue."""
    if requeued is not None:
        return priority_queue(svc, vr, call_sid, lang, requeued)
    speak(svc, vr, "transfer_cushion", lang, trigger=trigger)
    conference(vr, call_sid, svc.flows.call["queue"]["hold_music"], caller=True)
    speak(svc, vr, "transfer_end", lang)
    return vr
