"""The caller's script (ivr/lua/incoming.lua) decides in Lua who an incident applies to; the SMS
status reply (ivr.inbound) decides it in Python (incident.applies). Both must agree for every
kind of scope, audience and caller, or a caller would hear one thing and read another."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from ivr import call as calls
from ivr import incident, keys
from ivr.customer import Customer
from tests.factories import add_customer, declare, new_sid, put_active

KNOWN = "+819011110001"
BARE = "+819011110002"  # a customer with no services and no region
STRANGER = "+819011110003"  # not a customer
SCOPES = [{"numbers": [KNOWN]}, {"numbers": [STRANGER]}, {"services": ["mail"]},
          {"services": ["tv", "mail"]}, {"services": ["tv"]}, {"regions": ["kanto"]},
          {"regions": ["kansai"]}, {"services": ["tv"], "regions": ["kanto"]}, {}]
CALLERS = [KNOWN, BARE, STRANGER, None]


def form(phone: str | None) -> dict[str, str]:
    return {"CallSid": new_sid(), "From": phone or "anonymous", "To": "+815012345678"}


@pytest.fixture
def base(admin: Any, svc: Any) -> dict[str, Any]:
    add_customer(svc, KNOWN, services=["mail"], region="kanto", tier="vip")
    add_customer(svc, BARE, services=[], region="", language="en")
    return declare(admin)


@pytest.mark.parametrize(("scope", "audience"),
                         list(itertools.product(SCOPES, ("affected", "all"))))
def test_lua_and_python_agree_on_who_is_affected(svc, base, scope, audience):
    doc = {**base, "scope": scope, "audience": audience}
    svc.redis.delete(keys.incidents_active())
    put_active(svc, doc)
    for phone in CALLERS:
        info = calls.CallInfo.parse(form(phone))
        customer = Customer.from_hash(svc.redis.hgetall(keys.customer(phone))) if phone else None
        listed = bool(svc.redis.sismember(keys.incident_numbers(doc["id"]), info.phone or ""))
        announce, affected = incident.applies(doc, listed, customer)
        greeting = calls.answer_incoming(svc, info)
        assert [a.incident_id for a in greeting.announcements] == ([doc["id"]] if announce
                                                                   else []), (phone, scope)
        assert ("affected" in greeting.tags) == affected, (phone, scope, audience)
        assert (f"incident:{doc['id']}" in greeting.tags) == affected
        assert ("vip" in greeting.tags) == (phone == KNOWN)
        assert greeting.lang == (customer.language if customer else "ja")
        record = svc.redis.hgetall(keys.call(info.call_sid))
        assert record["band"] == ("1" if affected or phone == KNOWN else "2")
        assert json.loads(record["incidents"]) == ([doc["id"]] if announce else [])


def test_incidents_are_announced_by_severity_then_age_then_id(svc, base):
    docs = [{**base, "id": "INC-9", "severity": "minor", "created_at": "2026-11-23T00:00:00Z"},
            {**base, "id": "INC-3", "severity": "major", "created_at": "2026-11-23T00:10:00Z"},
            {**base, "id": "INC-2", "severity": "major", "created_at": "2026-11-23T00:10:00Z"},
            {**base, "id": "INC-7", "severity": "critical",
             "created_at": "2026-11-23T00:30:00Z"}]
    svc.redis.delete(keys.incidents_active())
    for doc in docs:
        put_active(svc, {**doc, "audience": "all"})
    greeting = calls.answer_incoming(svc, calls.CallInfo.parse(form(KNOWN)))
    assert [a.incident_id for a in greeting.announcements] == ["INC-7", "INC-2", "INC-3",
                                                               "INC-9"]


def test_a_retried_webhook_gets_the_first_answer_even_after_the_incident_changed(svc, base):
    info = calls.CallInfo.parse(form(KNOWN))
    first = calls.answer_incoming(svc, info)
    doc = {**base, "scope": {"services": ["tv"]}}
    put_active(svc, doc)
    again = calls.answer_incoming(svc, info)
    assert first.created and not again.created
    assert again.tags == first.tags and "affected" in again.tags
    counters = svc.redis.hgetall(keys.incident_counters(base["id"]))
    assert counters["calls"] == "1" and counters["affected_calls"] == "1"


def test_a_retry_after_the_incident_was_resolved_keeps_the_tags_but_announces_nothing(
        svc, base):
    info = calls.CallInfo.parse(form(KNOWN))
    first = calls.answer_incoming(svc, info)
    svc.redis.hdel(keys.incidents_active(), base["id"])
    again = calls.answer_incoming(svc, info)
    assert [a.incident_id for a in first.announcements] == [base["id"]]
    assert again.announcements == () and again.tags == first.tags


def number_scoped(admin: Any, svc: Any, numbers: list[str]) -> dict[str, Any]:
    return declare(admin, scope={"numbers": numbers}, notify=False)


def affected(svc: Any, phone: str) -> bool:
    return "affected" in calls.answer_incoming(svc, calls.CallInfo.parse(form(phone))).tags


def test_a_number_added_or_removed_by_patch_is_matched_from_then_on(admin, svc):
    doc = number_scoped(admin, svc, [STRANGER])
    assert not affected(svc, BARE)
    admin.patch(f"/api/incidents/{doc['id']}", json={"scope": {"numbers": [STRANGER, BARE]}})
    assert affected(svc, BARE) and affected(svc, STRANGER)
    admin.patch(f"/api/incidents/{doc['id']}", json={"scope": {"numbers": []}})
    assert not affected(svc, BARE) and not affected(svc, STRANGER)
    active = json.loads(svc.redis.hget(keys.incidents_active(), doc["id"]))
    assert active["scope"]["number_count"] == 0
    assert not svc.redis.exists(keys.incident_numbers(doc["id"]))


def old_style_copy(svc: Any, doc: dict[str, Any]) -> None:
    """The active copy as versions before the number sets wrote it: the numbers inline."""
    svc.redis.hset(keys.incidents_active(), doc["id"], json.dumps(doc, ensure_ascii=False))
    svc.redis.delete(keys.incident_numbers(doc["id"]))


def test_a_copy_with_its_numbers_inline_is_upgraded_when_the_app_starts(admin, svc, config):
    from ivr import create_app

    doc = number_scoped(admin, svc, [STRANGER])
    old_style_copy(svc, doc)
    assert not affected(svc, STRANGER)  # what callers got until the upgrade

    create_app(config, services=svc)

    assert affected(svc, STRANGER)
    assert incident.upgrade_active(svc) == 0  # once is enough


def test_a_copy_with_its_numbers_inline_gets_its_set_at_the_next_change(admin, svc):
    doc = number_scoped(admin, svc, [STRANGER])
    old_style_copy(svc, doc)
    admin.patch(f"/api/incidents/{doc['id']}", json={"eta": "2026-11-23T06:30:00Z"})
    assert affected(svc, STRANGER)


def test_keys_no_version_reads_are_removed_when_the_app_starts(svc, config):
    from ivr import create_app

    svc.redis.hset(keys.RETIRED[0], mapping={"affected": "3", "vip": "1"})

    create_app(config, services=svc)

    assert not svc.redis.exists(*keys.RETIRED)


def test_undeliverable_numbers_of_earlier_versions_expire_after_the_upgrade(svc, config):
    """The set earlier versions kept had no expiry: each number becomes a mark that does."""
    from ivr import create_app

    svc.redis.sadd(keys.RETIRED_UNDELIVERABLE, KNOWN, BARE)

    create_app(config, services=svc)

    assert not svc.redis.exists(keys.RETIRED_UNDELIVERABLE)
    for phone in (KNOWN, BARE):
        assert 29 * 86400 < svc.redis.ttl(keys.sms_undeliverable(phone)) <= 30 * 86400
