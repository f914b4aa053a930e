"""Authorization on every console route, walked from the URL map: no session -> the
sign-in page; a role without the route's action -> 403; a POST without the session's CSRF
token -> 400. And the headers every console answer carries."""

from __future__ import annotations

from typing import Any

import pytest

from ivr import access
from ivr.console import ACTIONS, PUBLIC, SIGNED_IN

SAMPLE = {"incident_id": "INC-20261123-0001", "choice": "en", "filename": "console.css",
          "call_sid": "CA" + "0" * 32, "person_id": "p-0000000000000000", "token_id": "t-0"}


def console_routes(app: Any) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every console route, with sample values filled in."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console."):
            continue
        path = rule.build({name: SAMPLE[name] for name in rule.arguments})[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, path))
    return out


def test_every_console_route_is_in_the_access_table(app):
    endpoints = {endpoint for endpoint, _, _ in console_routes(app)}
    assert endpoints - PUBLIC - SIGNED_IN == set(ACTIONS), "a route has no action"
    assert set(ACTIONS.values()) <= access.ACTIONS, "an action no role can be granted"
    assert len(endpoints) >= 12


def test_without_a_session_every_route_sends_to_the_sign_in_page(app, client, svc):
    checked = 0
    for endpoint, method, path in console_routes(app):
        if endpoint in PUBLIC:
            continue
        response = client.open(path, method=method)
        assert response.status_code == 302, (endpoint, method)
        assert response.location.startswith("/console/signin?next="), (endpoint, method)
        checked += 1
    assert checked >= 10


def test_an_operator_gets_403_on_every_supervisor_form(app, op, svc):
    refused = 0
    for endpoint, method, path in console_routes(app):
        action = ACTIONS.get(endpoint)
        if action is None or access.allowed("operator", action):
            continue
        response = op.client.open(path, method=method, data={"csrf_token": op.token})
        assert response.status_code == 403, (endpoint, method)
        assert "権限がありません" in response.get_data(as_text=True)
        refused += 1
    assert refused >= 6


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_sessions_csrf_token_is_400_and_writes_nothing(app, console_as, svc,
                                                                          token):
    sv = console_as("admin")  # may use every form
    for endpoint, method, path in console_routes(app):
        if method != "POST" or endpoint == "console.signin":
            continue
        data = {} if token is None else {"csrf_token": token}
        data |= {"title": "x", "severity": "major", "announcement_ja": "y"}
        response = sv.client.post(path, data=data)
        assert response.status_code == 400, (endpoint, token)
    assert svc.redis.zcard("{ivr}:incidents:all") == 0
    assert sv.get("/console/").status_code == 200  # still signed in: signout refused too


def test_the_sign_in_form_needs_its_csrf_token(client, people):
    response = client.post("/console/signin", data={"login": "sato", "password": "x"})
    assert response.status_code == 400


def test_an_operator_sees_the_live_view_and_the_board_without_forms(op, svc):
    assert op.get("/console/live").status_code == 200
    page = op.get("/console/").get_data(as_text=True)
    assert 'id="declare-form"' not in page


@pytest.mark.parametrize("path", ["/console/signin", "/console/", "/console/live",
                                  "/console/static/console.js", "/console/nowhere-signed-in"])
def test_security_headers_on_every_console_answer(sv, path):
    response = sv.get(path)
    response.close()  # a static file is streamed from an open file
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_no_page_has_inline_script_or_a_foreign_asset(sv):
    for path in ("/console/", "/console/live", "/console/signin"):
        html = sv.get(path).get_data(as_text=True)
        assert "<script>" not in html and " on" + "click=" not in html
        assert "http://" not in html.replace("http://www.w3.org", "")
        assert 'src="/console/static/console.js"' in html
