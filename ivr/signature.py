"""Twilio's X-Twilio-Signature check, over the URL Twilio really requested."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr.logs import looks_like

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def requested_url(public_base_url: str, environ: dict[str, Any]) -> str | None:
    """PUBLIC_BASE_URL plus the raw path and query exactly as received; None when the
    request target is not a path (an absolute-form `POST http://x/voice/incoming`, an
    asterisk): Twilio never sends one, so it cannot carry a valid signature.

    Flask's request.url is decoded and rebuilt (and says http behind a TLS proxy), which
    breaks the signature of a percent-encoded query, so the raw request line is used.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/")
        query = environ.get("QUERY_STRING", "")
        raw = f"{path}?{query}" if query else path
    if not raw.startswith("/"):
        return None
    return public_base_url.rstrip("/") + raw


class _Params:
    """request.form as RequestValidator reads it: the library tries `getall()` first and
    falls back through two AttributeErrors per parameter to Flask's `getlist()`; offering
    `getall()` keeps the library's own signature string at a tenth of the cost."""

    def __init__(self, form: MultiDict[str, str]) -> None:
        self.form = form

    def __iter__(self) -> Iterator[str]:
        return iter(self.form)

    def __len__(self) -> int:
        return len(self.form)

    def getall(self, name: str) -> list[str]:
        return self.form.getlist(name)


def twilio_signed(view: F) -> F:
    """Answer 403 and do nothing unless Twilio signed this request with our auth token.

    One HMAC over the URL as received settles almost every request; only a mismatch pays for
    the library's full check (the URL with and without a default port).
    """

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        config = current_app.config
        url = requested_url(config["PUBLIC_BASE_URL"], request.environ)
        signature = request.headers.get("X-Twilio-Signature", "")
        if url is None or not signature or not _valid(config["TWILIO_AUTH_TOKEN"], url,
                                                      signature):
            sid = request.form.get("CallSid")
            log.warning("rejected unsigned request path=%s call_sid=%s", request.path,
                        sid if looks_like("call_sid", sid) else "-")
            abort(403)
        return view(*args, **kwargs)

    return checked  # type: ignore[return-value]


def _valid(auth_token: str, url: str, signature: str) -> bool:
    validator = RequestValidator(auth_token)
    try:
        return hmac.compare_digest(
            validator.compute_signature(url, _Params(request.form)), signature
        ) or bool(validator.validate(url, request.form, signature))
    except ValueError:  # a URL the library cannot take apart (a bad port): not Twilio's
        return False
