"""SMS opt-out: the signed link every message carries, and the suppression list it writes.

Japanese mobiles cannot reply to an SMS, so every message ends with
`{PUBLIC_BASE_URL}/u/<token>`. The token names the number and is signed, so it needs no
Redis lookup and cannot be forged or pointed at somebody else's number:

    token = base64url( number as a big-endian integer ‖ HMAC-SHA256(secret, "+<E.164>")[:12] )

The E.164 digits (at most 15, so at most 7 bytes) never start with 0, which makes the integer
form exact and short; with a 96-bit tag the token is at most 26 characters (23 for a Japanese
mobile). `secret` is HMAC-SHA256 keyed with a fixed label over TWILIO_AUTH_TOKEN and
IVR_ADMIN_TOKEN: rotating either of them invalidates every link already sent (the page then
answers 404; the call flow's key and the STOP keyword still work).

The token is not encrypted: whoever holds the link can read the number in it. It is only ever
sent to that number; it must not be logged (ivr.logs masks phone numbers, not paths).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from typing import Any

from ivr import keys
from ivr.phone import mask
from ivr.services import Services
from ivr.urls import public_url

log = logging.getLogger(__name__)

LABEL = b"incident-ivr/sms-optout-link/v1"
TAG_BYTES = 12  # 96 bits
MAX_DIGITS = 15  # E.164
MAX_NUMBER_BYTES = 7  # 10**15 - 1 < 2**56
MAX_TOKEN_LEN = -(-(MAX_NUMBER_BYTES + TAG_BYTES) * 4 // 3)  # 26
MIN_TOKEN_LEN = -(-(1 + TAG_BYTES) * 4 // 3)  # 18
TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{MIN_TOKEN_LEN},{MAX_TOKEN_LEN}}}$")
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
PATH = "/u/"


def _secret(config: Mapping[str, Any]) -> bytes:
    """The link key, derived so that neither configured secret is used directly."""
    material = b"".join(
        len(part).to_bytes(4, "big") + part
        for part in (str(config["TWILIO_AUTH_TOKEN"]).encode(),
                     str(config["IVR_ADMIN_TOKEN"]).encode()))
    return hmac.new(LABEL, material, hashlib.sha256).digest()


def _tag(config: Mapping[str, Any], phone: str) -> bytes:
    return hmac.new(_secret(config), phone.encode("ascii"), hashlib.sha256).digest()[:TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(config: Mapping[str, Any], phone: str) -> str:
    """The opt-out token for an E.164 number (ValueError for anything else)."""
    if not E164.match(phone):
        raise ValueError("make_token needs an E.164 number")
    number = int(phone[1:])
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return _b64(raw + _tag(config, phone))


def read_token(config: Mapping[str, Any], token: str) -> str | None:
    """The E.164 number a token names, or None when it is forged, garbled or too long."""
    if not isinstance(token, str) or not TOKEN.match(token):
        return None
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    number_bytes, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if not number_bytes or number_bytes[0] == 0 or len(number_bytes) > MAX_NUMBER_BYTES:
        return None
    phone = "+" + str(int.from_bytes(number_bytes, "big"))
    if len(phone) - 1 > MAX_DIGITS:
        return None
    if not hmac.compare_digest(tag, _tag(config, phone)):
        return None
    if _b64(raw) != token:  # one spelling per token: no stray bits in the last character
        return None
    return phone


def optout_url(config: Mapping[str, Any], phone: str) -> str:
    """`PUBLIC_BASE_URL/u/<token>`, the link at the end of every message to `phone`."""
    return public_url(config, PATH + make_token(config, phone))


def opt_out(svc: Services, phone: str, source: str) -> bool:
    """Put `phone` on the suppression list; True when it was not on it before.

    Args:
        source: who asked, for the log: "link", "sms-keyword", "twilio-21610", "voice"…
    """
    changed = bool(svc.redis.sadd(keys.sms_optout(), phone))
    log.info("sms opt-out phone=%s source=%s changed=%s", mask(phone), source, changed)
    return changed


def opt_in(svc: Services, phone: str, source: str) -> bool:
    """Take `phone` off the suppression list; True when it was on it."""
    changed = bool(svc.redis.srem(keys.sms_optout(), phone))
    log.info("sms opt-in phone=%s source=%s changed=%s", mask(phone), source, changed)
    return changed


def toggle_by_key(svc: Services, call_sid: str, phone: str, turn: int) -> bool:
    """The call menu's SMS key: flip `phone` on or off the suppression list, once per menu
    `turn` of the call (a Twilio retry of the same turn changes nothing). Returns whether
    the number is opted out now."""
    opted_out, flipped = svc.script("sms_key_toggle")(
        keys=[keys.call(call_sid), keys.sms_optout()], args=[turn, phone])
    log.info("sms %s by key phone=%s call_sid=%s turn=%s changed=%s",
             "opt-out" if opted_out else "opt-in", mask(phone), call_sid, turn, bool(flipped))
    return bool(opted_out)


def is_opted_out(svc: Services, phone: str) -> bool:
    """Whether `phone` is on the suppression list."""
    return bool(svc.redis.sismember(keys.sms_optout(), phone))
