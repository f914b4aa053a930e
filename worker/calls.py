"""Jobs that steer live calls over Twilio's REST API, out of the webhook's way."""

from __future__ import annotations

import logging

from twilio.base.exceptions import TwilioRestException

from worker import worker_services

log = logging.getLogger(__name__)


def redirect_call(call_sid: str, url: str) -> str | None:
    """Point a live call at new TwiML (out of the queue into its conference). A call that has
    already ended (Twilio 21220) is not an error: the caller hung up while we reached them."""
    svc = worker_services()
    try:
        updated = svc.twilio.calls(call_sid).update(url=url, method="POST")
    except TwilioRestException as e:
        if e.code == 21220:
            log.info("call already ended call_sid=%s", call_sid)
            return None
        raise
    log.info("call redirected call_sid=%s", call_sid)
    return str(updated.sid)
