"""Every bad field named; text XML cannot carry; ETAs in a sane window; bodies that once gave
a 500 (issue 13) answer 4xx; the escalate reason in both vocabularies."""

from __future__ import annotations

import json

import pytest

from ivr import keys, schemas

GOOD = {"title": "メール障害", "severity": "major", "announcement": {"ja": "障害です"}}


def incident_keys(redis):
    return redis.keys(keys.incident("*")) + redis.keys("{ivr}:incidents:*")


def test_three_bad_fields_are_all_named_and_nothing_is_written(admin, redis, clock):
    response = admin.post("/api/incidents", json={**GOOD, "title": "", "severity": "huge",
                                                  "audience": ["everyone"]})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert [e["field"] for e in error["errors"]] == ["title", "severity", "audience"]
    assert error["field"] == "title" and error["code"] == "invalid_field"
    assert all(e["message"] for e in error["errors"])
    assert incident_keys(redis) == []


@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\ufffe", "\uffff", "\U0001fffe",
                                 "\ud800", "a\udfffb"])
@pytest.mark.parametrize("where", ["title", "announcement.ja"])
def test_text_xml_cannot_carry_is_refused_naming_the_field(admin, redis, clock, bad, where):
    body = json.loads(json.dumps(GOOD))
    if where == "title":
        body["title"] = "障害" + bad
    else:
        body["announcement"]["ja"] = "障害です" + bad
    response = admin.post("/api/incidents", data=json.dumps(body),
                          content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == where
    assert incident_keys(redis) == []


def test_tab_newline_and_carriage_return_are_allowed():
    assert not schemas.xml_forbidden("一行目\n二行目\r\n\tです")
    assert schemas.xml_forbidden("\x07")


def test_lone_surrogate_in_a_name_or_note_is_400(admin, redis):
    body = '{"phone": "090-1234-5678", "name": "\\ud800"}'
    response = admin.put("/api/customers", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "name"
    assert redis.keys(keys.customer("*")) == []
    people = admin.post("/api/people", data='{"login": "a1", "name": "\\udfff", "role": '
                        '"operator", "password": "a long enough password"}',
                        content_type="application/json")
    assert people.status_code == 400 and people.get_json()["error"]["field"] == "name"


def test_deeply_nested_json_is_a_400(admin, redis):
    response = admin.post("/api/incidents", data="[" * 100_000,
                          content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    nested = admin.post("/api/incidents", data="[" * 100_000 + "]" * 100_000,
                        content_type="application/json")
    assert nested.status_code == 400


@pytest.mark.parametrize("eta", ["9999-12-31T23:00:00Z", "0001-01-01T08:00:00+09:00",
                                 "0001-01-01T00:00:00", "2027-12-01T00:00:00Z",
                                 "2026-11-22T00:00:00Z"])
def test_declare_with_an_eta_outside_the_window_is_400(admin, redis, clock, eta):
    response = admin.post("/api/incidents", json={**GOOD, "eta": eta})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["field"] == "eta"
    assert incident_keys(redis) == []


def test_eta_window_on_patch_and_update(admin, clock):
    doc = admin.post("/api/incidents", json={**GOOD, "eta": "2026-11-23T15:00:00+09:00"})
    assert doc.status_code == 201
    incident_id = doc.get_json()["id"]
    clock.tick(3600)
    for eta in ("9999-12-31T23:00:00Z", "2026-11-22T23:00:00Z"):
        patched = admin.patch(f"/api/incidents/{incident_id}", json={"eta": eta})
        assert patched.status_code == 400 and patched.get_json()["error"]["field"] == "eta"
        update = admin.post(f"/api/incidents/{incident_id}/updates",
                            json={"message": "続報", "eta": eta})
        assert update.status_code == 400 and update.get_json()["error"]["field"] == "eta"
    # a year ahead and a moment after the declaration are fine
    assert admin.patch(f"/api/incidents/{incident_id}",
                       json={"eta": "2027-11-23T00:00:00Z"}).status_code == 200
    assert admin.patch(f"/api/incidents/{incident_id}",
                       json={"eta": "2026-11-23T01:30:00Z"}).status_code == 200


def test_a_bad_stored_eta_reads_as_unknown_not_an_overflow(svc):
    assert svc.local("9999-12-31T23:00:00Z") is None
    assert svc.local("not a time") is None
    assert svc.local("2026-11-23T01:00:00Z").hour == 10


def test_escalate_reasons_in_the_document_take_both_vocabularies():
    reasons = schemas.SCHEMAS["Escalate"]["properties"]["reason"]["enum"]
    assert {"general", "billing", "technical", "manager", "anger", "money",
            "repeat"} <= set(reasons)
    assert len(reasons) == len(set(reasons))


@pytest.mark.parametrize("reason", ["billing", "general", "technical", "money", "manager"])
def test_escalate_accepts_the_rosters_words(admin, reason):
    # no such call: past validation, so 404 rather than 400
    response = admin.post("/api/calls/CA" + "0" * 32 + "/escalate", json={"reason": reason})
    assert response.status_code == 404


def test_escalate_with_an_unknown_reason_names_it(admin):
    response = admin.post("/api/calls/CA" + "0" * 32 + "/escalate",
                          json={"reason": "urgent", "note": ""})
    error = response.get_json()["error"]
    assert response.status_code == 400
    assert [e["field"] for e in error["errors"]] == ["reason", "note"]


def test_a_customer_list_with_a_control_character_names_its_index(admin, redis):
    body = '[{"phone": "090-1234-5678", "name": "山田"}, {"phone": "090-1234-5679", ' \
           '"name": "鈴木\\u001b"}]'
    response = admin.put("/api/customers", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "[1].name"
    assert redis.keys(keys.customer("*")) == []
