"""The live view: calls with tags and wait, the waiting line by band, escalations with
their 5W1H, each incident's fan-out; one snapshot per process a second, however many
consoles ask."""

from __future__ import annotations

import re

from ivr import keys
from tests.api.test_escalate import waiting_caller
from tests.console.test_board import DECLARE, declared_id
from tests.factories import add_customer, put_roster


def panel(console) -> str:
    response = console.get("/console/live/panel")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_panel_shows_waiting_callers_by_band_with_their_tags(sv, svc, twilio_post, clock):
    declared_id(sv.post("/console/incidents", DECLARE))
    sid = waiting_caller(twilio_post, svc)  # a customer of "mail": affected
    clock.tick(42)
    html = panel(sv)
    assert "<html" not in html
    assert re.search(r'data-band="affected">1<', html)
    assert re.search(r'data-band="other">0<', html)
    row = html.split(f'data-call="{sid}"')[1].split("</tr>")[0]
    assert "+81******5678" in row and "9012345678" not in row  # masked
    assert '<span class="tag">affected</span>' in row
    assert "<td>待機中</td>" in row  # the state in the page's language, not "queued"
    assert "<td>42秒</td>" in row


def test_an_escalation_shows_its_state_whom_it_rings_and_the_5w1h(sv, svc, twilio_post, admin,
                                                                  run_jobs):
    put_roster(admin, ("伊藤主任", "+819011110002", "general", 2),
               ("渡辺課長", "+819011110003", "billing", 3))
    sid = waiting_caller(twilio_post, svc)
    response = admin.post(f"/api/calls/{sid}/escalate",
                          json={"reason": "money", "note": "返金額の判断"})
    assert response.status_code == 202, response.get_json()
    html = panel(sv)
    card = html.split(f'data-escalation="{sid}"')[1].split("</article>")[0]
    assert "状態: 発信中" in card and "試行 1" in card and "理由: money" in card
    assert "返金額の判断" in card  # why
    assert "返金してほしい" in card  # what the caller said


def test_states_are_shown_in_the_page_language_and_unknown_ones_as_stored():
    from ivr.console.i18n import state_word

    assert state_word("ja", "queued") == "待機中"
    assert state_word("en", "queued") == "waiting"
    assert state_word("en", "something-new") == "something-new"


def test_the_fan_out_of_the_latest_update_moves_as_messages_go(sv, svc, run_jobs, clock):
    for i in range(3):
        add_customer(svc, f"+8190000001{i:02d}")
        svc.redis.sadd(keys.customers_by_service("mail"), f"+8190000001{i:02d}")
    incident_id = declared_id(sv.post("/console/incidents", DECLARE))
    before = panel(sv).split(f'data-fanout="{incident_id}"')[1].split("</tr>")[0]
    assert 'data-cell="sent">0<' in before
    run_jobs()
    clock.tick(2)  # past the snapshot the consoles share
    after = panel(sv).split(f'data-fanout="{incident_id}"')[1].split("</tr>")[0]
    assert 'data-cell="recipients">3<' in after and 'data-cell="sent">3<' in after
    assert "報告 #0" in after


def update_row(html: str, incident_id: str, seq: int) -> dict[str, str]:
    """The per-update SMS row's cells, by name, plus its visible words."""
    row = html.split(f'data-update-sms="{incident_id}:{seq}"')[1].split("</tr>")[0]
    cells = dict(re.findall(r'data-cell="(\w+)">(\d+)<', row))
    return {**cells, "text": re.sub(r"<[^>]+>", " ", row)}


def test_each_update_shows_its_own_sms_queued_sent_failed_delivered(sv, svc, run_jobs, clock,
                                                                   fake_twilio, twilio_post):
    phones = [f"+8190000001{i:02d}" for i in range(3)]
    for phone in phones:
        add_customer(svc, phone)
        svc.redis.sadd(keys.customers_by_service("mail"), phone)
    incident_id = declared_id(sv.post("/console/incidents", DECLARE))
    run_jobs()
    clock.tick(20 * 60)
    response = sv.post(f"/console/incidents/{incident_id}/updates", {
        "message_ja": "原因を特定しました。", "status": "identified", "eta": ""})
    assert response.status_code == 302, response.get_data(as_text=True)
    fake_twilio.fail_next.append((400, 21211))  # one number refused: failed for update 1
    run_jobs()
    sid = next(s for s, data in ((s, svc.redis.hgetall(keys.sms_message(s)))
                                 for s in fake_twilio_sids(svc)) if data.get("seq") == "1")
    twilio_post("/sms/status", MessageSid=sid, SmsSid=sid, AccountSid="AC" + "0" * 32,
                MessageStatus="delivered", SmsStatus="delivered",
                To=svc.redis.hget(keys.sms_message(sid), "to"), From="+815012345678",
                ApiVersion="2010-04-01")
    clock.tick(2)  # past the snapshot the consoles share
    html = panel(sv)
    first, update = update_row(html, incident_id, 0), update_row(html, incident_id, 1)
    assert {k: first[k] for k in ("queued", "sent", "failed", "delivered")} == {
        "queued": "3", "sent": "3", "failed": "0", "delivered": "0"}
    assert {k: update[k] for k in ("queued", "sent", "failed", "delivered")} == {
        "queued": "3", "sent": "2", "failed": "1", "delivered": "1"}
    assert "報告 #1" in update["text"] and "報告 #0" in first["text"]
    head = html.split("報告ごとのSMS")[1].split("</thead>")[0]
    for word in ("送信予定", "SMS送信", "SMS失敗", "SMS到達"):  # said in words, not colour
        assert word in head


def test_a_halted_update_says_so_in_words_on_its_own_row(sv, svc, run_jobs, clock):
    incident_id = declared_id(sv.post("/console/incidents", DECLARE))
    svc.redis.set(keys.sms_halt(incident_id, 0), "30007")
    clock.tick(2)
    assert "⚠ 停止中" in update_row(panel(sv), incident_id, 0)["text"]


def fake_twilio_sids(svc) -> list[str]:
    prefix = keys.sms_message("")
    return [k.removeprefix(prefix) for k in svc.redis.scan_iter(prefix + "*")]


def test_fifty_consoles_within_a_second_cost_redis_one_snapshot(sv, svc, monkeypatch):
    from ivr import floor

    taken = []
    real = floor.snapshot
    monkeypatch.setattr(floor, "snapshot", lambda s, **kw: taken.append(1) or real(s, **kw))
    for _ in range(50):
        panel(sv)
    assert len(taken) == 1


def test_the_live_page_wires_the_refresh_script_to_the_panel(sv):
    page = sv.get("/console/live").get_data(as_text=True)
    assert 'id="live-panel" data-refresh="/console/live/panel" data-seconds="3"' in page
