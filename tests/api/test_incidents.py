"""/api/incidents: declare, list, show, edit, progress updates, resolve; input checks; auth."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from ivr import incident, keys, person
from tests.conftest import ADMIN_TOKEN

NOW = "2026-11-23T01:00:00Z"  # the clock fixture's start: 10:00 in Tokyo


def body(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "メール障害",
        "severity": "major",
        "scope": {"services": ["mail"], "regions": [], "numbers": []},
        "announcement": {
            "ja": "現在、メールサービスがご利用いただけない状況です。",
            "en": "Our mail service is currently unavailable.",
        },
        "eta": None,
        "notify": True,
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not ...}


def declare(admin: Any, **fields: Any) -> dict[str, Any]:
    response = admin.post("/api/incidents", json=body(**fields))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def stored(redis: Any, incident_id: str) -> dict[str, Any]:
    return json.loads(redis.get(keys.incident(incident_id)))


def active(redis: Any, incident_id: str) -> dict[str, Any] | None:
    """The copy callers hear, with its number set put back in scope (store_active keeps the
    numbers apart), so it compares with the stored document."""
    raw = redis.hget(keys.incidents_active(), incident_id)
    if raw is None:
        return None
    doc = json.loads(raw)
    numbers = sorted(redis.smembers(keys.incident_numbers(incident_id)))
    assert doc["scope"].pop("number_count") == len(numbers)
    assert "numbers" not in doc["scope"]
    return {**doc, "scope": {**doc["scope"], "numbers": numbers}}


def incident_keys(redis: Any) -> list[str]:
    """Every incident key."""
    return sorted(redis.keys("{ivr}:incident:*") + redis.keys("{ivr}:incidents:*"))


def assert_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert error["field"] == field, error
    return error


def everything_in(raw: Any) -> list[str]:
    """Every key and every value of every key, as strings, for leak checks. `raw` is an
    undecoded client (svc.rq_redis): RQ's job payloads are not UTF-8."""
    items: list[bytes] = []
    for key in raw.scan_iter(count=1000):
        items.append(key)
        kind = raw.type(key).decode()
        if kind == "string":
            items.append(raw.get(key))
        elif kind == "hash":
            for field, value in raw.hgetall(key).items():
                items += [field, value]
        elif kind == "list":
            items += raw.lrange(key, 0, -1)
        elif kind == "set":
            items += list(raw.smembers(key))
        elif kind == "zset":
            items += [member for member, _ in raw.zrange(key, 0, -1, withscores=True)]
        else:
            raise AssertionError(f"unexpected Redis type {kind} for {key!r}")
    return [item.decode("utf-8", "replace") for item in items]


# --- declare -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "next_update"),
    [
        ("critical", "2026-11-23T01:30:00Z"),
        ("major", "2026-11-23T02:00:00Z"),
        ("minor", "2026-11-23T03:00:00Z"),
    ],
)
def test_declare_answers_201_with_id_and_next_update_from_the_cadence(
    admin, redis, clock, severity, next_update
):
    response = admin.post("/api/incidents", json=body(severity=severity))

    assert response.status_code == 201
    doc = response.get_json()
    assert re.fullmatch(r"INC-20261123-1000-[0-9A-HJKMNP-TV-Z]{4}", doc["id"])
    assert doc["severity"] == severity
    assert doc["status"] == "investigating"
    assert doc["created_at"] == NOW
    assert doc["next_update_at"] == next_update
    assert doc["resolved_at"] is None
    assert doc["declared_by"] == "bootstrap"
    assert stored(redis, doc["id"])["next_update_at"] == next_update
    assert active(redis, doc["id"])["next_update_at"] == next_update


def test_ids_carry_the_tokyo_date_and_minute(admin, clock):
    first = declare(admin)
    clock.move_to("2026-11-23T15:30:00Z")  # 00:30 on the 24th in Tokyo, still the 23rd in UTC
    second = declare(admin)

    assert re.fullmatch(r"INC-20261123-1000-[0-9A-HJKMNP-TV-Z]{4}", first["id"])
    assert re.fullmatch(r"INC-20261124-0030-[0-9A-HJKMNP-TV-Z]{4}", second["id"])


def test_ids_are_never_reused_even_after_redis_loses_its_data(admin, redis, clock):
    """A counter in Redis falls back with lost data, while RQ's job ids, SMS claims, logs and
    reports still carry the lost incident's id: ids must not come from what Redis holds."""
    seen = set()
    for _ in range(20):
        seen.add(declare(admin)["id"])
        redis.flushdb()  # kill -9 of a Redis without an append-only file
    assert len(seen) == 20  # all in the same minute


def test_a_drawn_id_already_stored_is_drawn_again(admin, redis, clock, monkeypatch):
    draws = iter(["INC-20261123-1000-AAAA", "INC-20261123-1000-AAAA", "INC-20261123-1000-BBBB"])
    monkeypatch.setattr(incident, "new_id", lambda svc: next(draws))

    assert [declare(admin)["id"], declare(admin)["id"]] == [
        "INC-20261123-1000-AAAA", "INC-20261123-1000-BBBB"]


def test_earlier_counter_ids_still_name_their_incidents(admin, redis, clock):
    doc = declare(admin)
    old = "INC-20261123-0001"
    for key in (keys.incident, keys.incident_timeline, keys.incident_counters):
        redis.rename(key(doc["id"]), key(old))
    redis.set(keys.incident(old), redis.get(keys.incident(old)).replace(doc["id"], old))

    assert admin.get(f"/api/incidents/{old}").get_json()["id"] == old


def test_declare_stores_the_document_the_active_copy_and_the_first_timeline_entry(
    admin, redis, clock
):
    doc = declare(admin)

    incident_id = doc["id"]
    saved = stored(redis, incident_id)
    assert saved["title"] == "メール障害"
    assert saved["announcement"] == body()["announcement"]
    assert active(redis, incident_id) == saved
    assert (
        redis.zscore(keys.incidents_all(), incident_id)
        == datetime(2026, 11, 23, 1, tzinfo=UTC).timestamp()
    )
    assert doc["timeline"] == [
        {
            "seq": 0,
            "kind": "declared",
            "at": NOW,
            "by": "bootstrap",
            "status": "investigating",
            "message": body()["announcement"],
            "eta": None,
        }
    ]
    assert doc["counters"] == {
        "calls": 0,
        "affected_calls": 0,
        "escalations": 0,
        "sms_sent": 0,
        "sms_delivered": 0,
        "sms_failed": 0,
    }


def test_scope_numbers_are_normalised_to_e164(admin, redis, clock):
    doc = declare(admin, scope={"numbers": ["090-1234-5678", "+81 90 1234 5678", "03-1234-5678"]})

    assert doc["scope"] == {
        "services": [],
        "regions": [],
        "numbers": ["+81312345678", "+819012345678"],
    }
    assert active(redis, doc["id"])["scope"]["numbers"] == ["+81312345678", "+819012345678"]


def test_naive_eta_is_tokyo_time_stored_as_utc_z(admin, redis, clock):
    doc = declare(admin, eta="2026-11-23T15:30:00")

    assert doc["eta"] == "2026-11-23T06:30:00Z"
    assert active(redis, doc["id"])["eta"] == "2026-11-23T06:30:00Z"


def test_eta_with_an_offset_is_converted_to_utc(admin, clock):
    assert declare(admin, eta="2026-11-23T12:00:00+09:00")["eta"] == "2026-11-23T03:00:00Z"
    assert declare(admin, eta="2026-11-23T12:00:00Z")["eta"] == "2026-11-23T12:00:00Z"


@pytest.mark.parametrize(
    ("scope", "audience", "expected"),
    [
        ({"services": ["mail"]}, ..., "affected"),
        ({"regions": ["kanto"]}, ..., "affected"),
        ({"numbers": ["090-1234-5678"]}, ..., "affected"),
        ({"services": [], "regions": [], "numbers": []}, ..., "all"),
        (..., ..., "all"),
        ({"services": ["mail"]}, "all", "all"),
        ({}, "affected", "affected"),
    ],
)
def test_audience_defaults_to_affected_only_when_a_scope_is_given(
    admin, clock, scope, audience, expected
):
    assert declare(admin, scope=scope, audience=audience)["audience"] == expected


def test_notify_defaults_to_true_and_keeps_false(admin, clock):
    assert declare(admin, notify=...)["notify"] is True
    assert declare(admin, notify=False)["notify"] is False


# --- list and show ---------------------------------------------------------------------------


def test_list_active_excludes_resolved_incidents_and_all_includes_them(admin, clock):
    first = declare(admin)
    clock.tick(1)  # newest first: ids do not order incidents declared in the same instant
    second = declare(admin, severity="minor")
    resolved = admin.post(f"/api/incidents/{first['id']}/resolve", json={"message": "復旧しました"})
    assert resolved.status_code == 200

    active_list = admin.get("/api/incidents?status=active")
    everything = admin.get("/api/incidents")

    assert active_list.status_code == 200
    assert [i["id"] for i in active_list.get_json()["incidents"]] == [second["id"]]
    assert [i["id"] for i in everything.get_json()["incidents"]] == [second["id"], first["id"]]
    listed = {i["id"]: i for i in everything.get_json()["incidents"]}
    assert listed[first["id"]]["status"] == "resolved"
    assert listed[first["id"]]["timeline"][-1]["kind"] == "resolved"
    assert listed[second["id"]]["counters"]["calls"] == 0


def test_list_refuses_an_unknown_status_filter(admin, clock):
    assert_error(admin.get("/api/incidents?status=open"), 400, "status")


def test_show_returns_timeline_and_counters(admin, redis, clock):
    doc = declare(admin)
    incident_id = doc["id"]
    redis.hincrby(keys.incident_counters(incident_id), "calls", 7)
    redis.hincrby(keys.incident_counters(incident_id), "affected_calls", 5)
    redis.hincrby(keys.incident_counters(incident_id), "sms_failed", 2)
    clock.tick(300)
    update = admin.post(f"/api/incidents/{incident_id}/updates", json={"message": "原因を特定"})
    assert update.status_code == 201

    response = admin.get(f"/api/incidents/{incident_id}")

    assert response.status_code == 200
    shown = response.get_json()
    assert shown["id"] == incident_id
    assert shown["title"] == "メール障害"
    assert shown["counters"] == {
        "calls": 7,
        "affected_calls": 5,
        "escalations": 0,
        "sms_sent": 0,
        "sms_delivered": 0,
        "sms_failed": 2,
    }
    assert [(e["seq"], e["kind"]) for e in shown["timeline"]] == [(0, "declared"), (1, "update")]
    assert shown["timeline"][1]["message"] == {"ja": "原因を特定"}
    assert shown["timeline"][1]["at"] == "2026-11-23T01:05:00Z"


# --- PATCH ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("announcement", {"ja": "新しいお知らせです。"},
         {"ja": "新しいお知らせです。", "en": "Our mail service is currently unavailable."}),
        ("announcement", {"en": None},
         {"ja": "現在、メールサービスがご利用いただけない状況です。"}),
        ("announcement", {"ja": "日本語", "en": "English"}, {"ja": "日本語", "en": "English"}),
        ("eta", "2026-11-23T18:00:00", "2026-11-23T09:00:00Z"),
        ("eta", None, None),
        ("status", "identified", "identified"),
        ("status", "monitoring", "monitoring"),
        (
            "scope",
            {"numbers": ["090-1234-5678"], "regions": ["kanto"]},
            {"services": [], "regions": ["kanto"], "numbers": ["+819012345678"]},
        ),
        ("audience", "all", "all"),
    ],
)
def test_patch_changes_the_document_and_the_active_copy_the_voice_path_reads(
    admin, redis, clock, field, value, expected
):
    doc = declare(admin, eta="2026-11-23T15:00:00")
    assert stored(redis, doc["id"])[field] != expected
    clock.tick(60)

    response = admin.patch(f"/api/incidents/{doc['id']}", json={field: value})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()[field] == expected
    assert stored(redis, doc["id"])[field] == expected
    assert active(redis, doc["id"])[field] == expected
    assert active(redis, doc["id"]) == stored(redis, doc["id"])
    assert stored(redis, doc["id"])["updated_at"] == "2026-11-23T01:01:00Z"
    timeline = response.get_json()["timeline"]
    assert timeline[-1]["kind"] == "edited"
    assert timeline[-1]["fields"] == [field]


def test_patch_leaves_the_fields_it_does_not_name(admin, redis, clock):
    doc = declare(admin, severity="critical", eta="2026-11-23T15:00:00")
    admin.patch(f"/api/incidents/{doc['id']}", json={"status": "identified"})

    after = stored(redis, doc["id"])
    for name in ("title", "severity", "scope", "audience", "announcement", "eta", "next_update_at"):
        assert after[name] == doc[name], name


@pytest.mark.parametrize(
    ("declared_at", "declared", "patched_at", "severity", "next_update"),
    [
        # 10:00 minor (due 12:00) made critical at 10:10: 30 minutes from the declaration
        (NOW, "minor", "2026-11-23T01:10:00Z", "critical", "2026-11-23T01:30:00Z"),
        # 10:00 critical (due 10:30) made minor at 10:10: 120 minutes from the declaration
        (NOW, "critical", "2026-11-23T01:10:00Z", "minor", "2026-11-23T03:00:00Z"),
        # made critical 45 minutes after a minor declaration: overdue, so due at once
        (NOW, "minor", "2026-11-23T01:45:00Z", "critical", "2026-11-23T01:45:00Z"),
        # 20:00 critical made major at 20:10: 21:00 is quiet, so 08:00 the next morning
        ("2026-11-23T11:00:00Z", "critical", "2026-11-23T11:10:00Z", "major",
         "2026-11-23T23:00:00Z"),
        # 20:00 major (held to 08:00) made critical at 20:10: 20:30, never held
        ("2026-11-23T11:00:00Z", "major", "2026-11-23T11:10:00Z", "critical",
         "2026-11-23T11:30:00Z"),
    ],
)
def test_patching_the_severity_moves_the_next_update_to_its_cadence(
    admin, redis, svc, clock, declared_at, declared, patched_at, severity, next_update
):
    clock.move_to(declared_at)
    doc = declare(admin, severity=declared)
    clock.move_to(patched_at)

    response = admin.patch(f"/api/incidents/{doc['id']}", json={"severity": severity})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["next_update_at"] == next_update
    assert stored(redis, doc["id"])["next_update_at"] == next_update
    assert active(redis, doc["id"])["next_update_at"] == next_update
    due = int(datetime.fromisoformat(next_update).timestamp())
    assert f"due-{doc['id']}-{due}" in svc.sms_queue.scheduled_job_registry.get_job_ids()


def test_patching_the_severity_counts_the_cadence_from_the_latest_update(admin, redis, clock):
    doc = declare(admin, severity="minor")
    clock.tick(20 * 60)
    admin.post(f"/api/incidents/{doc['id']}/updates", json={"message": "原因を特定"})
    clock.tick(10 * 60)

    response = admin.patch(f"/api/incidents/{doc['id']}", json={"severity": "critical"})

    assert response.get_json()["next_update_at"] == "2026-11-23T01:50:00Z"


def test_patching_the_severity_counts_from_when_a_held_update_goes_out(admin, redis, clock):
    doc = declare(admin)  # major
    clock.move_to("2026-11-23T13:00:00Z")  # 22:00: the update is held to 08:00
    admin.post(f"/api/incidents/{doc['id']}/updates", json={"message": "原因を特定"})
    clock.tick(10 * 60)

    response = admin.patch(f"/api/incidents/{doc['id']}", json={"severity": "minor"})

    assert response.get_json()["next_update_at"] == "2026-11-24T01:00:00Z"  # 10:00


def test_made_critical_at_night_a_held_update_goes_out_now_and_the_clock_runs_from_now(
        admin, redis, svc, clock):
    doc = declare(admin, severity="minor")
    clock.move_to("2026-11-23T13:00:00Z")  # 22:00: the SV's update is held to 08:00
    seq = admin.post(f"/api/incidents/{doc['id']}/updates",
                     json={"message": "原因を調査中"}).get_json()["update"]["seq"]
    fan_out = f"fanout-{doc['id']}-{seq}"
    assert fan_out in svc.sms_queue.scheduled_job_registry.get_job_ids()
    clock.move_to("2026-11-23T14:00:00Z")  # 23:00: critical updates are never held

    response = admin.patch(f"/api/incidents/{doc['id']}", json={"severity": "critical"})

    assert response.get_json()["next_update_at"] == "2026-11-23T14:30:00Z"
    assert fan_out not in svc.sms_queue.scheduled_job_registry.get_job_ids()
    assert fan_out in svc.sms_queue.job_ids
    admin.patch(f"/api/incidents/{doc['id']}", json={"severity": "major"})
    admin.patch(f"/api/incidents/{doc['id']}", json={"severity": "critical"})
    assert svc.sms_queue.job_ids.count(fan_out) == 1  # released once


def test_patching_the_same_severity_keeps_the_next_update(admin, redis, clock):
    doc = declare(admin, severity="minor")
    clock.tick(10 * 60)

    response = admin.patch(f"/api/incidents/{doc['id']}", json={"severity": "minor"})

    assert response.get_json()["next_update_at"] == doc["next_update_at"]


def test_patch_to_resolved_is_refused_and_changes_nothing(admin, redis, clock):
    doc = declare(admin)
    before = stored(redis, doc["id"])

    assert_error(
        admin.patch(f"/api/incidents/{doc['id']}", json={"status": "resolved"}), 400, "status"
    )
    assert stored(redis, doc["id"]) == before
    assert active(redis, doc["id"]) == before


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"status": "fixed"}, "status"),
        ({"audience": "some"}, "audience"),
        ({"eta": "tomorrow"}, "eta"),
        ({"announcement": {}}, "announcement"),
        ({"announcement": {"ja": None, "en": None}}, "announcement"),
        ({"announcement": {"de": "Hallo"}}, "announcement.de"),
        ({"scope": {"numbers": ["12"]}}, "scope.numbers[0]"),
        ({"next_update_at": None}, "next_update_at"),
    ],
)
def test_patch_refuses_bad_input_naming_the_field_and_changes_nothing(
    admin, redis, clock, patch, field
):
    doc = declare(admin)
    before = {k: redis.dump(k) for k in incident_keys(redis)}

    assert_error(admin.patch(f"/api/incidents/{doc['id']}", json=patch), 400, field)
    assert {k: redis.dump(k) for k in incident_keys(redis)} == before


def test_empty_patch_is_refused(admin, clock):
    doc = declare(admin)
    assert_error(admin.patch(f"/api/incidents/{doc['id']}", json={}), 400)


# --- progress updates ---------------------------------------------------------------------


def test_update_restarts_the_clock_from_the_update_time_and_appends_to_the_timeline(
    admin, redis, clock
):
    doc = declare(admin, severity="critical")
    assert doc["next_update_at"] == "2026-11-23T01:30:00Z"
    clock.tick(20 * 60)

    response = admin.post(
        f"/api/incidents/{doc['id']}/updates",
        json={
            "message": {"ja": "原因を特定しました。", "en": "Found it."},
            "status": "identified",
            "eta": "2026-11-23T12:00:00",
        },
    )

    assert response.status_code == 201, response.get_json()
    update = response.get_json()["update"]
    assert update["seq"] == 1
    assert update["at"] == "2026-11-23T01:20:00Z"
    assert update["next_update_at"] == "2026-11-23T01:50:00Z"
    assert update["status"] == "identified"
    assert update["eta"] == "2026-11-23T03:00:00Z"
    incident = response.get_json()["incident"]
    assert incident["next_update_at"] == "2026-11-23T01:50:00Z"
    assert incident["status"] == "identified"
    assert incident["eta"] == "2026-11-23T03:00:00Z"
    assert incident["update_seq"] == 1
    for copy in (stored(redis, doc["id"]), active(redis, doc["id"])):
        assert copy["next_update_at"] == "2026-11-23T01:50:00Z"
        assert copy["latest_update"] == {"ja": "原因を特定しました。", "en": "Found it."}
        assert copy["status"] == "identified"

    clock.tick(10 * 60)
    second = admin.post(f"/api/incidents/{doc['id']}/updates", json={"message": "続報です"})

    assert second.status_code == 201
    assert second.get_json()["update"]["seq"] == 2
    assert second.get_json()["incident"]["next_update_at"] == "2026-11-23T02:00:00Z"
    assert second.get_json()["incident"]["status"] == "identified"
    timeline = [json.loads(e) for e in redis.lrange(keys.incident_timeline(doc["id"]), 0, -1)]
    assert [(e["seq"], e["kind"]) for e in timeline] == [
        (0, "declared"),
        (1, "update"),
        (2, "update"),
    ]
    assert timeline[2]["message"] == {"ja": "続報です"}


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": "x" * 1001}, "message"),
        ({"message": {"fr": "bonjour"}}, "message.fr"),
        ({"message": {}}, "message"),
        ({"message": {"ja": None}}, "message"),
        ({"message": {"ja": None, "en": None}}, "message"),
        ({"message": "ok", "status": "resolved"}, "status"),
        ({"message": "ok", "eta": "soon"}, "eta"),
        ({"message": "ok", "severity": "minor"}, "severity"),
    ],
)
def test_update_refuses_bad_input_and_writes_nothing(admin, redis, clock, update, field):
    doc = declare(admin)
    before = {k: redis.dump(k) for k in incident_keys(redis)}

    assert_error(admin.post(f"/api/incidents/{doc['id']}/updates", json=update), 400, field)
    assert {k: redis.dump(k) for k in incident_keys(redis)} == before


# --- resolve ------------------------------------------------------------------------------


def test_resolve_takes_the_incident_off_the_active_hash_and_stops_the_clock(admin, redis, clock):
    doc = declare(admin)
    other = declare(admin)
    clock.tick(45 * 60)

    response = admin.post(
        f"/api/incidents/{doc['id']}/resolve", json={"message": "復旧いたしました。"}
    )

    assert response.status_code == 200, response.get_json()
    resolved = response.get_json()
    assert resolved["status"] == "resolved"
    assert resolved["next_update_at"] is None
    assert resolved["resolved_at"] == "2026-11-23T01:45:00Z"
    assert resolved["timeline"][-1]["kind"] == "resolved"
    assert resolved["timeline"][-1]["seq"] == 1
    assert resolved["timeline"][-1]["message"] == {"ja": "復旧いたしました。"}
    assert active(redis, doc["id"]) is None
    assert active(redis, other["id"]) is not None
    assert stored(redis, doc["id"])["status"] == "resolved"
    assert stored(redis, doc["id"])["next_update_at"] is None


def test_a_resolved_incident_takes_no_more_changes(admin, redis, clock):
    doc = declare(admin)
    assert (
        admin.post(f"/api/incidents/{doc['id']}/resolve", json={"message": "復旧"}).status_code
        == 200
    )
    before = {k: redis.dump(k) for k in incident_keys(redis)}

    assert_error(admin.post(f"/api/incidents/{doc['id']}/updates", json={"message": "続報"}), 409)
    assert_error(admin.patch(f"/api/incidents/{doc['id']}", json={"status": "monitoring"}), 409)
    assert_error(admin.post(f"/api/incidents/{doc['id']}/resolve", json={"message": "再度"}), 409)
    assert {k: redis.dump(k) for k in incident_keys(redis)} == before
    assert active(redis, doc["id"]) is None


@pytest.mark.parametrize("body", [{}, {"message": {}}, {"message": {"en": None}}])
def test_resolve_needs_a_message_and_writes_nothing_without_one(admin, redis, clock, body):
    doc = declare(admin)
    before = {k: redis.dump(k) for k in incident_keys(redis)}
    assert_error(admin.post(f"/api/incidents/{doc['id']}/resolve", json=body), 400, "message")
    assert {k: redis.dump(k) for k in incident_keys(redis)} == before
    assert active(redis, doc["id"])["status"] == "investigating"


# --- declaration input checks: 400 naming the field, nothing written -----------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": ...}, "title"),
        ({"title": ""}, "title"),
        ({"title": 42}, "title"),
        ({"severity": ...}, "severity"),
        ({"severity": "urgent"}, "severity"),
        ({"severty": "major"}, "severty"),
        ({"status": "resolved"}, "status"),
        ({"audience": "everyone"}, "audience"),
        ({"announcement": ...}, "announcement"),
        ({"announcement": None}, "announcement"),
        ({"announcement": {}}, "announcement"),
        ({"announcement": "文字列だけ"}, "announcement"),
        ({"announcement": {"jp": "日本語"}}, "announcement.jp"),
        ({"announcement": {"ja": 5}}, "announcement.ja"),
        ({"announcement": {"ja": "あ" * 1001}}, "announcement.ja"),
        ({"announcement": {"ja": "ok", "en": "a" * 1001}}, "announcement.en"),
        ({"eta": "next tuesday"}, "eta"),
        ({"eta": "2026-13-45T99:00:00"}, "eta"),
        ({"eta": 1700000000}, "eta"),
        ({"scope": {"numbers": ["not-a-number"]}}, "scope.numbers[0]"),
        ({"scope": {"numbers": ["090-1234-5678", "12345"]}}, "scope.numbers[1]"),
        ({"scope": {"numbers": "090-1234-5678"}}, "scope.numbers"),
        ({"scope": {"service": ["mail"]}}, "scope.service"),
        ({"scope": ["mail"]}, "scope"),
        ({"notify": "yes"}, "notify"),
        ({"notify": 1}, "notify"),
        ({"notify": None}, "notify"),
    ],
)
def test_declare_refuses_bad_input_naming_the_field_and_writes_nothing(
    admin, redis, clock, fields, field
):
    response = admin.post("/api/incidents", json=body(**fields))

    assert_error(response, 400, field)
    assert incident_keys(redis) == []


def test_declare_of_an_announcement_at_the_limit_is_accepted(admin, clock):
    doc = declare(admin, announcement={"ja": "あ" * 1000}, notify=False)
    assert doc["announcement"] == {"ja": "あ" * 1000}


def test_a_body_that_is_not_json_is_refused(admin, redis, clock):
    response = admin.post(
        "/api/incidents",
        data="title=x&severity=major",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code in (400, 415)
    assert_error(response, response.status_code)
    assert incident_keys(redis) == []


def test_malformed_json_is_refused(admin, redis, clock):
    response = admin.post("/api/incidents", data='{"title": "x",', content_type="application/json")

    assert_error(response, 400)
    assert incident_keys(redis) == []


def test_a_json_array_body_is_refused(admin, redis, clock):
    response = admin.post("/api/incidents", json=[body()])

    assert_error(response, 400)
    assert incident_keys(redis) == []


def test_a_body_over_the_limit_gets_413_json(admin, redis, clock):
    huge = json.dumps(body(title="x" * (1536 * 1024)))

    response = admin.post("/api/incidents", data=huge, content_type="application/json")

    assert_error(response, 413)
    assert incident_keys(redis) == []


# --- unknown incidents ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "incident_id",
    [
        "INC-20261123-9999",
        "nothing",
        "INC-20261123-0001:timeline",
        "INC-20261123-0001:counters",
    ],
)
def test_unknown_incident_is_404_everywhere(admin, redis, clock, incident_id):
    declare(admin)
    before = {k: redis.dump(k) for k in incident_keys(redis)}

    for response in (
        admin.get(f"/api/incidents/{incident_id}"),
        admin.patch(f"/api/incidents/{incident_id}", json={"status": "identified"}),
        admin.post(f"/api/incidents/{incident_id}/updates", json={"message": "続報"}),
        admin.post(f"/api/incidents/{incident_id}/resolve", json={"message": "復旧"}),
    ):
        assert assert_error(response, 404)["code"] == "not_found"
    assert {k: redis.dump(k) for k in incident_keys(redis)} == before


# --- auth --------------------------------------------------------------------------------------


def issue_token(svc, login, _now):
    """An API token of a new supervisor with this login."""
    someone = person.create(svc, login=login, name=login, role="supervisor",
                            password="a long enough password", by="bootstrap")
    return person.issue_token(svc, someone.id, by="bootstrap")[1]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Bearer "},
    ],
)
def test_no_or_a_wrong_token_gets_401_and_writes_nothing(client, redis, clock, headers):
    for response in (
        client.post("/api/incidents", json=body(), headers=headers),
        client.get("/api/incidents", headers=headers),
        client.get("/api/incidents/INC-20261123-0001", headers=headers),
        client.patch(
            "/api/incidents/INC-20261123-0001", json={"status": "identified"}, headers=headers
        ),
    ):
        assert assert_error(response, 401)["code"] == "unauthorized"
    assert [k for k in redis.keys("{ivr}:*") if not k.startswith("{ivr}:auth_fail:")] == []


def test_the_bootstrap_token_works(client, clock):
    response = client.post(
        "/api/incidents", json=body(), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 201
    assert response.get_json()["declared_by"] == "bootstrap"


def test_an_issued_token_works_and_names_its_owner(client, svc, clock):
    token = issue_token(svc, "sv-tanaka", svc.now())
    headers = {"Authorization": f"Bearer {token}"}

    response = client.post("/api/incidents", json=body(), headers=headers)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["declared_by"] == "sv-tanaka"
    assert response.get_json()["timeline"][0]["by"] == "sv-tanaka"
    assert client.get("/api/incidents", headers=headers).status_code == 200


def test_a_token_whose_record_is_gone_stops_working(client, svc, redis, clock):
    token = issue_token(svc, "sv-tanaka", svc.now())
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/incidents", headers=headers).status_code == 200
    for key in redis.keys("{ivr}:token:*"):
        redis.delete(key)

    assert_error(client.get("/api/incidents", headers=headers), 401)


def test_tokens_are_stored_hashed_never_raw(client, svc, redis, clock):
    token = issue_token(svc, "sv-tanaka", svc.now())
    second = issue_token(svc, "sv-suzuki", svc.now())
    assert token != second
    assert (
        client.post(
            "/api/incidents", json=body(), headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 201
    )

    dumped = everything_in(svc.rq_redis)
    assert len(redis.keys("{ivr}:token:*")) == 2
    for raw in (token, second, ADMIN_TOKEN, token[4:], second[4:]):  # [4:]: without "ivr_"
        assert not [item for item in dumped if raw in item], raw


@pytest.mark.parametrize("label", ["mail service", "mail:web", "a;b", "a|b"])
def test_scope_labels_follow_the_customer_label_rule(admin, label):
    for field in ("services", "regions"):
        response = admin.post("/api/incidents", json={**body(), "scope": {field: [label]}})
        assert_error(response, 400, f"scope.{field}[0]")


def test_scope_numbers_live_in_a_set_callers_check_one_by_one(admin, redis, clock):
    doc = declare(admin, scope={"numbers": ["090-1234-5678", "090-1234-5679"]})
    assert "numbers" not in json.loads(redis.hget(keys.incidents_active(), doc["id"]))["scope"]
    assert redis.smembers(keys.incident_numbers(doc["id"])) == {"+819012345678",
                                                                "+819012345679"}
    admin.patch(f"/api/incidents/{doc['id']}", json={"scope": {"numbers": ["03-1234-5678"]}})
    assert redis.smembers(keys.incident_numbers(doc["id"])) == {"+81312345678"}
    admin.patch(f"/api/incidents/{doc['id']}", json={"eta": "2026-11-23T06:30:00Z"})
    assert redis.smembers(keys.incident_numbers(doc["id"])) == {"+81312345678"}
    admin.post(f"/api/incidents/{doc['id']}/resolve", json={"message": "復旧しました。"})
    assert not redis.exists(keys.incident_numbers(doc["id"]))
