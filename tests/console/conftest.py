"""Console fixtures: people of each role, a test client signed in as one of them, and the
CSRF token a page carries."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
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


class LiveServer:
    """The app on a real local port (werkzeug's threaded WSGI server in a thread), with real
    time: a browser cannot follow a frozen clock. PUBLIC_BASE_URL is its own http URL, so a
    request signed for it passes the Twilio signature check."""

    def __init__(self, config: dict[str, Any]) -> None:
        import threading

        from werkzeug.serving import make_server

        from ivr import create_app
        from ivr.services import build_services

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {**config, "PUBLIC_BASE_URL": self.url}
        self.svc = build_services(self.config)
        self.svc.redis.flushdb()
        self.svc.rq_redis.flushdb()
        self.app = create_app(self.config, services=self.svc)
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.svc.redis.close()
        self.svc.rq_redis.close()


@pytest.fixture
def live_server(redis_server: Any, queue_redis_server: Any, fake_twilio: Any) -> Any:
    from tests.conftest import make_config

    server = LiveServer(make_config(redis_server.url, fake_twilio.url, queue_redis_server.url))
    yield server
    server.stop()


def free_port() -> int:
    from tests.conftest import free_port as port

    return port()


ARTEFACTS = Path(__file__).resolve().parents[2] / "artefacts" / "console"
"""Screenshots of the browser tests (git-ignored)."""


@pytest.fixture(scope="session")
def browser() -> Any:
    """Debian's chromium (on PATH; scripts/test installs it) driven by Playwright. Playwright's
    own browser builds are never downloaded."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not on PATH: run scripts/test, which installs it")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    launched = playwright.chromium.launch(
        executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
    yield launched
    launched.close()
    playwright.stop()


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP")
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()
