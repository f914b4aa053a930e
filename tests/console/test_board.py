"""The incident board: active incidents with counters and the next update, the declare form
through the API's own parser, its errors beside the fields, and the preview."""

from __future__ import annotations

import json
import re

from ivr import incident, keys
from tests.factories import add_customer

DECLARE = {
    "title": "メール障害", "severity": "major", "status": "investigating", "audience": "",
    "announcement_ja": "現在、メールサービスがご利用いただけない状況です。",
    "announcement_en": "Our mail service is currently unavailable.",
    "eta": "", "scope_services": "mail", "scope_regions": "", "scope_numbers": "",
    "notify": "on",
}


def declared_id(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    incident_id = response.location.removeprefix("/console/incidents/")
    assert incident.ID_PATTERN.match(incident_id), response.location
    return incident_id


def test_declaring_from_the_form_does_what_the_api_does_and_names_the_person(sv, svc):
    incident_id = declared_id(sv.post("/console/incidents", DECLARE))
    doc = json.loads(svc.redis.get(keys.incident(incident_id)))
    assert doc["title"] == "メール障害" and doc["severity"] == "major"
    assert doc["scope"]["services"] == ["mail"] and doc["audience"] == "affected"
    assert doc["announcement"]["en"] == "Our mail service is currently unavailable."
    assert doc["declared_by"] == "sato"
    assert doc["next_update_at"] == "2026-11-23T02:00:00Z"  # major: every 60 minutes
    first = json.loads(svc.redis.lindex(keys.incident_timeline(incident_id), 0))
    assert first["kind"] == "declared" and first["by"] == "sato"
    assert svc.sms_queue.fetch_job(f"fanout-{incident_id}-0") is not None  # first report
    page = sv.get(f"/console/incidents/{incident_id}").get_data(as_text=True)
    assert "インシデントを宣言しました。" in page


def test_the_board_shows_active_incidents_with_counters_and_the_next_update(sv, svc, clock):
    incident_id = declared_id(sv.post("/console/incidents", DECLARE))
    svc.redis.hset(keys.incident_counters(incident_id), mapping={"calls": 12, "sms_failed": 3})
    clock.tick(15 * 60)
    page = sv.get("/console/").get_data(as_text=True)
    assert incident_id in page
    assert re.search(r'data-counter="calls">12<', page)
    assert re.search(r'data-counter="sms_failed">3<', page)
    assert "11:00 (あと45分)" in page  # due 11:00 Tokyo, 45 minutes from 10:15
    assert "●● 重大" in page  # severity in symbols and words, not colour alone


def test_resolved_incidents_are_listed_below(sv, svc):
    incident_id = declared_id(sv.post("/console/incidents", DECLARE))
    assert sv.post(f"/console/incidents/{incident_id}/resolve",
                   {"message_ja": "復旧しました。"}).status_code == 302
    page = sv.get("/console/").get_data(as_text=True)
    active, resolved = page.split('id="resolved-h"')
    assert incident_id not in active.split('id="declare-h"')[0]
    assert incident_id in resolved


def test_a_bad_declaration_is_400_with_the_error_beside_the_field_and_nothing_written(sv, svc):
    response = sv.post("/console/incidents", {**DECLARE, "title": ""})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="declare-title" name="title" value="" required aria-invalid="true"' in page
    assert 'id="err-title"' in page and "「タイトル」を確認してください" in page
    assert 'メールサービスがご利用いただけない状況です。</textarea>' in page  # kept
    assert svc.redis.zcard(keys.incidents_all()) == 0


def test_a_bad_number_in_scope_is_named_in_english_too(sv, svc):
    sv.get("/console/language/en?next=/console/")
    response = sv.post("/console/incidents", {**DECLARE, "scope_numbers": "+81901234\nabc"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="err-scope_numbers"' in page and 'Check “Numbers (one a line)”' in page
    assert svc.redis.zcard(keys.incidents_all()) == 0


def test_the_preview_shows_what_callers_hear_and_the_sms_cost_before_declaring(sv, svc):
    for i in range(3):
        add_customer(svc, f"+8190000000{i:02d}")
        svc.redis.sadd(keys.customers_by_service("mail"), f"+8190000000{i:02d}")
    response = sv.post("/console/incidents/preview", DECLARE,
                       headers={"X-Requested-With": "fetch"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" not in html  # a fragment for the page's script
    ja = html.split('data-heard="ja"')[1].split("</figure>")[0]
    assert "お電話ありがとうございます。サポート窓口でございます。" in ja
    assert "現在、メールサービスがご利用いただけない状況です。" in ja
    assert "復旧の見込みにつきましては、現在確認中です。" in ja
    assert "次回のお知らせは11時00分ごろを予定しております。" in ja
    row = html.split('data-sms="declared-ja"')[1].split("</tr>")[0]
    assert "UCS-2" in row
    segments, recipients, units = re.findall(r"<td>(\d+)", row)[-3:]
    assert int(recipients) == 3 and int(units) == int(segments) * 3
    assert svc.redis.zcard(keys.incidents_all()) == 0  # nothing declared


def test_the_preview_without_script_is_a_whole_page(sv, svc):
    response = sv.post("/console/incidents/preview", DECLARE)
    assert response.status_code == 200 and "<html" in response.get_data(as_text=True)


def test_every_bad_field_is_named_at_once_as_the_api_does(sv, svc):
    response = sv.post("/console/incidents", {**DECLARE, "title": "", "severity": ""})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    for field in ("title", "severity"):
        assert f'id="err-{field}"' in page, field
    assert svc.redis.zcard(keys.incidents_all()) == 0
