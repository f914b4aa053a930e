"""Twilio messaging webhooks (PRODUCT.md §1): inbound keywords and delivery status callbacks.

Both answer 200 with a (possibly empty) MessagingResponse: a signed request Twilio sent is
never refused for its content, and Redis being down costs the inbound reply, never a 500.
The status callback alone answers 503 without Redis, as /voice/status does, so that a
callback URL with retry overrides is tried again.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, request
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import HTTPException

from ivr import current_services, delivery, inbound
from ivr.signature import twilio_signed
from ivr.twiml import twiml

log = logging.getLogger(__name__)
bp = Blueprint("sms", __name__, url_prefix="/sms")


def _sid() -> str:
    sid = request.form.get("MessageSid", "-")
    return sid if inbound.MESSAGE_SID.match(sid) else "-"


@bp.errorhandler(Exception)
def unexpected(e: Exception) -> Response | HTTPException:
    """Log the fault and answer an empty MessagingResponse, so Twilio records no error and
    sends nothing."""
    if isinstance(e, HTTPException):
        return e
    log.exception("sms webhook failed path=%s message_sid=%s", request.path, _sid())
    return twiml(MessagingResponse())


@bp.post("/incoming")
@twilio_signed
def incoming() -> Response:
    """Twilio messaging 'A message comes in': STOP/停止 opts out, START/再開 opts in, 状況 gets
    the current status, anything else a pointer to the support line; one reply at most."""
    msg = inbound.InboundSms.parse(request.form)
    svc = current_services()
    try:
        reply = inbound.reply_to(svc, msg)
    except redis.RedisError as e:
        log.warning("redis unavailable in sms incoming (%s) message_sid=%s", type(e).__name__,
                    msg.message_sid or "-")
        reply = None
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return twiml(response)


@bp.post("/status")
@twilio_signed
def status() -> Response:
    """Twilio message status callback: the delivery record and counters; 21610 opts the
    number out, 30004-30006 mark it undeliverable, 30003/30008 schedule one resend."""
    callback = delivery.StatusCallback.parse(request.form)
    if callback is None:
        log.warning("status callback ignored: no MessageSid or unknown status message_sid=%s",
                    _sid())
        return twiml(MessagingResponse())
    try:
        delivery.record_status(current_services(), callback)
    except redis.RedisError as e:
        log.warning("redis unavailable in sms status (%s) message_sid=%s", type(e).__name__,
                    callback.message_sid)
        # As /voice/status: a 5xx lets a callback URL with retry overrides (#rc=) try again;
        # the script makes a repeated callback harmless.
        return Response("redis unavailable", status=503, mimetype="text/plain")
    return twiml(MessagingResponse())
