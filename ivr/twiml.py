"""TwiML responses: one place that turns a twilio.twiml document into an HTTP answer."""

from __future__ import annotations

from flask import Response
from twilio.twiml import TwiML


def twiml(doc: TwiML | str, status: int = 200) -> Response:
    """Serialise a VoiceResponse/MessagingResponse (or a document already serialised and
    kept) as text/xml."""
    return Response(str(doc), status=status, mimetype="text/xml")
