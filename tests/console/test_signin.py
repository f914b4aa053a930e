"""Signing in and out of the console: one message for every failure, the rate limit, the
session cookie's flags, and sessions ending when the person is deactivated."""

from __future__ import annotations

from ivr import person
from tests.console.conftest import PASSWORD, Console

FAILED = "ログインIDまたはパスワードが正しくありません。"


def test_a_wrong_password_and_an_unknown_login_get_the_same_answer(client, people):
    console = Console(client)
    wrong_password = console.sign_in("sato", "not the password")
    unknown = console.sign_in("nobody", PASSWORD)
    assert wrong_password.status_code == unknown.status_code == 401
    assert FAILED in wrong_password.get_data(as_text=True)
    assert FAILED in unknown.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_signing_in_opens_the_page_asked_for_with_a_safe_session_cookie(client, people):
    first = client.get("/console/live")
    assert first.location == "/console/signin?next=/console/live"
    console = Console(client)
    page = client.get(first.location)
    console.token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/console/signin", data={
        "login": "sato", "password": PASSWORD, "csrf_token": console.token,
        "next": "/console/live"})
    assert response.status_code == 302 and response.location == "/console/live"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # PUBLIC_BASE_URL of the tests is https
    assert client.get("/console/live").status_code == 200


def test_next_never_leaves_the_console(client, people):
    console = Console(client)
    client.get("/console/signin")
    for target in ("https://evil.example/", "//evil.example/console/", "/api/incidents"):
        page = client.get("/console/signin").get_data(as_text=True)
        console.token = page.split('name="csrf_token" value="')[1].split('"')[0]
        response = client.post("/console/signin", data={
            "login": "sato", "password": PASSWORD, "csrf_token": console.token,
            "next": target})
        assert response.location == "/console/", target


def test_after_repeated_failures_even_the_right_password_is_refused_the_same_way(client,
                                                                                  people):
    console = Console(client)
    for _ in range(person.SIGNIN_LIMIT_LOGIN):
        assert console.sign_in("sato", "wrong").status_code == 401
    locked = console.sign_in("sato", PASSWORD)
    assert locked.status_code == 401
    assert FAILED in locked.get_data(as_text=True)
    assert Console(client).sign_in("suzuki").status_code == 302  # another login still can


def test_sign_out_ends_the_session(sv):
    assert sv.get("/console/").status_code == 200
    response = sv.post("/console/signout")
    assert response.status_code == 302 and response.location == "/console/signin"
    assert sv.get("/console/").status_code == 302


def test_deactivating_a_person_ends_their_session_at_once(sv, svc, people):
    assert sv.get("/console/").status_code == 200
    person.update(svc, people["supervisor"].id, {"active": False}, by="kanri")
    assert sv.get("/console/").status_code == 302


def test_the_language_switch_keeps_english_across_pages_and_sign_in(client, people):
    page = client.get("/console/language/en?next=/console/signin", follow_redirects=True)
    assert 'lang="en"' in page.get_data(as_text=True)
    console = Console(client)
    assert console.sign_in("sato").status_code == 302
    board = client.get("/console/").get_data(as_text=True)
    assert "Declare an incident" in board and "インシデントを宣言" not in board
    ja = client.get("/console/language/ja?next=/console/", follow_redirects=True)
    assert "インシデントを宣言" in ja.get_data(as_text=True)
