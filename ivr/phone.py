"""Phone numbers: E.164 normalisation (Japan first), withheld callers, masking for logs."""

from __future__ import annotations

import functools
import re

import phonenumbers

DEFAULT_REGION = "JP"

# What Twilio puts in From when the caller withheld or has no caller ID.
WITHHELD = {
    "", "+", "anonymous", "restricted", "unknown", "private", "unavailable", "blocked",
    "+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253",
}
MAX_INPUT = 64
# What Twilio's From looks like for a phone caller: E.164, '+' and up to 15 digits.
_E164_SHAPE = re.compile(r"\+[1-9][0-9]{6,14}")


@functools.lru_cache(maxsize=8192)
def normalize(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """E.164 for a real, dialable number ("090-1234-5678" -> "+819012345678"), else None.

    None covers withheld IDs, short codes and anything that is not a valid number, so the
    caller is treated as unknown rather than refused. Kept per process for the last few
    thousand numbers: in an outage the same callers ring again and again.
    """
    text = (raw or "").strip()
    if text.lower() in WITHHELD or len(text) > MAX_INPUT:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def caller_id(raw: str | None) -> str | None:
    """The caller's number from Twilio's From, or None when withheld or not a phone.

    Twilio writes a phone caller's From in E.164 already, so that shape is taken as it is;
    only other spellings (a SIP URI, "client:…", a national number) go through normalize.
    Most callers in an outage ring for the first time, so normalize's cache seldom helps and
    its plan tables cost ~45 µs a caller. A well-shaped number the plan tables would refuse
    is kept: it matches no customer record (those hold valid numbers only), and where an SMS
    would go to it, is_mobile refuses it.
    """
    text = (raw or "").strip()
    if _E164_SHAPE.fullmatch(text) and text not in WITHHELD:
        return text
    return normalize(text)


@functools.lru_cache(maxsize=8192)
def is_mobile(e164: str) -> bool:
    """True for numbers that can receive SMS (mobile, or fixed-or-mobile where undecidable).
    Kept per process: the hold loop asks again for the same caller every half minute."""
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False
    return kind in (phonenumbers.PhoneNumberType.MOBILE,
                    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def mask(phone: str | None) -> str:
    """'+81******5678': enough to tell calls apart in a log, never the whole number."""
    if not phone:
        return "-"
    if len(phone) <= 6:
        return "*" * len(phone)
    head = 3 if phone.startswith("+") else 0
    return phone[:head] + "*" * (len(phone) - head - 4) + phone[-4:]
