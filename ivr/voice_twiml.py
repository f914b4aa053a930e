"""TwiML builders shared by several voice views; each returns the VoiceResponse it fills."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, url_for
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ivr.flows import Flows, Voice

TASK_PRIORITY = {0: 100, 1: 50, 2: 10}


def callback_url(endpoint: str, **values: Any) -> str:
    """An absolute URL Twilio can reach: PUBLIC_BASE_URL + our route (ASCII ids only)."""
    base = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    return base + url_for(endpoint, **values)


def say(vr: VoiceResponse | Gather, text: str, voice: Voice, *, fallback: bool = False
        ) -> None:
    vr.say(text, voice=voice.fallback_voice if fallback else voice.voice,
           language=voice.tts_language)


def gather(vr: VoiceResponse, flows: Flows, voice: Voice, prompt: str,
           hints: list[str] | None = None, *, turn: int = 0) -> Gather:
    """Speech and keys together; speech_timeout 'auto' only without a speech model; `hints`
    (from the intent lexicon) help the recogniser with the phrases that matter. `turn`
    numbers the menus one call has heard (the first is 0) and goes in the action URL, so a
    Twilio retry of the answer is told from a key pressed again in a later menu."""
    settings = flows.call["gather"]
    action = callback_url("voice.gather_result", turn=turn) if turn \
        else callback_url("voice.gather_result")
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
