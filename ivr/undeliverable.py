"""Numbers Twilio or the carrier refused for good: every fan-out skips them, for a while.

21211, 21614, 21635 (not a valid or not an SMS-capable number) and 30004-30006 (blocked,
unknown, a landline) would fail the same way for every update, so the number is marked and
skipped. A mark is not for ever: it expires after `undeliverable_days` (flows/sms.yaml),
since numbers are ported and reassigned, and it goes at once when the number shows it can
take messages again: the customer is upserted or re-imported (ops corrected the record, or
confirm it), or the number texts START. The admin API shows it on the customer
(`sms_undeliverable`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import cast

import redis

from ivr import keys
from ivr.phone import mask
from ivr.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mark:
    error_code: int
    """What marked it (0: marked by a version that did not keep the code)."""
    until: str
    """When the mark expires, ISO UTC."""

    def to_json(self) -> dict[str, object]:
        return {"error_code": self.error_code, "until": self.until}


def ttl(svc: Services) -> int:
    """How long a mark lasts, seconds."""
    return int(svc.flows.sms["undeliverable_days"]) * 86400


def mark(svc: Services, phone: str, code: int) -> bool:
    """Skip `phone` in every fan-out for `undeliverable_days`; True when it was not marked.
    A refusal again starts the period anew."""
    until = svc.now().astimezone(UTC) + timedelta(seconds=ttl(svc))
    value = json.dumps({"error_code": code, "until": until.isoformat().replace("+00:00", "Z")})
    before = svc.redis.set(keys.sms_undeliverable(phone), value, ex=ttl(svc), get=True)
    log.info("sms number marked undeliverable code=%s to=%s", code, mask(phone))
    return before is None


def get(svc: Services, phone: str) -> Mark | None:
    """The mark on `phone`, or None."""
    raw = cast("str | None", svc.redis.get(keys.sms_undeliverable(phone)))
    if raw is None:
        return None
    data = json.loads(raw)
    return Mark(int(data["error_code"]), str(data["until"]))


def clear(svc: Services, phone: str, source: str) -> bool:
    """Take the mark off `phone`; True when it had one.

    Args:
        source: what showed the number takes messages, for the log: "sms-keyword", …
    """
    cleared = bool(svc.redis.delete(keys.sms_undeliverable(phone)))
    if cleared:
        log.info("sms number undeliverable mark cleared source=%s to=%s", source, mask(phone))
    return cleared


def clear_in(pipe: redis.client.Pipeline, phone: str) -> None:
    """Queue the mark's removal in a caller's MULTI (a customer upsert)."""
    pipe.delete(keys.sms_undeliverable(phone))


def upgrade(svc: Services) -> int:
    """Turn the set earlier versions kept (`keys.RETIRED`, no expiry) into marks with the
    full period from now; return how many. Runs when the app starts, before RETIRED goes."""
    old = keys.RETIRED_UNDELIVERABLE
    if svc.redis.type(old) != "set":
        return 0
    phones = cast("set[str]", svc.redis.smembers(old))
    for phone in phones:
        mark(svc, phone, 0)  # the code was not kept
    svc.redis.delete(old)
    return len(phones)
