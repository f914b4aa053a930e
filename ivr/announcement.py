"""The announcements a caller was told about, read again for the menu's "more" key.

/voice/incoming plays the most severe few in full (flows/call.yaml `announcements`); the
rest are counted, and the key plays them a few at a time, in the order the call was
greeted with (most severe first), from the incidents still active.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from ivr import call, keys
from ivr.services import Services


@dataclass(frozen=True)
class Heard:
    lang: str
    announcements: tuple[call.Announcement, ...]


def for_call(svc: Services, call_sid: str) -> Heard | None:
    """The call's language and the announcements of its incidents that are still active,
    most severe first; None when the call has no record."""
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hmget(keys.call(call_sid), "lang", "incidents")
    pipe.hgetall(keys.incidents_active())
    (lang, ids), active = cast("tuple[list[str | None], dict[str, str]]", pipe.execute())
    if lang is None:
        return None
    docs = (json.loads(active[i]) for i in json.loads(ids or "[]") if i in active)
    return Heard(lang, tuple(call.announcement_of(doc, lang) for doc in docs))
