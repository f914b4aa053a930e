"""Supervisors API and the escalation ladder, against a real Redis and flows/escalation.yaml."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ivr import create_app, keys, supervisor
from ivr.services import build_services
from ivr.supervisor import Supervisor
from tests.conftest import ADMIN_TOKEN, make_config

UPDATED_AT = "2026-11-23T01:00:00+00:00"  # the frozen clock of conftest
LATER = "2026-11-23T01:05:00+00:00"


def mobile(i: int) -> str:
    """A distinct valid Japanese mobile number in national format."""
    return f"090{10_000_000 + i:08d}"


def e164(i: int) -> str:
    return f"+8190{10_000_000 + i:08d}"


def sv(
    i: int,
    name: str,
    skills: list[str],
    level: int,
    *,
    on_call: bool = True,
    order: int = 100,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "phone": mobile(i),
        "name": name,
        "skills": skills,
        "level": level,
        "on_call": on_call,
        "order": order,
        **extra,
    }



def stored_phones(redis: Any) -> set[str]:
    return set(redis.hkeys(keys.supervisor_roster()))


def names(answer: Any, field: str = "supervisors") -> list[str]:
    assert answer.status_code == 200, answer.get_json()
    return [s["name"] for s in answer.get_json()[field]]


@pytest.fixture
def three(admin: Any) -> list[dict[str, Any]]:
    """A stored roster of three."""
    roster = [
        sv(1, "佐藤", ["general"], 3, order=10),
        sv(2, "鈴木", ["billing"], 3, order=20),
        sv(3, "高橋", ["technical"], 2, order=30),
    ]
    assert admin.put("/api/supervisors", json=roster).status_code == 200
    return roster


# --- PUT a list: replace the whole roster ---------------------------------------------------


def test_put_list_stores_the_roster_and_answers_in_ring_order(admin: Any, redis: Any) -> None:
    response = admin.put(
        "/api/supervisors",
        json=[
            sv(1, "Carol", ["general"], 3, order=30),
            sv(2, "Bob", ["technical", "general"], 2, order=10, lang="en"),
            sv(3, "Alice", ["billing"], 3, order=10),
        ],
    )

    assert response.status_code == 200
    answer = response.get_json()["supervisors"]
    assert [s["name"] for s in answer] == ["Alice", "Bob", "Carol"]  # (order, name)
    assert answer[1] == {
        "phone": e164(2),
        "name": "Bob",
        "skills": ["general", "technical"],  # canonical order
        "level": 2,
        "on_call": True,
        "order": 10,
        "lang": "en",
        "updated_at": UPDATED_AT,
        "updated_by": "bootstrap",
    }
    assert answer[0]["lang"] == "ja"  # the default
    assert stored_phones(redis) == {e164(1), e164(2), e164(3)}
    assert names(admin.get("/api/supervisors")) == ["Alice", "Bob", "Carol"]


def test_put_list_drops_everyone_not_in_it(admin: Any, svc: Any, redis: Any, three: Any) -> None:
    response = admin.put(
        "/api/supervisors",
        json=[
            sv(2, "鈴木花子", ["billing", "general"], 2, order=5),
            sv(4, "田中", ["general"], 3, order=1),
        ],
    )

    assert names(response) == ["田中", "鈴木花子"]
    assert stored_phones(redis) == {e164(2), e164(4)}
    kept = supervisor.get(svc, e164(2))
    assert kept is not None
    assert (kept.name, kept.skills, kept.level, kept.order) == (
        "鈴木花子",
        ("general", "billing"),
        2,
        5,
    )


def test_put_empty_list_empties_the_roster(admin: Any, redis: Any, three: Any) -> None:
    response = admin.put("/api/supervisors", json=[])

    assert response.status_code == 200
    assert response.get_json() == {"supervisors": []}
    assert not redis.exists(keys.supervisor_roster())


def test_get_without_a_roster_is_an_empty_list(admin: Any) -> None:
    response = admin.get("/api/supervisors")

    assert response.status_code == 200
    assert response.get_json() == {"supervisors": []}


# --- PUT an object: upsert one supervisor ---------------------------------------------------


def test_put_object_adds_one_and_keeps_the_rest(
    admin: Any, redis: Any, three: Any, clock: Any
) -> None:
    before = redis.hget(keys.supervisor_roster(), e164(1))
    clock.tick(300)

    response = admin.put("/api/supervisors", json=sv(4, "伊藤", ["general"], 2, order=15))

    assert names(response) == ["佐藤", "伊藤", "鈴木", "高橋"]
    added = response.get_json()["supervisors"][1]
    assert (added["phone"], added["updated_at"]) == (e164(4), LATER)
    assert redis.hget(keys.supervisor_roster(), e164(1)) == before  # untouched
    assert stored_phones(redis) == {e164(1), e164(2), e164(3), e164(4)}


def test_put_object_replaces_the_same_number(admin: Any, svc: Any, redis: Any, three: Any) -> None:
    response = admin.put(
        "/api/supervisors",
        json={
            "phone": "+81 90-1000-0002",
            "name": "鈴木",
            "skills": ["billing"],
            "level": 3,
            "on_call": False,
            "order": 99,
        },
    )

    assert names(response) == ["佐藤", "高橋", "鈴木"]
    assert stored_phones(redis) == {e164(1), e164(2), e164(3)}
    stored = supervisor.get(svc, e164(2))
    assert stored is not None
    assert (stored.on_call, stored.order) == (False, 99)


# --- phone numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["090-1234-5678", "09012345678", "+81 90 1234 5678", "+819012345678"]
)
def test_phone_is_normalised_to_e164(admin: Any, redis: Any, raw: str) -> None:
    response = admin.put(
        "/api/supervisors",
        json={
            "phone": raw,
            "name": "山田",
            "skills": ["general"],
            "level": 3,
            "on_call": True,
            "order": 1,
        },
    )

    assert response.status_code == 200
    assert response.get_json()["supervisors"][0]["phone"] == "+819012345678"
    assert stored_phones(redis) == {"+819012345678"}


def test_same_number_twice_in_a_list_is_refused_at_the_second(
    admin: Any, redis: Any, three: Any, snapshot: Any
) -> None:
    before = snapshot()

    response = admin.put(
        "/api/supervisors",
        json=[
            sv(5, "A", ["general"], 3),
            {**sv(6, "B", ["general"], 3), "phone": "+819012345678"},
            {**sv(7, "C", ["general"], 2), "phone": "090-1234-5678"},
        ],
    )

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "[2].phone")
    assert "[1].phone" in error["message"]
    assert snapshot() == before


# --- bad input: named, nothing written ------------------------------------------------------


GOOD = {
    "phone": "090-1234-5678",
    "name": "山田",
    "skills": ["general"],
    "level": 3,
    "on_call": True,
    "order": 1,
}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != name}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (without("phone"), "phone"),
        ({**GOOD, "phone": ""}, "phone"),
        ({**GOOD, "phone": "12345"}, "phone"),
        ({**GOOD, "phone": "anonymous"}, "phone"),
        ({**GOOD, "phone": 9012345678}, "phone"),
        (without("name"), "name"),
        ({**GOOD, "name": "  "}, "name"),
        ({**GOOD, "name": "x" * 101}, "name"),
        ({**GOOD, "name": "山田\n太郎"}, "name"),
        ({**GOOD, "name": 42}, "name"),
        (without("skills"), "skills"),
        ({**GOOD, "skills": []}, "skills"),
        ({**GOOD, "skills": "general"}, "skills"),
        ({**GOOD, "skills": ["general", "sales"]}, "skills[1]"),
        ({**GOOD, "skills": [3]}, "skills[0]"),
        (without("level"), "level"),
        ({**GOOD, "level": 1}, "level"),
        ({**GOOD, "level": 4}, "level"),
        ({**GOOD, "level": "3"}, "level"),
        ({**GOOD, "level": 3.0}, "level"),
        ({**GOOD, "level": True}, "level"),
        (without("on_call"), "on_call"),
        ({**GOOD, "on_call": "yes"}, "on_call"),
        ({**GOOD, "on_call": 1}, "on_call"),
        (without("order"), "order"),
        ({**GOOD, "order": -1}, "order"),
        ({**GOOD, "order": 10_000}, "order"),
        ({**GOOD, "order": 1.5}, "order"),
        ({**GOOD, "order": False}, "order"),
        ({**GOOD, "lang": "fr"}, "lang"),
        ({**GOOD, "email": "a@example.com"}, "email"),
        ({**GOOD, "updated_at": UPDATED_AT}, "updated_at"),
    ],
)
def test_put_bad_field_is_named_and_nothing_written(
    admin: Any, redis: Any, three: Any, record: dict[str, Any], field: str, snapshot: Any
) -> None:
    before = snapshot()

    single = admin.put("/api/supervisors", json=record)
    in_list = admin.put(
        "/api/supervisors", json=[sv(8, "OK", ["general"], 2), sv(9, "OK2", ["billing"], 3), record]
    )

    assert single.status_code == 400
    assert single.get_json()["error"]["code"] == "invalid_field"
    assert single.get_json()["error"]["field"] == field
    assert in_list.status_code == 400
    assert in_list.get_json()["error"]["field"] == f"[2].{field}"
    assert snapshot() == before


def test_a_list_item_that_is_not_an_object_is_named(
        admin: Any, redis: Any, three: Any, snapshot: Any) -> None:
    before = snapshot()

    response = admin.put("/api/supervisors", json=[sv(8, "OK", ["general"], 2), "佐藤"])

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "[1]"
    assert snapshot() == before


@pytest.mark.parametrize("body", [b"{not json", b"42", b'"phone"', b"null"])
def test_put_body_that_is_not_an_object_or_list_is_400(
    admin: Any, redis: Any, three: Any, body: bytes, snapshot: Any
) -> None:
    before = snapshot()

    response = admin.put("/api/supervisors", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert snapshot() == before


def test_put_wrong_content_type_is_415(admin: Any, redis: Any, three: Any, snapshot: Any) -> None:
    before = snapshot()

    response = admin.put(
        "/api/supervisors", data="phone,name\n09012345678,山田\n", content_type="text/csv"
    )

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert snapshot() == before


def test_put_oversized_body_is_413_json(admin: Any, redis: Any, three: Any, snapshot: Any) -> None:
    before = snapshot()
    body = [sv(i, "x" * 100, ["general"], 2) for i in range(20)] * 400  # ~1.2 MB

    response = admin.put("/api/supervisors", json=body)

    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert snapshot() == before


def test_more_than_500_is_refused_and_500_is_the_limit(admin: Any, redis: Any) -> None:
    roster = [sv(i, f"sv{i:03d}", ["general"], 2, order=i) for i in range(501)]

    refused = admin.put("/api/supervisors", json=roster)
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "too_many"
    assert not redis.exists(keys.supervisor_roster())

    assert admin.put("/api/supervisors", json=roster[:500]).status_code == 200
    full = admin.put("/api/supervisors", json=roster[500])
    same = admin.put("/api/supervisors", json={**roster[0], "name": "renamed"})

    assert (full.status_code, full.get_json()["error"]["code"]) == (400, "too_many")
    assert same.status_code == 200
    assert redis.hlen(keys.supervisor_roster()) == 500
    assert e164(500) not in stored_phones(redis)


# --- the escalation ladder (flows/escalation.yaml) ------------------------------------------


LADDER_ROSTER = [
    sv(1, "請求L3-b", ["billing"], 3, order=20),
    sv(2, "請求L3-a", ["billing"], 3, order=10),
    sv(3, "請求L2", ["billing"], 2, order=1),
    sv(4, "総合L3", ["general"], 3, order=5),
    sv(5, "総合請求L3", ["general", "billing"], 3, order=15),  # in two money steps
    sv(6, "請求L3休み", ["billing"], 3, order=0, on_call=False),
    sv(7, "技術L3", ["technical"], 3, order=50),
    sv(8, "技術L2休み", ["technical"], 2, order=1, on_call=False),
    sv(9, "総合L2", ["general"], 2, order=40),
    sv(10, "総合L2-b", ["general"], 2, order=30),
]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        # billing L3 by order, then billing L2, then general L3 minus who was already picked
        ("money", ["請求L3-a", "総合請求L3", "請求L3-b", "請求L2", "総合L3"]),
        ("manager", ["総合L3", "総合請求L3", "総合L2-b", "総合L2"]),
        ("anger", ["総合L3", "総合請求L3"]),
        ("repeat", ["総合L2-b", "総合L2", "総合L3", "総合請求L3"]),
        ("technical", ["技術L3", "総合L3", "総合請求L3"]),
        ("operator", ["総合L2-b", "総合L2", "総合L3", "総合請求L3"]),
    ],
)
def test_candidates_follow_the_ladder(
    admin: Any, svc: Any, reason: str, expected: list[str]
) -> None:
    assert admin.put("/api/supervisors", json=LADDER_ROSTER).status_code == 200

    response = admin.get(f"/api/supervisors/candidates?reason={reason}")

    assert names(response, "candidates") == expected
    assert response.get_json()["reason"] == reason
    assert [s.name for s in supervisor.candidates(svc, reason)] == expected


def test_candidates_read_the_ladder_from_flows(admin: Any, svc: Any) -> None:
    assert admin.put("/api/supervisors", json=LADDER_ROSTER).status_code == 200
    escalation = {
        **svc.flows.escalation,
        "ladder": {
            **svc.flows.escalation["ladder"],
            "money": [{"skill": "general", "level": 3}, {"skill": "billing", "level": 2}],
        },
    }
    edited = dataclasses.replace(svc, flows=dataclasses.replace(svc.flows, escalation=escalation))

    picked = supervisor.candidates(edited, "money")

    assert [s.name for s in picked] == ["総合L3", "総合請求L3", "請求L2"]


def test_going_off_call_removes_a_candidate(admin: Any, svc: Any) -> None:
    assert admin.put("/api/supervisors", json=LADDER_ROSTER).status_code == 200
    assert (
        admin.put("/api/supervisors", json={**LADDER_ROSTER[3], "on_call": False}).status_code
        == 200
    )

    assert [s.name for s in supervisor.candidates(svc, "anger")] == ["総合請求L3"]


def test_candidates_with_an_empty_roster_is_an_empty_list(admin: Any) -> None:
    response = admin.get("/api/supervisors/candidates?reason=manager")

    assert response.status_code == 200
    assert response.get_json() == {"reason": "manager", "candidates": []}


@pytest.mark.parametrize("query", ["?reason=refund", "?reason=", "", "?reason=ladder"])
def test_unknown_reason_is_400_naming_reason(admin: Any, query: str) -> None:
    response = admin.get(f"/api/supervisors/candidates{query}")

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "reason")


def test_unknown_reason_is_a_value_error(svc: Any) -> None:
    with pytest.raises(ValueError, match="refund"):
        supervisor.candidates(svc, "refund")


# --- the domain functions directly ----------------------------------------------------------


def sup(i: int, name: str, order: int, **extra: Any) -> Supervisor:
    return Supervisor(
        phone=e164(i), name=name, skills=("general",), level=3, on_call=True, order=order, **extra
    )


def test_roster_and_get(svc: Any, redis: Any) -> None:
    supervisor.replace_roster(svc, [sup(1, "b", 2), sup(2, "a", 2), sup(3, "z", 1, lang="en")])

    assert [s.name for s in supervisor.roster(svc)] == ["z", "a", "b"]
    assert supervisor.get(svc, e164(3)) == sup(3, "z", 1, lang="en", updated_at=UPDATED_AT)
    assert supervisor.get(svc, e164(9)) is None


def test_replace_roster_refuses_a_doubled_number_and_writes_nothing(
        svc: Any, redis: Any, snapshot: Any) -> None:
    supervisor.replace_roster(svc, [sup(1, "a", 1)])
    before = snapshot()

    with pytest.raises(ValueError):
        supervisor.replace_roster(svc, [sup(2, "b", 1), sup(2, "c", 2)])

    assert snapshot() == before


def test_upsert_returns_the_roster_it_produced(svc: Any) -> None:
    supervisor.replace_roster(svc, [sup(1, "a", 5)])

    result = supervisor.upsert(svc, sup(2, "b", 1))

    assert [(s.name, s.updated_at) for s in result] == [("b", UPDATED_AT), ("a", UPDATED_AT)]


def test_an_unreadable_stored_entry_is_skipped(svc: Any, redis: Any) -> None:
    supervisor.replace_roster(svc, [sup(1, "a", 5)])
    redis.hset(keys.supervisor_roster(), e164(2), "{not json")

    assert [s.name for s in supervisor.roster(svc)] == ["a"]
    assert supervisor.get(svc, e164(2)) is None


# --- authentication and Redis trouble -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic dGVzdDp0ZXN0"}],
)
def test_without_a_valid_token_everything_is_401(
    client: Any, redis: Any, three: Any, headers: dict[str, str], snapshot: Any
) -> None:
    def data() -> dict[Any, Any]:
        """Everything but the bad-token counters a refused token rightly leaves behind."""
        return {k: v for k, v in snapshot().items()
                if not str(k[1]).startswith("{ivr}:auth_fail:")}

    before = data()

    answers = [
        client.get("/api/supervisors", headers=headers),
        client.put("/api/supervisors", json=[sv(9, "乗っ取り", ["general"], 3)], headers=headers),
        client.put("/api/supervisors", json=sv(9, "乗っ取り", ["general"], 3), headers=headers),
        client.get("/api/supervisors/candidates?reason=manager", headers=headers),
    ]

    assert [r.status_code for r in answers] == [401] * 4
    assert [r.get_json()["error"]["code"] for r in answers] == ["unauthorized"] * 4
    assert not any("佐藤" in r.get_data(as_text=True) for r in answers)
    assert data() == before


def test_redis_down_is_503_json(tmp_path: Any, fake_twilio: Any, content: Any) -> None:
    config = make_config(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    services = build_services(config, **content)
    client = create_app(config, services=services).test_client()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        answers = [
            client.get("/api/supervisors", headers=auth),
            client.put("/api/supervisors", json=[sv(1, "a", ["general"], 3)], headers=auth),
            client.put("/api/supervisors", json=sv(1, "a", ["general"], 3), headers=auth),
            client.get("/api/supervisors/candidates?reason=money", headers=auth),
        ]
    finally:
        services.redis.close()
        services.rq_redis.close()

    assert [r.status_code for r in answers] == [503] * 4
    assert [r.get_json()["error"]["code"] for r in answers] == ["storage_unavailable"] * 4


@pytest.mark.parametrize("word,ladder", [("billing", "money"), ("general", "operator"),
                                         ("technical", "technical")])
def test_candidates_take_the_rosters_words(admin: Any, word: str, ladder: str) -> None:
    assert admin.put("/api/supervisors", json=LADDER_ROSTER).status_code == 200
    by_word = admin.get(f"/api/supervisors/candidates?reason={word}")
    by_ladder = admin.get(f"/api/supervisors/candidates?reason={ladder}")
    assert by_word.status_code == 200
    assert names(by_word, "candidates") == names(by_ladder, "candidates")
