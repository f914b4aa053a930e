"""A supervisor's shift in a real browser (Playwright driving Debian's chromium): sign in,
declare, edit the announcement and hear it on a signed /voice/incoming, post an update and
watch its fan-out move on the live view without reloading, resolve; screenshots of the
main pages in both languages under artefacts/console/."""

from __future__ import annotations

import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from ivr import keys, person
from tests import twiml
from tests.conftest import forget_worker_services, sign
from tests.console.conftest import ARTEFACTS, PASSWORD
from tests.factories import add_customer, new_sid

pytestmark = pytest.mark.slow
CUSTOMERS = [f"+8190000002{i:02d}" for i in range(3)]
NEW_TEXT = "メールの送受信に遅れが出ております。順次復旧しております。"


def shot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def voice_incoming(server: Any, caller: str) -> list[str]:
    """POST /voice/incoming signed as Twilio signs it; the <Say> texts of the answer."""
    form = {"CallSid": new_sid(), "From": caller, "To": "+815012345678"}
    request = urllib.request.Request(
        server.url + "/voice/incoming", data=urllib.parse.urlencode(form).encode(),
        headers={"X-Twilio-Signature": sign(server.url + "/voice/incoming", form)})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers.get_content_type() == "text/xml"
        body = answer.read()
    twiml.validate(body)  # against Twilio's own schema
    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter("Say")]


def run_worker(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `rq worker` would do now: every queued job, in-process, configured from the
    environment like production, against the same Redis and fake Twilio."""
    from rq import SimpleWorker

    for name, value in server.config.items():
        if name.isupper():
            monkeypatch.setenv(name, str(value))
    forget_worker_services()
    svc = server.svc
    SimpleWorker([svc.queue, svc.sms_queue], connection=svc.rq_redis).work(burst=True)
    forget_worker_services()


def test_a_supervisors_shift_in_the_browser(live_server, page, monkeypatch):
    from playwright.sync_api import expect

    svc = live_server.svc
    person.create(svc, login="sato", name="佐藤", role="supervisor", password=PASSWORD,
                  by="bootstrap")
    for phone in CUSTOMERS:
        add_customer(svc, phone)
        svc.redis.sadd(keys.customers_by_service("mail"), phone)

    # Sign in: an unsigned visit lands on the form, which returns to the page asked for.
    page.goto(live_server.url + "/console/")
    expect(page.get_by_role("heading", name="サインイン")).to_be_visible()
    shot(page, "signin-ja")
    page.get_by_label("ログインID").fill("sato")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="サインイン").click()
    expect(page.get_by_role("heading", name="インシデント一覧")).to_be_visible()

    # Declare, with the preview beside the form before anything is saved.
    form = page.locator("#declare-form")
    form.get_by_label("タイトル").fill("メール障害")
    form.get_by_label("重大度").select_option("critical")
    form.get_by_label("アナウンス（日本語）").fill("現在、メールがご利用いただけません。")
    form.get_by_label("対象サービス（空白区切り）").fill("mail")
    expect(page.locator("#declare-preview [data-heard=ja]")).to_contain_text(
        "現在、メールがご利用いただけません。")
    expect(page.locator('#declare-preview [data-sms="declared-ja"]')).to_contain_text("UCS-2")
    shot(page, "board-declare-preview-ja")
    form.get_by_role("button", name="インシデントを宣言").click()
    expect(page.get_by_text("インシデントを宣言しました。")).to_be_visible()
    incident_url = page.url
    assert "/console/incidents/INC-" in incident_url

    # Edit the announcement: the preview shows it first, then a caller hears it.
    edit = page.locator("#edit-form")
    edit.get_by_label("アナウンス（日本語）").fill(NEW_TEXT)
    expect(page.locator("#edit-preview [data-heard=ja]")).to_contain_text(NEW_TEXT)
    assert not any(NEW_TEXT in s for s in voice_incoming(live_server, CUSTOMERS[0]))
    edit.get_by_role("button", name="保存").click()
    expect(page.get_by_text("保存しました。")).to_be_visible()
    assert any(NEW_TEXT in s for s in voice_incoming(live_server, CUSTOMERS[1]))
    shot(page, "incident-ja")

    # Post an update, then watch its fan-out on the live view as the worker sends it.
    update = page.locator("#update-form")
    update.get_by_label("報告（日本語）").fill("原因を特定し、復旧作業を進めております。")
    update.get_by_role("button", name="経過報告を送信").click()
    expect(page.get_by_text("経過報告を送信しました。")).to_be_visible()
    page.get_by_role("link", name="ライブビュー").click()
    row = page.locator("[data-fanout]")
    expect(row).to_contain_text("報告 #1")
    expect(row.locator('[data-cell="sent"]')).to_have_text("0")
    run_worker(live_server, monkeypatch)  # first report and update: 3 + 3 messages
    expect(row.locator('[data-cell="sent"]')).to_have_text("6", timeout=15_000)
    expect(row.locator('[data-cell="recipients"]')).to_have_text("3")
    shot(page, "live-ja")

    # Resolve.
    page.goto(incident_url)
    resolve = page.locator("#resolve-form")
    resolve.get_by_label("終了のお知らせ（日本語）").fill("復旧いたしました。")
    resolve.get_by_role("button", name="解決として終了").click()
    expect(page.get_by_text("解決として終了しました。")).to_be_visible()
    expect(page.locator("[data-status]")).to_have_text("解決")
    assert svc.redis.hlen(keys.incidents_active()) == 0

    # The main pages in English, and the board at a phone's width.
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    shot(page, "incident-en")
    for path, name in (("/console/", "board"), ("/console/live", "live")):
        page.goto(live_server.url + path)
        shot(page, f"{name}-en")
    page.set_viewport_size({"width": 360, "height": 800})
    page.get_by_role("link", name="日本語").click()
    shot(page, "live-ja-360")
    page.goto(live_server.url + "/console/")
    shot(page, "board-ja-360")
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 360, "the board scrolls sideways on a phone"
    page.get_by_role("button", name="サインアウト").click()
    expect(page.get_by_role("heading", name="サインイン")).to_be_visible()


def test_every_main_page_in_both_languages(live_server, page):
    """An admin sees every page; each is captured in Japanese and English, and none has a
    field without its label."""
    from playwright.sync_api import expect

    person.create(live_server.svc, login="kanri", name="管理者", role="admin",
                  password=PASSWORD, by="bootstrap")
    page.goto(live_server.url + "/console/signin")
    page.get_by_label("ログインID").fill("kanri")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="サインイン").click()
    expect(page.get_by_role("heading", name="インシデント一覧")).to_be_visible()
    pages = ("/console/", "/console/live", "/console/supervisors", "/console/customers",
             "/console/people", "/console/me")
    for lang, switch in (("ja", "日本語"), ("en", "English")):
        page.goto(live_server.url + "/console/")
        if lang == "en":
            page.get_by_role("link", name=switch).click()
        for path in pages:
            page.goto(live_server.url + path)
            assert page.evaluate("document.documentElement.lang") == lang
            unlabelled = page.evaluate("""() => [...document.querySelectorAll(
                'input:not([type=hidden]), select, textarea')].filter(
                el => !el.labels || el.labels.length === 0).map(el => el.name)""")
            assert unlabelled == [], (path, unlabelled)
            name = path.strip("/").replace("console", "").strip("/") or "board"
            shot(page, f"page-{name}-{lang}")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # English is kept
    shot(page, "signin-en")
