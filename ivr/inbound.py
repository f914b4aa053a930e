"""Inbound SMS (where the sender number supports replies): STOP/START keywords, 状況, help.

Japanese mobiles cannot reply to an SMS, so this is the secondary way to opt out; the link in
every message (ivr.optout) is the primary one.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

from ivr import customer, incident, keys, optout, undeliverable
from ivr.customer import Customer
from ivr.phone import mask, normalize
from ivr.segments import segments, truncate
from ivr.services import Services

log = logging.getLogger(__name__)

# Twilio's own default opt-out words (so both lists agree), plus the Japanese ones.
OPT_OUT_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit",
                           "optout", "revoke", "停止", "配信停止"})
OPT_IN_WORDS = frozenset({"start", "unstop", "再開", "開始"})
STATUS_WORDS = frozenset({"status", "状況"})
# Twilio's Advanced Opt-Out adds OptOutType when it recognised a keyword and replied itself.
TWILIO_OPT_OUT_TYPES = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}

MAX_BODY = 1600
"""Twilio's limit for one (concatenated) message; a longer Body is not a real SMS."""
REPLY_MAX_SEGMENTS = 6
"""A status reply never costs more than this; long texts are cut with an ellipsis."""
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
_SPACE_AND_END_PUNCTUATION = re.compile(r"\s+|[.!?。．！？、,]+$")


@dataclass(frozen=True)
class InboundSms:
    """The parts of Twilio's incoming-message form the service uses."""

    message_sid: str
    phone: str | None
    to: str | None
    body: str
    opt_out_type: str

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> InboundSms:
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        return cls(
            message_sid=sid if MESSAGE_SID.match(sid) else "",
            phone=normalize((form.get("From") or "")[:64]),
            to=normalize((form.get("To") or "")[:64]),
            body=form.get("Body") or "",
            opt_out_type=(form.get("OptOutType") or "").strip().upper()[:16],
        )


def keyword(body: str) -> str:
    """'opt_out', 'opt_in', 'status', 'empty' or 'other' for a message body.

    The whole body must be the keyword, as with Twilio's own keywords, after NFKC (full-width
    ＳＴＯＰ is STOP), case folding, and dropping spaces and trailing punctuation.
    """
    text = _SPACE_AND_END_PUNCTUATION.sub("", unicodedata.normalize("NFKC", body)).casefold()
    if not text:
        return "empty"
    if text in OPT_OUT_WORDS:
        return "opt_out"
    if text in OPT_IN_WORDS:
        return "opt_in"
    if text in STATUS_WORDS:
        return "status"
    return "other"


def _our_numbers(svc: Services, msg: InboundSms) -> set[str]:
    ours = {normalize(str(svc.config.get("TWILIO_FROM_NUMBER") or "")), msg.to}
    return {n for n in ours if n}


def reply_to(svc: Services, msg: InboundSms) -> str | None:
    """Act on one inbound SMS and return the reply text, or None to reply nothing.

    Nothing is written for a message that cannot be acted on (no MessageSid, no usable
    sender, our own number, an empty or oversized body). Otherwise the MessageSid is
    remembered first, so a retried webhook does nothing and replies nothing.
    """
    if not msg.message_sid or msg.phone is None:
        log.warning("inbound sms ignored: no MessageSid or sender message_sid=%s",
                    msg.message_sid or "-")
        return None
    if msg.phone in _our_numbers(svc, msg):
        log.warning("inbound sms from our own number ignored message_sid=%s", msg.message_sid)
        return None
    if len(msg.body) > MAX_BODY:
        log.warning("inbound sms ignored: body of %s characters message_sid=%s",
                    len(msg.body), msg.message_sid)
        return None
    twilio_replied = msg.opt_out_type in TWILIO_OPT_OUT_TYPES
    kind = TWILIO_OPT_OUT_TYPES[msg.opt_out_type] if twilio_replied else keyword(msg.body)
    if kind == "empty":
        return None
    if not svc.redis.set(keys.sms_inbound(msg.message_sid), "1", nx=True,
                         ex=keys.SMS_INBOUND_TTL):
        log.info("inbound sms already handled message_sid=%s", msg.message_sid)
        return None
    found, _ = customer.get(svc, msg.phone)
    lang = found.language if found else svc.flows.default_language
    log.info("inbound sms message_sid=%s from=%s kind=%s", msg.message_sid, mask(msg.phone),
             kind)
    reply: str | None
    if kind == "opt_out":
        changed = optout.opt_out(svc, msg.phone, "sms-keyword")
        reply = svc.prompts.render("sms_optout_confirm", lang, keep_lines=True) \
            if changed else None
    elif kind == "opt_in":  # the number texted us: it takes messages, whatever was marked
        changed = optout.opt_in(svc, msg.phone, "sms-keyword")
        changed = undeliverable.clear(svc, msg.phone, "sms-keyword") or changed
        reply = svc.prompts.render("sms_optin_confirm", lang, keep_lines=True) \
            if changed else None
    elif kind == "status":
        reply = status_reply(svc, msg.phone, found, lang)
    else:
        reply = svc.prompts.render("sms_help_reply", lang, keep_lines=True,
                                   support_number=_readable(msg.to, lang))
    return None if twilio_replied else reply


def _readable(phone: str | None, lang: str) -> str:
    """A number as a customer dials it: 050-1234-5678 at home, +81 50-1234-5678 abroad."""
    if not phone:
        return ""
    number = phonenumbers.parse(phone, None)
    style = phonenumbers.PhoneNumberFormat.NATIONAL if lang == "ja" \
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, style)


def concerning(svc: Services, phone: str, found: Customer | None) -> list[dict[str, Any]]:
    """Active incidents announced to this number (affected, or audience `all`), most severe
    and then oldest first, as every caller hears them."""
    active, listed = svc.script("concerning")(
        keys=[keys.incidents_active()], args=[phone, keys.incident_numbers("*")])
    docs = [json.loads(raw) for raw in active[1::2]]
    docs = [doc for doc in docs if incident.applies(doc, doc["id"] in listed, found)[0]]
    return sorted(docs, key=lambda d: (incident.SEVERITIES.index(d["severity"]),
                                       d.get("created_at") or "", d["id"]))


def status_reply(svc: Services, phone: str, found: Customer | None, lang: str) -> str:
    """The 状況 reply: each concerning incident's latest word, ETA and next update, within
    REPLY_MAX_SEGMENTS (the longest text is cut first)."""
    items = []
    for doc in concerning(svc, phone, found):
        _, announcement = incident.announcement_for(doc, lang)
        items.append({
            "title": doc.get("title") or doc["id"],
            "latest": incident.latest_status(doc, lang),
            "announcement": announcement or "",
            "status_code": doc.get("status"),
            "eta": svc.local(doc.get("eta")),
            "next_update": svc.local(doc.get("next_update_at")),
        })

    def render() -> str:
        return svc.prompts.render("sms_status_reply", lang, keep_lines=True, incidents=items,
                                  today=svc.now().astimezone(svc.tz).date())

    text = render()
    for _ in range(2 * len(items)):
        if segments(text).count <= REPLY_MAX_SEGMENTS:
            return text
        texts = [(f, i) for i in items for f in ("latest", "announcement") if i[f]]
        if not texts:
            break
        field, item = max(texts, key=lambda pair: len(pair[1][pair[0]]))
        excess = len(text) - len(truncate(text, REPLY_MAX_SEGMENTS)) + 1
        keep = max(len(item[field]) - excess, 0)
        item[field] = item[field][:keep] + "…" if keep else ""
        text = render()
    return truncate(text, REPLY_MAX_SEGMENTS)
