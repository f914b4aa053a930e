"""The opt-out page behind the link in every SMS (`/u/<token>`, PRODUCT.md §3).

GET only shows the page: link scanners and previews open links, so nothing changes until
the customer presses the button (a POST). Not a Twilio webhook, so no signature; the signed
token is the only credential, and a forged one gets 404 with nothing written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from flask import Blueprint, Response, current_app, render_template, request

from ivr import current_services, customer, optout
from ivr.errors import HTML_SECURITY_HEADERS
from ivr.lang import LANGS
from ivr.phone import mask
from ivr.services import Services

log = logging.getLogger(__name__)
bp = Blueprint("optout", __name__)


@bp.after_request
def secure(response: Response) -> Response:
    """No referrer (the link is a credential), no caching, no framing, no indexing."""
    response.headers.update(HTML_SECURITY_HEADERS)
    return response


def _page(state: str, *, token: str = "", phone: str | None = None, lang: str | None = None,
          status: int = 200) -> tuple[str, int]:
    chosen = request.args.get("lang")
    lang = chosen if chosen in LANGS else lang or current_services().flows.default_language
    return render_template("optout.html", state=state, token=token, lang=lang,
                           number=mask(phone) if phone else "", other_lang=(
                               "en" if lang == "ja" else "ja")), status


def _phone(token: str) -> str | None:
    return optout.read_token(current_app.config, token)


def _lang(phone: str) -> str | None:
    found, _ = customer.get(current_services(), phone)
    return found.language if found else None


@bp.get("/u/<token>")
def show(token: str) -> tuple[str, int]:
    """The page: the masked number, what stops, one button. Changes nothing."""
    phone = _phone(token)
    if phone is None:
        return _page("invalid", status=404)
    try:
        found, opted_out = customer.get(current_services(), phone)
    except redis.RedisError as e:
        log.warning("redis unavailable on the opt-out page (%s)", type(e).__name__)
        return _page("unavailable", status=503)
    lang = found.language if found else None
    return _page("already" if opted_out else "confirm", token=token, phone=phone, lang=lang)


def _apply(token: str, change: Callable[[Services, str, str], bool], done: str
           ) -> tuple[str, int]:
    """Run one suppression-list change for the number the token names, then confirm."""
    phone = _phone(token)
    if phone is None:
        return _page("invalid", status=404)
    try:
        change(current_services(), phone, "link")
        lang = _lang(phone)
    except redis.RedisError as e:
        log.warning("redis unavailable on the opt-out page (%s)", type(e).__name__)
        return _page("unavailable", status=503)
    return _page(done, token=token, phone=phone, lang=lang)


@bp.post("/u/<token>")
def stop(token: str) -> tuple[str, int]:
    """The button: put the number on the suppression list (idempotent), then confirm."""
    return _apply(token, optout.opt_out, "stopped")


@bp.post("/u/<token>/resume")
def resume(token: str) -> tuple[str, int]:
    """The resume button: take the number off the suppression list, then confirm."""
    return _apply(token, optout.opt_in, "resumed")
