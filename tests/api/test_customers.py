"""Customers API: JSON upsert, CSV import (all-or-nothing), lookup, against a real Redis."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis as redis_lib

from ivr import customer, keys, undeliverable
from ivr.customer import CustomerUpdate

PHONE = "+819012345678"
UPDATED_AT = "2026-11-23T01:00:00+00:00"  # the frozen clock of conftest
CSV = "text/csv"


def ivr_keys(redis: Any) -> list[str]:
    return sorted(k for k in redis.keys("{ivr}:*") if not k.startswith("{ivr}:auth_fail:"))


def members(redis: Any, key: str) -> set[str]:
    return set(redis.smembers(key))


def csv_body(*lines: str, bom: bool = False) -> bytes:
    text = "\r\n".join(lines) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def mobile(i: int) -> str:
    """A distinct valid Japanese mobile number in national format."""
    return f"090{10_000_000 + i:08d}"


def e164(i: int) -> str:
    return f"+8190{10_000_000 + i:08d}"


@pytest.fixture
def yamada(admin: Any) -> dict[str, Any]:
    """A stored customer with every field set."""
    record = {
        "phone": "090-1234-5678",
        "name": "山田太郎",
        "account_id": "A-1",
        "tier": "vip",
        "services": ["fiber", "mail"],
        "region": "tokyo",
        "language": "ja",
        "sms_opt_in": True,
    }
    response = admin.put("/api/customers", json=record)
    assert response.status_code == 200, response.get_json()
    return record


# --- PUT /api/customers ---------------------------------------------------------------------


def test_put_one_customer_stores_it_and_answers_with_it(admin: Any, redis: Any) -> None:
    response = admin.put(
        "/api/customers",
        json={
            "phone": "090-1234-5678",
            "name": " 山田太郎 ",
            "account_id": "A-1",
            "tier": "VIP",
            "services": ["fiber", "mail", "fiber"],
            "region": "tokyo",
            "language": "en",
            "sms_opt_in": False,
        },
    )

    assert response.status_code == 200
    expected = {
        "phone": PHONE,
        "name": "山田太郎",
        "account_id": "A-1",
        "tier": "vip",
        "services": ["fiber", "mail"],
        "region": "tokyo",
        "language": "en",
        "sms_opt_in": False,
        "mobile": True,
        "updated_at": UPDATED_AT,
        "updated_by": "bootstrap",
        "opted_out": False,
        "sms_undeliverable": None,
    }
    assert response.get_json() == {"upserted": 1, "customers": [expected]}
    assert redis.hgetall(keys.customer(PHONE)) == {
        "phone": PHONE,
        "name": "山田太郎",
        "account_id": "A-1",
        "tier": "vip",
        "services": '["fiber", "mail"]',
        "region": "tokyo",
        "language": "en",
        "sms_opt_in": "0",
        "mobile": "1",
        "updated_at": UPDATED_AT,
        "updated_by": "bootstrap",
    }
    assert members(redis, keys.customers_all()) == {PHONE}
    assert members(redis, keys.customers_by_service("fiber")) == {PHONE}
    assert members(redis, keys.customers_by_service("mail")) == {PHONE}
    assert members(redis, keys.customers_by_region("tokyo")) == {PHONE}


def test_put_minimal_customer_gets_defaults(admin: Any, redis: Any) -> None:
    response = admin.put("/api/customers", json={"phone": "03-1234-5678"})

    assert response.status_code == 200
    assert response.get_json()["customers"] == [
        {
            "phone": "+81312345678",
            "name": "",
            "account_id": "",
            "tier": "standard",
            "services": [],
            "region": "",
            "language": "ja",
            "sms_opt_in": True,
            "mobile": False,
            "updated_at": UPDATED_AT,
            "updated_by": "bootstrap",
            "opted_out": False,
            "sms_undeliverable": None,
        }
    ]
    assert ivr_keys(redis) == [keys.customer("+81312345678"), keys.customers_all()]


def test_put_list_upserts_every_customer(admin: Any, redis: Any) -> None:
    response = admin.put(
        "/api/customers",
        json=[
            {"phone": mobile(1), "name": "一郎", "services": ["fiber"]},
            {"phone": mobile(2), "name": "二郎", "services": ["fiber"], "region": "osaka"},
            {"phone": "+81 3 1234 5678", "name": "Office", "language": "en"},
        ],
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["upserted"] == 3
    assert [c["phone"] for c in body["customers"]] == [e164(1), e164(2), "+81312345678"]
    assert [c["name"] for c in body["customers"]] == ["一郎", "二郎", "Office"]
    assert members(redis, keys.customers_all()) == {e164(1), e164(2), "+81312345678"}
    assert members(redis, keys.customers_by_service("fiber")) == {e164(1), e164(2)}
    assert members(redis, keys.customers_by_region("osaka")) == {e164(2)}
    assert redis.hget(keys.customer("+81312345678"), "language") == "en"


def test_put_same_number_twice_merges_in_order(admin: Any, redis: Any) -> None:
    response = admin.put(
        "/api/customers",
        json=[
            {"phone": "090-1234-5678", "name": "旧", "region": "tokyo"},
            {"phone": "+819012345678", "name": "新"},
        ],
    )

    assert response.status_code == 200
    assert response.get_json()["upserted"] == 1
    assert redis.hget(keys.customer(PHONE), "name") == "新"
    assert redis.hget(keys.customer(PHONE), "region") == "tokyo"


def test_put_more_than_100_answers_with_the_count_only(admin: Any, redis: Any) -> None:
    response = admin.put("/api/customers", json=[{"phone": mobile(i)} for i in range(101)])

    assert response.status_code == 200
    assert response.get_json() == {"upserted": 101}
    assert redis.scard(keys.customers_all()) == 101


def test_put_more_than_10000_is_refused_and_writes_nothing(admin: Any, redis: Any) -> None:
    response = admin.put("/api/customers", json=[{"phone": mobile(i)} for i in range(10_001)])

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "too_many"
    assert ivr_keys(redis) == []


def test_put_merge_keeps_fields_not_given(admin: Any, redis: Any, yamada: Any) -> None:
    response = admin.put("/api/customers", json={"phone": "+81 90 1234 5678", "tier": "standard"})

    assert response.status_code == 200
    stored = response.get_json()["customers"][0]
    assert stored["tier"] == "standard"
    assert stored["name"] == "山田太郎"
    assert stored["account_id"] == "A-1"
    assert stored["services"] == ["fiber", "mail"]
    assert stored["region"] == "tokyo"
    assert redis.hget(keys.customer(PHONE), "name") == "山田太郎"
    assert redis.hget(keys.customer(PHONE), "tier") == "standard"


def test_put_null_clears_free_text_and_services(admin: Any, redis: Any, yamada: Any) -> None:
    response = admin.put(
        "/api/customers", json={"phone": PHONE, "name": None, "services": None, "region": None}
    )

    assert response.status_code == 200
    stored = response.get_json()["customers"][0]
    assert (stored["name"], stored["services"], stored["region"]) == ("", [], "")
    assert stored["account_id"] == "A-1"
    assert not redis.exists(keys.customers_by_service("fiber"))
    assert not redis.exists(keys.customers_by_region("tokyo"))
    assert members(redis, keys.customers_all()) == {PHONE}


def test_index_sets_follow_service_and_region_changes(admin: Any, redis: Any, yamada: Any) -> None:
    other = {"phone": mobile(7), "services": ["fiber"], "region": "tokyo"}
    assert admin.put("/api/customers", json=other).status_code == 200

    response = admin.put(
        "/api/customers", json={"phone": PHONE, "services": ["mail", "tv"], "region": "osaka"}
    )

    assert response.status_code == 200
    assert members(redis, keys.customers_by_service("fiber")) == {e164(7)}
    assert members(redis, keys.customers_by_service("mail")) == {PHONE}
    assert members(redis, keys.customers_by_service("tv")) == {PHONE}
    assert members(redis, keys.customers_by_region("tokyo")) == {e164(7)}
    assert members(redis, keys.customers_by_region("osaka")) == {PHONE}
    assert members(redis, keys.customers_all()) == {PHONE, e164(7)}


def test_sms_opt_in_and_suppression_list_stay_separate(admin: Any, redis: Any) -> None:
    redis.sadd(keys.sms_optout(), e164(2))

    response = admin.put(
        "/api/customers",
        json=[{"phone": mobile(1), "sms_opt_in": False}, {"phone": mobile(2), "sms_opt_in": True}],
    )

    assert response.status_code == 200
    flags = [(c["sms_opt_in"], c["opted_out"]) for c in response.get_json()["customers"]]
    assert flags == [(False, False), (True, True)]
    assert members(redis, keys.sms_optout()) == {e164(2)}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"name": "番号なし"}, "phone"),
        ({"phone": "12345"}, "phone"),
        ({"phone": "anonymous"}, "phone"),
        ({"phone": 9012345678}, "phone"),
        ({"phone": PHONE, "tier": "gold"}, "tier"),
        ({"phone": PHONE, "language": "fr"}, "language"),
        ({"phone": PHONE, "language": None}, "language"),
        ({"phone": PHONE, "services": "fiber"}, "services"),
        ({"phone": PHONE, "services": ["fiber", ""]}, "services[1]"),
        ({"phone": PHONE, "services": ["fiber optic"]}, "services[0]"),
        ({"phone": PHONE, "services": ["a:b"]}, "services[0]"),
        ({"phone": PHONE, "region": "kanto:tokyo"}, "region"),
        ({"phone": PHONE, "sms_opt_in": "yes"}, "sms_opt_in"),
        ({"phone": PHONE, "sms_opt_in": None}, "sms_opt_in"),
        ({"phone": PHONE, "name": "x" * 201}, "name"),
        ({"phone": PHONE, "name": 42}, "name"),
        ({"phone": PHONE, "email": "a@example.com"}, "email"),
        ({"phone": PHONE, "mobile": True}, "mobile"),
    ],
)
def test_put_bad_field_is_named_and_nothing_written(
    admin: Any, redis: Any, record: dict[str, Any], field: str
) -> None:
    response = admin.put("/api/customers", json=record)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field"
    assert error["field"] == field
    assert ivr_keys(redis) == []


def test_put_list_with_one_bad_item_writes_nothing(admin: Any, redis: Any, yamada: Any) -> None:
    before = redis.hgetall(keys.customer(PHONE))

    response = admin.put(
        "/api/customers",
        json=[
            {"phone": PHONE, "name": "変更"},
            {"phone": mobile(1)},
            {"phone": mobile(2), "tier": "gold", "language": "fr"},
            "not an object",
        ],
    )

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_items"
    assert error["field"] == "tier"
    assert [(d.get("index"), d.get("field")) for d in error["details"]] == [
        (2, "tier"),
        (2, "language"),
        (3, None),
    ]
    assert redis.hgetall(keys.customer(PHONE)) == before
    assert not redis.exists(keys.customer(e164(1)))
    assert members(redis, keys.customers_all()) == {PHONE}


@pytest.mark.parametrize("body", [b"{not json", b"42", b'"phone"'])
def test_put_body_that_is_not_an_object_or_list_is_400(admin: Any, redis: Any, body: bytes) -> None:
    response = admin.put("/api/customers", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert ivr_keys(redis) == []


def test_put_wrong_content_type_is_415(admin: Any, redis: Any) -> None:
    response = admin.put("/api/customers", data=f"phone\n{PHONE}\n", content_type=CSV)

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert ivr_keys(redis) == []


def test_put_oversized_body_is_413_json(admin: Any, redis: Any) -> None:
    body = [{"phone": mobile(i), "name": "x" * 190} for i in range(6000)]  # ~1.4 MB

    response = admin.put("/api/customers", json=body)

    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert ivr_keys(redis) == []


# --- POST /api/customers/import -------------------------------------------------------------


def test_import_csv_with_bom_and_japanese_names(admin: Any, redis: Any) -> None:
    body = csv_body(
        " Phone ,name,account_id,tier,services,region,language,sms_opt_in",
        "090-1234-5678,山田太郎,A-1,vip,fiber;mail,tokyo,ja,true",
        '"+81 90 1000 0002","佐藤, 花子",A-2,standard,fiber|tv,osaka,en,0',
        "",
        f"{mobile(3)},鈴木一郎,,,,,,YES",
        bom=True,
    )

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"imported": 3}
    assert redis.hgetall(keys.customer(PHONE)) == {
        "phone": PHONE,
        "name": "山田太郎",
        "account_id": "A-1",
        "tier": "vip",
        "services": '["fiber", "mail"]',
        "region": "tokyo",
        "language": "ja",
        "sms_opt_in": "1",
        "mobile": "1",
        "updated_at": UPDATED_AT,
        "updated_by": "bootstrap",
    }
    sato = redis.hgetall(keys.customer(e164(2)))
    assert (sato["name"], sato["services"], sato["language"], sato["sms_opt_in"]) == (
        "佐藤, 花子",
        '["fiber", "tv"]',
        "en",
        "0",
    )
    suzuki = redis.hgetall(keys.customer(e164(3)))
    assert (suzuki["name"], suzuki["tier"], suzuki["services"], suzuki["sms_opt_in"]) == (
        "鈴木一郎",
        "standard",
        "[]",
        "1",
    )
    assert members(redis, keys.customers_all()) == {PHONE, e164(2), e164(3)}
    assert members(redis, keys.customers_by_service("fiber")) == {PHONE, e164(2)}
    assert members(redis, keys.customers_by_service("tv")) == {e164(2)}
    assert members(redis, keys.customers_by_region("osaka")) == {e164(2)}


def test_import_empty_cells_keep_stored_values(admin: Any, redis: Any, yamada: Any) -> None:
    body = csv_body("phone,name,region,services", "09012345678,,osaka,")

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 200
    stored = redis.hgetall(keys.customer(PHONE))
    assert (stored["name"], stored["region"], stored["services"]) == (
        "山田太郎",
        "osaka",
        '["fiber", "mail"]',
    )
    assert members(redis, keys.customers_by_region("tokyo")) == set()
    assert members(redis, keys.customers_by_region("osaka")) == {PHONE}


def test_import_one_bad_row_names_it_and_writes_nothing(
    admin: Any, redis: Any, yamada: Any
) -> None:
    before = {key: redis.dump(key) for key in ivr_keys(redis)}
    body = csv_body(
        "phone,name,region", f"{mobile(1)},一郎,osaka", "0000,二郎,osaka", "09012345678,変更,nagoya"
    )

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_rows"
    assert error["field"] == "phone"
    assert "row 3" in error["message"]
    assert error["details"] == [
        {"row": 3, "field": "phone", "message": "phone is not a valid phone number"}
    ]
    assert {key: redis.dump(key) for key in ivr_keys(redis)} == before


@pytest.mark.parametrize(
    ("header", "row", "field"),
    [
        ("phone,name", "abc,太郎", "phone"),
        ("phone,name", ",太郎", "phone"),
        ("phone,tier", f"{PHONE},gold", "tier"),
        ("phone,language", f"{PHONE},中文", "language"),
        ("phone,services", f"{PHONE},fiber optic;mail", "services"),
        ("phone,services", f"{PHONE},fiber:x", "services"),
        ("phone,region", f"{PHONE},kanto:tokyo", "region"),
        ("phone,sms_opt_in", f"{PHONE},maybe", "sms_opt_in"),
        ("phone,name", f"{PHONE},{'x' * 201}", "name"),
    ],
)
def test_import_bad_value_names_row_and_field(
    admin: Any, redis: Any, header: str, row: str, field: str
) -> None:
    body = csv_body(header, f"{mobile(1)},", row)

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_rows"
    assert error["field"] == field
    assert [(d["row"], d["field"]) for d in error["details"]] == [(3, field)]
    assert ivr_keys(redis) == []


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("phone,name,email", "email"),
        ("phone,mobile", "mobile"),
        ("phone,name,name", "name"),
        ("name,tier", "phone"),
    ],
)
def test_import_bad_header_names_the_column(
    admin: Any, redis: Any, header: str, field: str
) -> None:
    body = csv_body(header, f"{mobile(1)},a,b")

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_rows"
    assert [(d["row"], d["field"]) for d in error["details"]] == [(1, field)]
    assert ivr_keys(redis) == []


def test_import_row_with_extra_cells_is_refused(admin: Any, redis: Any) -> None:
    body = csv_body("phone,name", f"{mobile(1)},一郎,,", f"{mobile(2)},二郎,surplus")

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 400
    details = response.get_json()["error"]["details"]
    assert [d["row"] for d in details] == [3]
    assert "field" not in details[0]
    assert ivr_keys(redis) == []


def test_import_reports_only_the_first_100_errors(admin: Any, redis: Any) -> None:
    body = csv_body("phone,tier", *[f"{mobile(i)},gold" for i in range(150)])

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert len(error["details"]) == 100
    assert error["details"][0]["row"] == 2
    assert error["details"][-1]["row"] == 101
    assert error["message"].startswith("150 problem(s)")
    assert ivr_keys(redis) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xef\xbb\xbf\r\n\r\n",
        "phone,name\r\n09012345678,山田\r\n".encode("shift_jis"),
    ],
)
def test_import_unreadable_file_is_400(admin: Any, redis: Any, body: bytes) -> None:
    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_csv"
    assert ivr_keys(redis) == []


def test_import_header_only_imports_nothing(admin: Any, redis: Any) -> None:
    response = admin.post("/api/customers/import", data=csv_body("phone,name"), content_type=CSV)

    assert response.status_code == 200
    assert response.get_json() == {"imported": 0}
    assert ivr_keys(redis) == []


def test_import_larger_than_1mib_is_allowed_and_written_in_chunks(admin: Any, redis: Any) -> None:
    rows = [f"{mobile(i)},{'名' * 60},svc{i % 3},region{i % 2}" for i in range(5500)]
    body = csv_body("phone,name,services,region", *rows)
    assert len(body) > 1024 * 1024

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"imported": 5500}
    assert redis.scard(keys.customers_all()) == 5500
    assert redis.scard(keys.customers_by_service("svc0")) == 1834
    assert redis.scard(keys.customers_by_region("region1")) == 2750
    assert redis.hget(keys.customer(e164(5499)), "name") == "名" * 60


def test_import_above_the_import_limit_is_413_json(app: Any, admin: Any, redis: Any) -> None:
    app.config["IVR_IMPORT_MAX_BYTES"] = 2000
    body = csv_body("phone,name", *[f"{mobile(i)},{'x' * 20}" for i in range(100)])
    assert len(body) > 2000

    response = admin.post("/api/customers/import", data=body, content_type=CSV)

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert ivr_keys(redis) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "multipart/form-data", "text/csv; charset=shift_jis"],
)
def test_import_wrong_content_type_is_415(admin: Any, redis: Any, content_type: str) -> None:
    response = admin.post(
        "/api/customers/import", data=csv_body("phone", PHONE), content_type=content_type
    )

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert ivr_keys(redis) == []


def test_import_accepts_explicit_utf8_charset(admin: Any, redis: Any) -> None:
    response = admin.post(
        "/api/customers/import",
        data=csv_body("phone", PHONE),
        content_type="text/csv; charset=UTF-8",
    )

    assert response.status_code == 200
    assert members(redis, keys.customers_all()) == {PHONE}


# --- GET /api/customers/<phone> -------------------------------------------------------------


def test_get_normalises_the_number(admin: Any, redis: Any, yamada: Any) -> None:
    response = admin.get("/api/customers/090-1234-5678")

    assert response.status_code == 200
    assert response.get_json() == {
        "phone": PHONE,
        "name": "山田太郎",
        "account_id": "A-1",
        "tier": "vip",
        "services": ["fiber", "mail"],
        "region": "tokyo",
        "language": "ja",
        "sms_opt_in": True,
        "mobile": True,
        "updated_at": UPDATED_AT,
        "updated_by": "bootstrap",
        "opted_out": False,
        "sms_undeliverable": None,
    }


def test_get_shows_suppression_list_state(admin: Any, redis: Any, yamada: Any) -> None:
    redis.sadd(keys.sms_optout(), PHONE)

    response = admin.get("/api/customers/+819012345678")

    assert response.status_code == 200
    body = response.get_json()
    assert (body["sms_opt_in"], body["opted_out"]) == (True, True)


def test_get_shows_an_undeliverable_mark_until_an_upsert_lifts_it(
        admin: Any, svc: Any, yamada: Any) -> None:
    undeliverable.mark(svc, PHONE, 30005)

    shown = admin.get("/api/customers/+819012345678").get_json()["sms_undeliverable"]
    assert shown == {"error_code": 30005, "until": "2026-12-23T01:00:00Z"}

    echoed = admin.put("/api/customers", json={"phone": PHONE}).get_json()["customers"][0]
    assert echoed["sms_undeliverable"] is None
    assert admin.get("/api/customers/+819012345678").get_json()["sms_undeliverable"] is None
    assert not svc.redis.exists(keys.sms_undeliverable(PHONE))


def test_get_unknown_customer_is_404_json(admin: Any) -> None:
    response = admin.get("/api/customers/090-9999-0000")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_get_bad_phone_is_400_naming_phone(admin: Any) -> None:
    response = admin.get("/api/customers/12ab")

    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": "invalid_field",
        "message": "phone is not a valid phone number",
        "field": "phone",
        "errors": [{"field": "phone", "message": "phone is not a valid phone number"}],
    }


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic dGVzdDp0ZXN0"}],
)
def test_without_a_valid_token_everything_is_401(
    client: Any, redis: Any, yamada: Any, headers: dict[str, str]
) -> None:
    before = {key: redis.dump(key) for key in ivr_keys(redis)}

    answers = [
        client.put("/api/customers", json={"phone": PHONE, "name": "乗っ取り"}, headers=headers),
        client.post(
            "/api/customers/import",
            data=csv_body("phone,name", f"{mobile(1)},x"),
            content_type=CSV,
            headers=headers,
        ),
        client.get("/api/customers/090-1234-5678", headers=headers),
    ]

    assert [r.status_code for r in answers] == [401, 401, 401]
    assert [r.get_json()["error"]["code"] for r in answers] == ["unauthorized"] * 3
    assert "山田" not in answers[2].get_data(as_text=True)
    assert {key: redis.dump(key) for key in ivr_keys(redis)} == before


# --- the domain function directly -----------------------------------------------------------


def test_upsert_many_writes_every_chunk(svc: Any, redis: Any) -> None:
    updates = [CustomerUpdate(e164(i), {"services": [f"s{i % 2}"]}) for i in range(5)]

    written = customer.upsert_many(svc, updates, chunk_size=2)

    assert [c.phone for c in written] == [e164(i) for i in range(5)]
    assert redis.scard(keys.customers_all()) == 5
    assert members(redis, keys.customers_by_service("s0")) == {e164(0), e164(2), e164(4)}
    assert members(redis, keys.customers_by_service("s1")) == {e164(1), e164(3)}


class MeddlingRedis(redis_lib.Redis):
    """A real client that lets another writer change a customer between read and EXEC.

    upsert_many reads a watched chunk through a plain pipeline; right after that read is
    where a concurrent import or opt-in would land, so EXEC must fail and the chunk be re-read
    (without WATCH the stale read would be written back over the other writer's change).
    """

    meddle: list[tuple[str, str]]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        if transaction or not self.meddle:
            return pipe
        read = pipe.execute

        def execute_then_meddle(*args: Any, **kwargs: Any) -> Any:
            result = read(*args, **kwargs)
            phone, name = self.meddle.pop(0)
            redis_lib.Redis(connection_pool=self.connection_pool).hset(
                keys.customer(phone), "name", name
            )
            return result

        pipe.execute = execute_then_meddle  # type: ignore[method-assign]
        return pipe


def meddling_services(svc: Any, meddle: list[tuple[str, str]]) -> Any:
    client = MeddlingRedis(connection_pool=svc.redis.connection_pool)
    client.meddle = meddle
    return dataclasses.replace(svc, redis=client)


def test_upsert_many_retries_when_a_watched_customer_changes(svc: Any, redis: Any) -> None:
    customer.upsert_many(svc, [CustomerUpdate(PHONE, {"name": "山田", "region": "tokyo"})])
    meddled = meddling_services(svc, [(PHONE, "他の人")])

    written = customer.upsert_many(meddled, [CustomerUpdate(PHONE, {"region": "osaka"})])

    assert meddled.redis.meddle == []
    assert (written[0].name, written[0].region) == ("他の人", "osaka")
    assert redis.hget(keys.customer(PHONE), "name") == "他の人"
    assert members(redis, keys.customers_by_region("tokyo")) == set()
    assert members(redis, keys.customers_by_region("osaka")) == {PHONE}


def test_upsert_many_gives_up_without_writing_when_always_interrupted(svc: Any, redis: Any) -> None:
    customer.upsert_many(svc, [CustomerUpdate(PHONE, {"region": "tokyo"})])
    meddled = meddling_services(svc, [(PHONE, f"writer{i}") for i in range(10)])

    with pytest.raises(customer.ConflictError):
        customer.upsert_many(meddled, [CustomerUpdate(PHONE, {"region": "osaka"})])

    assert redis.hget(keys.customer(PHONE), "region") == "tokyo"
    assert members(redis, keys.customers_by_region("tokyo")) == {PHONE}
    assert not redis.exists(keys.customers_by_region("osaka"))
