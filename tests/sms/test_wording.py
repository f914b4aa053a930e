"""What the SMS say: the first report follows the incident's status, and the next update
carries its date when it falls on another day (in IVR_TIMEZONE) than the message goes out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import add_customer, declare

JA, EN = "+819012340001", "+819012340002"
STATUS_LINES = {
    "investigating": ("原因と影響範囲は現在確認中です。",
                      "We are still confirming the cause and scope."),
    "identified": ("原因を特定し、復旧に向けて対応しております。",
                   "We have found the cause and are working to restore service."),
    "monitoring": ("復旧作業を終え、現在状況を確認しております。",
                   "A fix is in place and we are monitoring the service."),
}


@pytest.fixture
def both(svc: Any) -> None:
    add_customer(svc, JA)
    add_customer(svc, EN, language="en")


def texts(fake_twilio: Any, phone: str) -> list[list[str]]:
    return [m["body"].split("\n") for m in fake_twilio.messages if m["to"] == phone]


@pytest.mark.parametrize("status", sorted(STATUS_LINES))
def test_the_first_report_says_what_the_status_says(admin, both, fake_twilio, run_jobs, clock,
                                                     status):
    declare(admin, scope={"numbers": [JA, EN]}, status=status)
    run_jobs()

    (ja,), (en,) = texts(fake_twilio, JA), texts(fake_twilio, EN)
    said_ja, said_en = STATUS_LINES[status]
    assert said_ja in ja and said_en in en
    for other_ja, other_en in (v for k, v in STATUS_LINES.items() if k != status):
        assert other_ja not in ja and other_en not in en


def test_a_next_update_on_the_same_day_gives_only_the_time(admin, both, fake_twilio, run_jobs,
                                                           clock):
    declare(admin, scope={"numbers": [JA, EN]})  # 10:00 in Tokyo, major: next at 11:00
    run_jobs()

    assert "次回のお知らせ: 11時00分ごろ" in texts(fake_twilio, JA)[0]
    assert "Next update: about 11:00 AM" in texts(fake_twilio, EN)[0]


def test_a_next_update_on_another_day_gives_its_date(admin, both, fake_twilio, run_jobs, clock):
    clock.move_to("2026-11-23T14:30:00Z")  # 23:30 in Tokyo; the update falls due after 0:00
    inc = declare(admin, scope={"numbers": [JA, EN]}, severity="critical")
    run_jobs()

    assert inc["next_update_at"] == "2026-11-23T15:00:00Z"  # 0:00 on the 24th in Tokyo
    assert "次回のお知らせ: 11月24日0時00分ごろ" in texts(fake_twilio, JA)[0]
    assert "Next update: about Nov 24, 12:00 AM" in texts(fake_twilio, EN)[0]


def test_an_update_held_overnight_counts_the_day_it_goes_out(
        admin, both, fake_twilio, run_jobs, clock, release_due_jobs):
    """Posted at 22:00, held to 08:00 the next morning, next due 09:00: that morning's
    message says 9時, not the date, because it goes out on the same day."""
    inc = declare(admin, scope={"numbers": [JA, EN]})
    run_jobs()
    clock.move_to("2026-11-23T13:00:00Z")  # 22:00 in Tokyo: quiet hours
    response = admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "続報です。"})
    assert response.get_json()["incident"]["next_update_at"] == "2026-11-24T00:00:00Z"
    clock.move_to("2026-11-23T23:00:00Z")  # 08:00 on the 24th
    release_due_jobs()
    run_jobs()

    assert "次回のお知らせ: 9時00分ごろ" in texts(fake_twilio, JA)[-1]
    assert "Next update: about 9:00 AM" in texts(fake_twilio, EN)[-1]
