"""The signed opt-out link and its page: GET never changes anything, POST opts out."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from ivr import create_app, keys, optout
from ivr.customer import Customer
from ivr.services import build_services
from tests.conftest import ADMIN_TOKEN, AUTH_TOKEN, PUBLIC_BASE_URL, make_config

PHONE = "+819012345678"
MASKED = "+81******5678"
CONFIG = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "IVR_ADMIN_TOKEN": ADMIN_TOKEN,
          "PUBLIC_BASE_URL": PUBLIC_BASE_URL}
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def add_customer(svc: Any, phone: str = PHONE, **fields: Any) -> None:
    data = {"phone": phone, "name": "山田太郎", "language": "ja", "mobile": True, **fields}
    svc.redis.hset(keys.customer(phone), mapping=Customer(**data).to_hash())


class Page(HTMLParser):
    """The parts of the page a test looks at: visible text, forms, links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.forms: list[dict[str, str]] = []
        self.buttons: list[str] = []
        self.links: list[str] = []
        self._in: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in.append(tag)
        if tag == "form":
            self.forms.append({k: v or "" for k, v in attrs})
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if self._in:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] in ("style", "title"):
            return
        if data.strip():
            self.text.append(data.strip())
            if self._in and self._in[-1] == "button":
                self.buttons.append(data.strip())

    @property
    def heading(self) -> str:
        return self.text[1]  # after the language link


def page(response: Any) -> Page:
    assert response.mimetype == "text/html"
    return Page(response.get_data(as_text=True))


def assert_secure(response: Any) -> None:
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp


# --- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", [PHONE, "+81312345678", "+12025550123", "+447911123456",
                                   "+999999999999999", "+1234567"])
def test_a_token_names_its_number(phone):
    token = optout.make_token(CONFIG, phone)
    assert URL_SAFE.match(token)
    assert len(token) <= 26
    assert optout.read_token(CONFIG, token) == phone


def test_a_japanese_mobile_token_is_short():
    token = optout.make_token(CONFIG, PHONE)
    assert len(token) == 23
    assert optout.make_token(CONFIG, PHONE) == token  # stable: the same link in every SMS
    assert optout.make_token(CONFIG, "+819012345679") != token


def test_the_url_is_the_public_base_plus_the_token():
    url = optout.optout_url(CONFIG, PHONE)
    assert url == f"{PUBLIC_BASE_URL}/u/{optout.make_token(CONFIG, PHONE)}"
    assert len(url) <= len(PUBLIC_BASE_URL) + len("/u/") + 26


@pytest.mark.parametrize("changed", ["TWILIO_AUTH_TOKEN", "IVR_ADMIN_TOKEN"])
def test_rotating_either_secret_invalidates_old_links(changed):
    token = optout.make_token(CONFIG, PHONE)
    rotated = {**CONFIG, changed: CONFIG[changed] + "-rotated"}
    assert optout.read_token(rotated, token) is None
    assert optout.read_token(rotated, optout.make_token(rotated, PHONE)) == PHONE


def test_the_two_secrets_are_not_simply_concatenated():
    moved = {**CONFIG, "TWILIO_AUTH_TOKEN": AUTH_TOKEN + ADMIN_TOKEN[:4],
             "IVR_ADMIN_TOKEN": ADMIN_TOKEN[4:]}
    assert optout.read_token(moved, optout.make_token(CONFIG, PHONE)) is None


def test_every_single_character_change_is_refused():
    token = optout.make_token(CONFIG, PHONE)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, original in enumerate(token):
        for replacement in alphabet:
            if replacement != original:
                forged = token[:i] + replacement + token[i + 1:]
                assert optout.read_token(CONFIG, forged) is None, (i, replacement)


def test_a_tag_cannot_be_moved_to_another_number():
    import base64

    def raw(token: str) -> bytes:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

    mine, theirs = raw(optout.make_token(CONFIG, PHONE)), raw(
        optout.make_token(CONFIG, "+819087654321"))
    spliced = base64.urlsafe_b64encode(theirs[:-12] + mine[-12:]).rstrip(b"=").decode()
    assert optout.read_token(CONFIG, spliced) is None


@pytest.mark.parametrize("token", [
    "", "abc", "!" * 23, "a" * 17, "a" * 26, "a" * 27, "a" * 1000, "あ" * 23,
    "AAAAAAAAAAAAAAAAAAAAAAA=", "+/+/+/+/+/+/+/+/+/+/+/+", "x" * 25 + "\n",
])
def test_garbled_or_overlong_tokens_are_refused(token):
    assert optout.read_token(CONFIG, token) is None


def test_a_padded_or_zero_prefixed_spelling_of_a_good_token_is_refused():
    import base64

    token = optout.make_token(CONFIG, PHONE)
    assert optout.read_token(CONFIG, token + "=") is None
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    zero = base64.urlsafe_b64encode(b"\x00" + raw).rstrip(b"=").decode()
    assert optout.read_token(CONFIG, zero) is None


@pytest.mark.parametrize("bad", ["09012345678", "+0123", "819012345678", "+81 90 1234 5678",
                                 "+1234567890123456", ""])
def test_make_token_wants_e164(bad):
    with pytest.raises(ValueError):
        optout.make_token(CONFIG, bad)


# --- the domain functions -------------------------------------------------------------------


def test_opt_out_and_in_say_whether_they_changed_anything(svc, caplog):
    with caplog.at_level(logging.INFO, logger="ivr.optout"):
        assert optout.opt_out(svc, PHONE, "link") is True
        assert optout.opt_out(svc, PHONE, "link") is False
        assert svc.redis.smembers(keys.sms_optout()) == {PHONE}
        assert optout.is_opted_out(svc, PHONE)
        assert optout.opt_in(svc, PHONE, "sms-keyword") is True
        assert optout.opt_in(svc, PHONE, "sms-keyword") is False
    assert svc.redis.smembers(keys.sms_optout()) == set()
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 4
    assert all(MASKED in line and PHONE not in line for line in logged)
    assert "source=link" in logged[0]


# --- the page -------------------------------------------------------------------------------


@pytest.fixture
def token() -> str:
    return optout.make_token(CONFIG, PHONE)


def test_get_shows_the_page_and_changes_nothing(client, svc, token, snapshot):
    add_customer(svc)
    before = snapshot()

    for _ in range(3):  # a link scanner, a preview, the customer
        response = client.get(f"/u/{token}")
        assert response.status_code == 200
        assert_secure(response)
        shown = page(response)
        assert shown.heading == "障害・復旧のお知らせSMSの配信停止"
        assert MASKED in " ".join(shown.text)
        assert PHONE not in response.get_data(as_text=True)
        assert "障害・復旧のお知らせSMS" in " ".join(shown.text)
        assert shown.forms == [{"method": "post", "action": f"/u/{token}?lang=ja"}]
        assert shown.buttons == ["配信を停止する"]

    assert snapshot() == before
    assert not svc.redis.sismember(keys.sms_optout(), PHONE)


def test_head_changes_nothing_either(client, svc, token, snapshot):
    before = snapshot()
    assert client.head(f"/u/{token}").status_code == 200
    assert snapshot() == before


def test_the_button_opts_out_once_and_confirms(client, svc, token, caplog, snapshot):
    with caplog.at_level(logging.INFO):
        first = client.post(f"/u/{token}")
    assert first.status_code == 200
    assert_secure(first)
    assert page(first).heading == "配信を停止しました"
    assert page(first).forms == [{"method": "post", "action": f"/u/{token}/resume?lang=ja"}]
    assert svc.redis.smembers(keys.sms_optout()) == {PHONE}
    assert token not in caplog.text and PHONE not in caplog.text

    before = snapshot()
    again = client.post(f"/u/{token}")
    assert again.status_code == 200
    assert page(again).heading == "配信を停止しました"
    assert snapshot() == before


def test_an_opted_out_number_sees_so_and_can_resume(client, svc, token, snapshot):
    optout.opt_out(svc, PHONE, "sms-keyword")
    before = snapshot()

    shown = page(client.get(f"/u/{token}"))
    assert shown.heading == "配信は停止されています"
    assert shown.forms == [{"method": "post", "action": f"/u/{token}/resume?lang=ja"}]
    assert shown.buttons == ["配信を再開する"]
    assert snapshot() == before

    resumed = client.post(f"/u/{token}/resume")
    assert resumed.status_code == 200
    assert_secure(resumed)
    assert page(resumed).heading == "配信を再開しました"
    assert page(resumed).forms == [{"method": "post", "action": f"/u/{token}?lang=ja"}]
    assert not svc.redis.sismember(keys.sms_optout(), PHONE)


def test_the_page_speaks_the_customers_language(client, svc, token):
    add_customer(svc, language="en")
    shown = page(client.get(f"/u/{token}"))
    assert shown.heading == "Stop incident and recovery SMS updates"
    assert shown.buttons == ["Stop SMS updates"]
    assert shown.forms == [{"method": "post", "action": f"/u/{token}?lang=en"}]
    assert page(client.post(f"/u/{token}?lang=en")).heading == "SMS updates stopped"


def test_the_language_can_be_switched_but_nothing_else_is_reflected(client, svc, token):
    english = page(client.get(f"/u/{token}?lang=en"))
    assert english.heading == "Stop incident and recovery SMS updates"
    assert english.links == [f"/u/{token}?lang=ja"]

    response = client.get(f"/u/{token}?lang=<script>alert(1)</script>")
    assert page(response).heading == "障害・復旧のお知らせSMSの配信停止"
    assert "<script" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", [
    "/u/{forged}", "/u/{forged}/resume", "/u/" + "a" * 2000, "/u/%3Cscript%3E",
    "/u/{token}x", "/u/{token}%00",
])
def test_a_forged_or_garbled_token_gets_404_and_writes_nothing(client, svc, token, path, snapshot):
    forged = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    path = path.format(forged=forged, token=token)
    before = snapshot()

    for method in ("get", "post"):
        if method == "get" and path.endswith("/resume"):
            continue
        response = getattr(client, method)(path)
        assert response.status_code == 404, (method, path)
        assert_secure(response)
        assert page(response).heading == "このリンクは無効です"
        assert "<script" not in response.get_data(as_text=True)

    assert snapshot() == before


@pytest.mark.parametrize(("method", "path"), [
    ("put", "/u/{token}"), ("delete", "/u/{token}"), ("patch", "/u/{token}"),
    ("get", "/u/{token}/resume"), ("put", "/u/{token}/resume"),
])
def test_wrong_methods_get_405_and_write_nothing(client, svc, token, method, path, snapshot):
    before = snapshot()
    response = getattr(client, method)(path.format(token=token))
    assert response.status_code == 405
    assert snapshot() == before


def test_without_redis_the_page_says_try_later(tmp_path, fake_twilio, token, content):
    config = make_config(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    services = build_services(config, **content)
    client = create_app(config, services=services).test_client()
    try:
        for method, path in (("get", f"/u/{token}"), ("post", f"/u/{token}"),
                             ("post", f"/u/{token}/resume")):
            response = getattr(client, method)(path)
            assert response.status_code == 503
            assert_secure(response)
            assert page(response).heading == "ただいまご利用いただけません"
    finally:
        services.redis.close()
        services.rq_redis.close()
