"""Supervisors: the on-call roster and the escalation ladder that picks who is called.

The roster is one Redis hash (keys.supervisor_roster(): E.164 phone -> JSON), so replacing
the whole roster is a single MULTI (DEL + HSET) that leaves nobody from the old list behind,
and the escalation path reads everyone with one HGETALL. Records are checked here (with the
ivr.validate helpers, each error naming its field, "[2].level" style inside a list) before
anything is written.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC
from typing import Any, cast

import redis

from ivr import keys, validate
from ivr.errors import StorageConflict, invalid
from ivr.lang import LANGS
from ivr.phone import mask, normalize
from ivr.services import Services

log = logging.getLogger(__name__)

SKILLS = ("general", "billing", "technical")
LEVELS = (2, 3)
FIELDS = ("phone", "name", "skills", "level", "on_call", "order", "lang")
"""What a sender may give; `updated_at` is set on write, never accepted."""
MAX_ROSTER = 500
MAX_ORDER = 9999
MAX_NAME = 100
MAX_PHONE_INPUT = 64
WATCH_ATTEMPTS = 5


class RosterFull(Exception):
    """An upsert of a new supervisor into a roster that already has MAX_ROSTER."""


class ConflictError(StorageConflict):
    """Other writers kept changing the roster; nothing was written."""


@dataclass(frozen=True)
class Supervisor:
    """One supervisor (or senior operator) who can take an escalated call."""

    phone: str
    name: str
    skills: tuple[str, ...]
    level: int
    on_call: bool
    order: int
    lang: str = "ja"
    updated_at: str = ""
    updated_by: str = ""

    def ring_key(self) -> tuple[int, str, str]:
        """Lower `order` rings first; the name (then the number) breaks ties."""
        return (self.order, self.name, self.phone)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["skills"] = list(self.skills)
        return data

    def dumps(self) -> str:
        """The stored form: one field of the roster hash."""
        data = self.to_json()
        del data["phone"]  # the hash field already is the phone
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, phone: str, raw: str) -> Supervisor:
        data = json.loads(raw)
        return cls(
            phone=phone,
            name=str(data["name"]),
            skills=tuple(data["skills"]),
            level=int(data["level"]),
            on_call=bool(data["on_call"]),
            order=int(data["order"]),
            lang=str(data.get("lang", "ja")),
            updated_at=str(data.get("updated_at", "")),
            updated_by=str(data.get("updated_by", "")),
        )


# --- checking input -----------------------------------------------------------------------


def _phone(record: Mapping[str, Any], field: str) -> str:
    if record.get("phone") is not None and not isinstance(record["phone"], str):
        raise invalid(field, f"{field} must be a string (a number loses its leading 0)")
    text = validate.text(record, "phone", max_len=MAX_PHONE_INPUT, field=field)
    e164 = normalize(text)
    if e164 is None:
        raise invalid(field, f"{field} is not a valid phone number")
    return e164


def _name(record: Mapping[str, Any], field: str) -> str:
    text = validate.text(record, "name", max_len=MAX_NAME, field=field)
    assert text is not None
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise invalid(field, f"{field} must not contain control characters")
    return text


def _skills(record: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = record.get("skills")
    if value is None:
        raise invalid(field, f"{field} is required")
    given = validate.string_list(value, field, max_items=len(SKILLS) * 2, max_len=32)
    for i, skill in enumerate(given):
        if skill not in SKILLS:
            raise invalid(f"{field}[{i}]", f"{field}[{i}] must be one of {', '.join(SKILLS)}")
    if not given:
        raise invalid(field, f"{field} must name at least one of {', '.join(SKILLS)}")
    return tuple(s for s in SKILLS if s in given)  # one canonical order


def _whole_number(
    record: Mapping[str, Any], name: str, field: str, low: int, high: int, allowed: str
) -> int:
    value = record.get(name)
    if value is None:
        raise invalid(field, f"{field} is required")
    # bool is an int in Python and 2.0 == 2; neither is a level or an order.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(field, f"{field} must be {allowed}")
    return value


def _on_call(record: Mapping[str, Any], field: str) -> bool:
    if record.get("on_call") is None:
        raise invalid(field, f"{field} is required")
    return validate.boolean(record, "on_call", False, field=field)


def check(record: Any, prefix: str = "") -> Supervisor:
    """One JSON supervisor object, checked; the error names the first bad field.

    `prefix` locates the record inside a list ("[2]." gives "[2].level"). Every field but
    `lang` (default "ja") is required: a half-described supervisor could be rung at 3 a.m.
    """
    if not isinstance(record, dict):
        where = prefix.rstrip(".") or "body"
        raise invalid(where, f"{where} must be a JSON object (a supervisor)")
    validate.only_fields(record, FIELDS, prefix=prefix)
    level = _whole_number(
        record,
        "level",
        prefix + "level",
        min(LEVELS),
        max(LEVELS),
        "2 (senior operator) or 3 (supervisor)",
    )
    return Supervisor(
        phone=_phone(record, prefix + "phone"),
        name=_name(record, prefix + "name"),
        skills=_skills(record, prefix + "skills"),
        level=level,
        on_call=_on_call(record, prefix + "on_call"),
        order=_whole_number(
            record,
            "order",
            prefix + "order",
            0,
            MAX_ORDER,
            f"a whole number from 0 to {MAX_ORDER} (lower rings first)",
        ),
        lang=validate.choice(record, "lang", LANGS, required=False, field=prefix + "lang")
        or "ja",
    )


def check_roster(records: Sequence[Any]) -> list[Supervisor]:
    """A JSON list meant as the whole roster; a number given twice is refused at `[i].phone`."""
    if len(records) > MAX_ROSTER:
        raise invalid("body", f"a roster holds at most {MAX_ROSTER} supervisors")
    seen: dict[str, int] = {}
    sups: list[Supervisor] = []
    for i, record in enumerate(records):
        sup = check(record, prefix=f"[{i}].")
        if sup.phone in seen:
            raise invalid(
                f"[{i}].phone", f"[{i}].phone is the same number as [{seen[sup.phone]}].phone"
            )
        seen[sup.phone] = i
        sups.append(sup)
    return sups


# --- reading ------------------------------------------------------------------------------


def decode(data: Mapping[str, str]) -> list[Supervisor]:
    """The roster hash as supervisors in ring order; an unreadable entry is skipped, logged."""
    sups: list[Supervisor] = []
    for phone, raw in data.items():
        try:
            sups.append(Supervisor.loads(phone, raw))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable supervisor entry skipped phone=%s", mask(phone))
    return sorted(sups, key=Supervisor.ring_key)


def roster(svc: Services) -> list[Supervisor]:
    """Every supervisor, on call or not, in ring order: (order, name)."""
    data = cast("dict[str, str]", svc.redis.hgetall(keys.supervisor_roster()))  # decoded client
    return decode(data)


def get(svc: Services, phone: str) -> Supervisor | None:
    """One supervisor by E.164 number, or None."""
    raw = cast("str | None", svc.redis.hget(keys.supervisor_roster(), phone))
    if raw is None:
        return None
    found = decode({phone: raw})
    return found[0] if found else None


def ladder_steps(svc: Services, reason: str) -> list[dict[str, Any]]:
    """The steps of flows/escalation.yaml for a reason; ValueError when there is none."""
    ladder: Mapping[str, Any] = svc.flows.escalation["ladder"]
    if reason not in ladder:
        raise ValueError(f"unknown escalation reason {reason!r}; one of {', '.join(ladder)}")
    return list(ladder[reason])


def candidates(svc: Services, reason: str, everyone: list[Supervisor] | None = None
               ) -> list[Supervisor]:
    """Who is rung for `reason`, in order: per ladder step, the on-call supervisors with that
    skill and level by ring order; someone matching several steps is rung once, at the first.
    `everyone`: the roster when the caller has already read it (else it is read here).
    """
    steps = ladder_steps(svc, reason)
    everyone = roster(svc) if everyone is None else everyone
    seen: set[str] = set()
    picked: list[Supervisor] = []
    for step in steps:
        for sup in everyone:
            if (
                sup.on_call
                and sup.level == step["level"]
                and step["skill"] in sup.skills
                and sup.phone not in seen
            ):
                seen.add(sup.phone)
                picked.append(sup)
    return picked


# --- writing ------------------------------------------------------------------------------


def _stamped(svc: Services, sup: Supervisor, by: str) -> Supervisor:
    return replace(sup, updated_at=svc.now().astimezone(UTC).isoformat(), updated_by=by)


def replace_roster(svc: Services, sups: Sequence[Supervisor], *, by: str = ""
                   ) -> list[Supervisor]:
    """Make `sups` the whole roster in one MULTI: everyone not in it is gone, atomically.

    An empty list empties the roster (then every escalation goes to the priority queue).
    Returns the stored roster in ring order.
    """
    phones = [s.phone for s in sups]
    if len(set(phones)) != len(phones):
        raise ValueError("the same phone number appears twice in the roster")
    if len(sups) > MAX_ROSTER:
        raise ValueError(f"a roster holds at most {MAX_ROSTER} supervisors")
    stamped = [_stamped(svc, s, by) for s in sups]
    key = keys.supervisor_roster()
    with svc.redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if stamped:
            pipe.hset(key, mapping={s.phone: s.dumps() for s in stamped})
        pipe.execute()
    log.info("supervisor roster replaced count=%d by=%s", len(stamped), by)
    return sorted(stamped, key=Supervisor.ring_key)


def upsert(svc: Services, sup: Supervisor, *, by: str = "") -> list[Supervisor]:
    """Add or replace one supervisor (by phone); return the resulting roster in ring order.

    A new number is refused with RosterFull once the roster holds MAX_ROSTER. The size check
    and the write are one WATCH/MULTI, and the answer is read inside the same MULTI, so it is
    exactly the roster this write produced.
    """
    stamped = _stamped(svc, sup, by)
    key = keys.supervisor_roster()
    with svc.redis.pipeline(transaction=True) as pipe:
        for _ in range(WATCH_ATTEMPTS):
            try:
                pipe.watch(key)
                if not pipe.hexists(key, sup.phone) and pipe.hlen(key) >= MAX_ROSTER:
                    raise RosterFull(f"the roster already holds {MAX_ROSTER} supervisors")
                pipe.multi()
                pipe.hset(key, sup.phone, stamped.dumps())
                pipe.hgetall(key)
                _, data = pipe.execute()
                log.info("supervisor upserted phone=%s", mask(sup.phone))
                return decode(data)
            except redis.WatchError:
                continue
    raise ConflictError(f"the roster kept changing during {WATCH_ATTEMPTS} attempts")
