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
    assert "dialing" in card and "試行 1" in card and "理由: money" in card
    assert "返金額の判断" in card  # why
    assert "返金してほしい" in card  # what the caller said


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
