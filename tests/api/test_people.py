"""People, roles and tokens over the API; authorization of every /api/ route by walking the
URL map; bad-token limits."""

from __future__ import annotations

import pytest

from ivr import access, keys, person
from ivr.api.routes import ROUTES
from tests.conftest import ADMIN_TOKEN

PASSWORD = "a long enough password"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_for(svc, role: str, login: str | None = None) -> str:
    someone = person.create(svc, login=login or f"{role}1", name="山田太郎", role=role,
                            password=PASSWORD, by="bootstrap")
    return person.issue_token(svc, someone.id, by="bootstrap")[1]


def api_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", "CA" + "0" * 32 if arg == "call_sid" else "x1")
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule.endpoint, method, path


def test_every_api_route_is_in_the_one_table_with_a_known_action(app):
    endpoints = {e for e, _, _ in api_routes(app)}
    assert endpoints == set(ROUTES)
    assert all(r.action in access.ACTIONS for r in ROUTES.values())


def test_every_api_route_is_401_without_a_token(app, client, redis):
    for endpoint, method, path in api_routes(app):
        response = client.open(path, method=method, json={})
        assert response.status_code == 401, (endpoint, response.get_json())
        assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_every_api_route_is_403_for_a_role_that_may_not(app, client, svc, role):
    token = token_for(svc, role)
    checked = 0
    for endpoint, method, path in api_routes(app):
        response = client.open(path, method=method, json={}, headers=bearer(token))
        if access.allowed(role, ROUTES[endpoint].action):
            assert response.status_code not in (401, 403), (endpoint, response.get_json())
        else:
            assert response.status_code == 403, (endpoint, response.get_json())
            assert response.get_json()["error"]["code"] == "forbidden"
            checked += 1
    assert checked >= 5


def test_operator_reads_calls_and_escalates_but_cannot_touch_incidents(client, svc, admin):
    token = token_for(svc, "operator")
    assert client.get("/api/calls", headers=bearer(token)).status_code == 200
    assert client.get("/api/incidents", headers=bearer(token)).status_code == 200
    declared = client.post("/api/incidents", headers=bearer(token), json={
        "title": "障害", "severity": "major", "announcement": {"ja": "障害です"}})
    assert declared.status_code == 403
    assert svc.redis.keys(keys.incident("*")) == []
    # escalating is allowed: the call is unknown, so 404, not 403
    escalated = client.post("/api/calls/CA" + "0" * 32 + "/escalate", headers=bearer(token),
                            json={"reason": "billing"})
    assert escalated.status_code == 404
    outcome = client.post("/api/calls/CA" + "0" * 32 + "/outcome", headers=bearer(token),
                          json={"result": "resolved"})
    assert outcome.status_code == 403


def test_admin_creates_lists_edits_a_person_and_the_password_never_shows(admin, redis):
    made = admin.post("/api/people", json={"login": "sato", "name": "佐藤花子",
                                          "role": "supervisor", "password": PASSWORD,
                                          "phone": "090-1234-5678"})
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert (body["login"], body["role"], body["phone"], body["active"], body["created_by"]) == (
        "sato", "supervisor", "+819012345678", True, "bootstrap")
    assert "password" not in body and "password_hash" not in body
    listed = admin.get("/api/people").get_json()["people"]
    assert [p["login"] for p in listed] == ["sato"]
    assert PASSWORD not in str(listed)
    changed = admin.patch(f"/api/people/{body['id']}", json={"role": "operator"})
    assert changed.get_json()["role"] == "operator"
    again = admin.post("/api/people", json={"login": "sato", "name": "別人", "role": "operator",
                                           "password": PASSWORD})
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "login"
    assert admin.patch("/api/people/p-nobody", json={"name": "x"}).status_code == 404


def test_bad_person_bodies_name_every_field_and_write_nothing(admin, redis):
    response = admin.post("/api/people", json={"login": "A B", "name": "", "role": "boss",
                                               "password": "short"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert [e["field"] for e in error["errors"]] == ["login", "name", "role", "password"]
    assert error["field"] == "login"
    assert redis.keys(keys.person("*")) == [] and redis.keys(keys.person_login("*")) == []


def test_token_is_shown_once_works_and_revoking_it_stops_it(admin, client, svc, redis):
    made = admin.post("/api/people", json={"login": "ito", "name": "伊藤", "role": "operator",
                                          "password": PASSWORD}).get_json()
    issued = admin.post(f"/api/people/{made['id']}/tokens")
    assert issued.status_code == 201
    token, token_id = issued.get_json()["token"], issued.get_json()["id"]
    assert client.get("/api/calls", headers=bearer(token)).status_code == 200
    listed = admin.get("/api/people").get_json()["people"][0]["tokens"]
    assert [t["id"] for t in listed] == [token_id] and token not in str(listed)
    assert admin.delete(f"/api/tokens/{token_id}").status_code == 204
    assert client.get("/api/calls", headers=bearer(token)).status_code == 401
    assert admin.delete(f"/api/tokens/{token_id}").status_code == 404
    assert admin.post("/api/people/p-nobody/tokens").status_code == 404


def test_deactivating_revokes_tokens_at_once(admin, client):
    made = admin.post("/api/people", json={"login": "ito", "name": "伊藤", "role": "supervisor",
                                          "password": PASSWORD}).get_json()
    token = admin.post(f"/api/people/{made['id']}/tokens").get_json()["token"]
    assert client.get("/api/incidents", headers=bearer(token)).status_code == 200
    assert admin.patch(f"/api/people/{made['id']}", json={"active": False}).status_code == 200
    assert client.get("/api/incidents", headers=bearer(token)).status_code == 401
    assert admin.post(f"/api/people/{made['id']}/tokens").status_code == 404


def test_writes_record_the_person_who_made_them(client, svc, admin):
    token = token_for(svc, "supervisor", "tanaka")
    declared = client.post("/api/incidents", headers=bearer(token), json={
        "title": "障害", "severity": "major", "announcement": {"ja": "障害です"}}).get_json()
    assert declared["declared_by"] == "tanaka"
    assert declared["timeline"][0]["by"] == "tanaka"
    put = client.put("/api/customers", headers=bearer(token),
                     json={"phone": "090-1234-5678", "name": "鈴木"})
    assert put.get_json()["customers"][0]["updated_by"] == "tanaka"
    roster = admin.put("/api/supervisors", json={
        "phone": "090-1111-2222", "name": "伊藤", "skills": ["general"], "level": 3,
        "on_call": True, "order": 1}).get_json()
    assert roster["supervisors"][0]["updated_by"] == "bootstrap"


def test_bad_tokens_from_one_address_get_429_then_the_window_passes(client, svc, clock, redis):
    good = token_for(svc, "operator")
    for i in range(person.SIGNIN_LIMIT_CLIENT):
        assert client.get("/api/calls", headers=bearer(f"ivr_guess{i}")).status_code == 401
    locked = client.get("/api/calls", headers=bearer(good))
    assert locked.status_code == 429
    assert locked.get_json()["error"]["code"] == "too_many_attempts"
    assert locked.headers["Retry-After"] == "900"
    other = client.get("/api/calls", headers=bearer(good),
                       environ_base={"REMOTE_ADDR": "192.0.2.99"})
    assert other.status_code == 200
    ttls = [redis.ttl(k) for k in redis.keys(keys.auth_failures("*", "*", "*"))]
    assert ttls and all(0 < t <= 2 * keys.SIGNIN_WINDOW for t in ttls)
    clock.tick(keys.SIGNIN_WINDOW)  # the next window: the address may try again
    assert client.get("/api/calls", headers=bearer(good)).status_code == 200


def test_the_bootstrap_token_acts_as_bootstrap_admin(client):
    response = client.get("/api/people", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200
