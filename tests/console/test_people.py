"""People and tokens in the console (admin only): add, change role, deactivate, issue a token
shown once, revoke it; the same schemas and person.* calls as /api/people."""

from __future__ import annotations

import re

from ivr import person


def test_an_admin_adds_a_person_who_can_then_sign_in(console_as, app, svc):
    from tests.console.conftest import Console

    boss = console_as("admin")
    response = boss.post("/console/people", {"login": "tanaka", "name": "田中",
                                             "role": "operator",
                                             "password": "とても長い合言葉です12"})
    assert response.status_code == 302, response.get_data(as_text=True)
    made = person.by_login(svc, "tanaka")
    assert made is not None and made.role == "operator" and made.created_by == "kanri"
    assert Console(app.test_client()).sign_in("tanaka", "とても長い合言葉です12").status_code == 302


def test_every_bad_field_of_a_new_person_is_named_and_the_password_not_echoed(console_as, svc):
    boss = console_as("admin")
    response = boss.post("/console/people", {"login": "A B", "name": "", "role": "boss",
                                             "password": "short"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    for field in ("login", "name", "role", "password"):
        assert f'id="err-{field}"' in page, field
    assert 'value="short"' not in page
    assert person.by_login(svc, "a b") is None


def test_a_taken_login_is_named_beside_the_field(console_as):
    boss = console_as("admin")
    response = boss.post("/console/people", {"login": "sato", "name": "別の佐藤",
                                             "role": "operator",
                                             "password": "とても長い合言葉です12"})
    assert response.status_code == 400
    assert 'id="err-login"' in response.get_data(as_text=True)


def test_deactivating_ends_the_persons_console_session(console_as, people):
    operator = console_as("operator")
    boss = console_as("admin")
    assert operator.get("/console/live").status_code == 200
    response = boss.post(f"/console/people/{people['operator'].id}", {"role": "operator"})
    assert response.status_code == 302
    assert operator.get("/console/live").status_code == 302  # signed out


def test_a_token_is_shown_once_and_works_until_revoked(console_as, client, people, svc):
    boss = console_as("admin")
    response = boss.post(f"/console/people/{people['supervisor'].id}/tokens")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    token = re.search(r'id="token-value" readonly value="([^"]+)"', page).group(1)
    token_id = person.tokens_of(svc, people["supervisor"].id)[0]["id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/incidents", headers=headers).status_code == 200
    assert token not in boss.get("/console/people").get_data(as_text=True)  # once
    assert boss.post(f"/console/tokens/{token_id}/revoke").status_code == 302
    assert client.get("/api/incidents", headers=headers).status_code == 401


def test_a_supervisor_may_not_open_the_people_page(sv):
    assert sv.get("/console/people").status_code == 403
