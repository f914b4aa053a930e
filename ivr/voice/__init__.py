"""Twilio voice webhooks (PRODUCT.md §1): the blueprint `voice` and each leg's answer when
Redis cannot.

Views live in caller.py (the customer's call), agent.py (the operator line), supervisor.py
(the SV's escalation leg and the caller's warm transfer); their TwiML builders in twiml.py.
Every view declares, where it is defined, what it answers when Redis is down or hung (or
anything else fails), by kind of leg (`@without_redis(...)`): a caller is still queued, an
SV's leg hears a short apology and hangs up, the operator line takes callers from Twilio's
own queue, a status callback gets an empty answer. A staff leg is never put in the
customers' queue. The blueprint's error handler is the one place that answers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from flask import Blueprint, Response, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from ivr import current_services
from ivr.services import Services
from ivr.twiml import twiml as answer_with  # ivr.voice.twiml is the submodule
from ivr.voice.twiml import degraded, operator_degraded, staff_degraded

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")

Answer = Callable[[Services], Response]
F = TypeVar("F", bound=Callable[..., Any])
ANSWERS: dict[str, Answer] = {}
"""Endpoint ("voice.incoming") -> its answer without Redis; filled by @without_redis."""


def without_redis(answer: Answer) -> Callable[[F], F]:
    """Declare what the view below answers when Redis is down or hung, or it fails."""

    def declare(view: F) -> F:
        ANSWERS[f"{bp.name}.{view.__name__}"] = answer
        return view

    return declare


def caller_leg(svc: Services) -> Response:
    """A caller: the apology, then the customers' queue."""
    return answer_with(degraded(svc))


def sv_leg(svc: Services) -> Response:
    """An SV's escalation leg: a short apology and <Hangup/>, never <Enqueue>."""
    return answer_with(staff_degraded(svc))


def operator_line(svc: Services) -> Response:
    """The operator line: take callers from Twilio's queue in its own order."""
    return answer_with(operator_degraded(svc))


def status_callback(svc: Services) -> Response:
    """A status callback: nothing to say to anybody."""
    return answer_with(VoiceResponse())


def _call_sid() -> str:
    return request.form.get("CallSid", "-")[:64]


@bp.errorhandler(Exception)
def unexpected(e: Exception) -> Response | HTTPException:
    """Never let Twilio play its error message: log the fault and answer what the view
    declared for its kind of leg (a caller's apology and queue when it declared nothing)."""
    if isinstance(e, HTTPException):
        return e
    if isinstance(e, redis.RedisError):
        log.warning("redis unavailable in %s (%s) call_sid=%s", request.path,
                    type(e).__name__, _call_sid())
    else:
        log.exception("voice webhook failed path=%s call_sid=%s", request.path, _call_sid())
    answer = ANSWERS.get(request.endpoint or "")
    if answer is None:
        log.error("no answer declared without redis endpoint=%s", request.endpoint)
        answer = caller_leg
    return answer(current_services())


from ivr.voice import agent, caller, supervisor  # noqa: E402,F401  (routes register on bp)
