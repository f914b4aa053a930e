"""Console fixtures: people of each role, a test client signed in as one of them, and the
CSRF token a page carries."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ivr import person

PASSWORD = "correct horse battery staple"
ROLES = ("admin", "supervisor", "operator")
LOGINS = {"admin": "kanri", "supervisor": "sato", "operator": "suzuki"}
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def people(svc: Any) -> dict[str, person.Person]:
    """One active person per role: admin `kanri`, supervisor `sato`, operator `suzuki`."""
    return {role: person.create(svc, login=LOGINS[role], name=LOGINS[role], role=role,
                                password=PASSWORD, by="bootstrap") for role in ROLES}


def csrf_of(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


class Console:
    """A Flask test client signed in through the real sign-in form."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.token = ""

    def sign_in(self, login: str, password: str = PASSWORD) -> Any:
        page = self.client.get("/console/signin")
        self.token = csrf_of(page.get_data(as_text=True))
        response = self.client.post("/console/signin", data={
            "login": login, "password": password, "csrf_token": self.token})
        if response.status_code == 302:  # a new session: its own CSRF token
            self.token = csrf_of(self.client.get("/console/").get_data(as_text=True))
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)


@pytest.fixture
def console_as(app: Any, people: dict[str, person.Person]) -> Any:
    """console_as("supervisor") -> a Console signed in with that role."""

    def make(role: str) -> Console:
        console = Console(app.test_client())
        response = console.sign_in(LOGINS[role])
        assert response.status_code == 302, response.get_data(as_text=True)
        return console

    return make


@pytest.fixture
def sv(console_as: Any) -> Console:
    return console_as("supervisor")


@pytest.fixture
def op(console_as: Any) -> Console:
    return console_as("operator")
