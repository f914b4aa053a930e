"""Test data every package of tests builds: incidents, customers, rosters, Twilio ids,
and small readers of parsed TwiML. One place, so a new test file imports from here rather
than from another package's tests."""

from __future__ import annotations

import itertools
from typing import Any

from ivr import keys

_call_sids = itertools.count(1)
_message_sids = itertools.count(1)


def new_sid() -> str:
    """A fresh Twilio call SID (CA + 32 hex), unique in the session."""
    return f"CA{next(_call_sids):032x}"


def new_message_sid() -> str:
    """A fresh Twilio message SID (SM + 32 hex), unique in the session."""
    return f"SM{next(_message_sids):032x}"


def declare(admin: Any, **fields: Any) -> dict[str, Any]:
    body = {
        "title": "メール障害",
        "severity": "major",
        "scope": {"services": ["mail"]},
        "audience": "affected",
        "announcement": {"ja": "現在、メールサービスがご利用いただけない状況です。",
                         "en": "Our mail service is currently unavailable."},
    }
    body.update(fields)
    response = admin.post("/api/incidents", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def add_customer(svc: Any, phone: str, **fields: Any) -> None:
    from ivr.customer import Customer

    data = {"phone": phone, "name": "山田太郎", "services": ["mail"], "region": "kanto",
            "language": "ja", "tier": "standard", "mobile": True}
    data.update(fields)
    svc.redis.hset(keys.customer(phone), mapping=Customer(**data).to_hash())


def put_active(svc: Any, doc: dict[str, Any]) -> None:
    """Make `doc` an active incident as the API does (incident.store_active)."""
    from ivr import incident

    pipe = svc.redis.pipeline(transaction=True)
    incident.store_active(pipe, doc, numbers_changed=True)
    pipe.execute()


def put_roster(admin: Any, *people: tuple[str, str, str, int]) -> None:
    """Put the on-call roster, (name, phone, skill, level) each, rung in this order."""
    response = admin.put("/api/supervisors", json=[
        {"name": name, "phone": phone, "skills": [skill], "level": level, "on_call": True,
         "order": order} for order, (name, phone, skill, level) in enumerate(people, 1)])
    assert response.status_code == 200, response.get_json()


def says(root: Any) -> list[str]:
    return [el.text or "" for el in root.iter("Say")]


def verbs(root: Any) -> list[str]:
    return [child.tag for child in root]


def ring(twilio_post: Any, sid: str, phone: str) -> Any:
    """Twilio's /voice/incoming for one call; the parsed TwiML answer."""
    from tests.conftest import parse_twiml

    return parse_twiml(twilio_post("/voice/incoming", CallSid=sid, From=phone,
                                   To="+815012345678"))


def repeat_caller(twilio_post: Any, clock: Any, phone: str) -> str:
    """The third call within the window, ten minutes apart: escalated by the repeat trigger
    on arrival (flows/escalation.yaml threshold 3). Returns that call's sid."""
    for _ in range(2):
        ring(twilio_post, new_sid(), phone)
        clock.tick(600)
    sid = new_sid()
    ring(twilio_post, sid, phone)
    return sid
