"""The incident page: editing through the API's parser, hearing the change on the
caller's path, the preview that saves nothing, updates, resolution and the timeline."""

from __future__ import annotations

import json

import pytest

from ivr import keys
from tests.conftest import parse_twiml
from tests.console.test_board import DECLARE, declared_id
from tests.factories import add_customer, new_sid, says

CALLER = "+819012345678"


@pytest.fixture
def incident_id(sv) -> str:
    return declared_id(sv.post("/console/incidents", DECLARE))


def edit_form(sv, incident_id: str) -> dict[str, str]:
    """The edit form's current values, as the page fills them in."""
    import re

    page = sv.get(f"/console/incidents/{incident_id}").get_data(as_text=True)
    form = page.split('id="edit-form"')[1].split("</form>")[0]
    values = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    values |= {name: text for name, text in
               re.findall(r'name="(\w+)" rows="\d+"[^>]*>([^<]*)</textarea>', form)}
    values |= dict(re.findall(r'name="(\w+)"[^>]*>\s*(?:<option[^>]*>[^<]*</option>\s*)*?'
                              r'<option value="(\w+)" selected', form))
    values.pop("csrf_token", None)
    return values


def test_the_page_shows_the_incident_and_its_timeline(sv, incident_id):
    page = sv.get(f"/console/incidents/{incident_id}").get_data(as_text=True)
    assert "メール障害" in page and 'data-status="investigating"' in page
    assert '<tr data-kind="declared">' in page and "<td>sato</td>" in page


def test_an_edited_announcement_is_what_the_next_caller_hears(sv, svc, incident_id,
                                                              twilio_post):
    form = edit_form(sv, incident_id)
    assert form["severity"] == "major" and form["scope_services"] == "mail"
    new_text = "メールの送受信に遅れが出ております。"
    response = sv.post(f"/console/incidents/{incident_id}/edit",
                       {**form, "announcement_ja": new_text})
    assert response.status_code == 302, response.get_data(as_text=True)
    last = json.loads(svc.redis.lindex(keys.incident_timeline(incident_id), -1))
    assert last["kind"] == "edited" and last["by"] == "sato"
    assert last["fields"] == ["announcement"]  # only what changed
    add_customer(svc, CALLER)
    root = parse_twiml(twilio_post("/voice/incoming", CallSid=new_sid(), From=CALLER))
    assert any(new_text in text for text in says(root))


def test_the_preview_shows_the_edit_and_saves_nothing(sv, svc, incident_id):
    before = svc.redis.get(keys.incident(incident_id))
    form = edit_form(sv, incident_id)
    response = sv.post(f"/console/incidents/{incident_id}/preview",
                       {**form, "announcement_en": "Mail is delayed.", "eta": "2026-11-23T13:30"},
                       headers={"X-Requested-With": "fetch"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    en = html.split('data-heard="en"')[1].split("</figure>")[0]
    assert "Mail is delayed." in en
    ja = html.split('data-heard="ja"')[1].split("</figure>")[0]
    assert "復旧は13時30分ごろを見込んでおります。" in ja
    assert svc.redis.get(keys.incident(incident_id)) == before


def test_a_bad_edit_is_400_beside_the_field_and_writes_nothing(sv, svc, incident_id):
    before = svc.redis.get(keys.incident(incident_id))
    form = edit_form(sv, incident_id)
    response = sv.post(f"/console/incidents/{incident_id}/edit", {**form, "eta": "tomorrow"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="err-eta"' in page and "「復旧見込み」を確認してください" in page
    assert svc.redis.get(keys.incident(incident_id)) == before


def test_posting_an_update_queues_its_sms_and_restarts_the_clock(sv, svc, incident_id, clock):
    clock.tick(20 * 60)
    response = sv.post(f"/console/incidents/{incident_id}/updates", {
        "message_ja": "原因を特定しました。", "status": "identified", "eta": ""})
    assert response.status_code == 302, response.get_data(as_text=True)
    doc = json.loads(svc.redis.get(keys.incident(incident_id)))
    assert doc["status"] == "identified" and doc["update_seq"] == 1
    assert doc["next_update_at"] == "2026-11-23T02:20:00Z"
    assert svc.sms_queue.fetch_job(f"fanout-{incident_id}-1") is not None
    last = json.loads(svc.redis.lindex(keys.incident_timeline(incident_id), -1))
    assert last["kind"] == "update" and last["by"] == "sato"


def test_an_update_without_a_message_is_400_and_writes_nothing(sv, svc, incident_id):
    response = sv.post(f"/console/incidents/{incident_id}/updates",
                       {"message_ja": " ", "status": "identified"})
    assert response.status_code == 400
    assert "⚠" in response.get_data(as_text=True).split('id="update-form"')[1]
    assert json.loads(svc.redis.get(keys.incident(incident_id)))["update_seq"] == 0


def test_resolving_sends_the_closing_message_and_closes_the_forms(sv, svc, incident_id):
    response = sv.post(f"/console/incidents/{incident_id}/resolve",
                       {"message_ja": "復旧いたしました。", "message_en": "Restored."})
    assert response.status_code == 302
    doc = json.loads(svc.redis.get(keys.incident(incident_id)))
    assert doc["status"] == "resolved"
    assert svc.sms_queue.fetch_job(f"fanout-{incident_id}-1") is not None
    page = sv.get(f"/console/incidents/{incident_id}").get_data(as_text=True)
    assert 'id="edit-form"' not in page and 'id="resolve-form"' not in page
    again = sv.post(f"/console/incidents/{incident_id}/resolve", {"message_ja": "再度"})
    assert again.status_code == 409  # a second tab's form: already resolved, said so
    assert "already resolved" in again.get_data(as_text=True)


def test_an_unknown_incident_is_a_404_page(sv):
    response = sv.get("/console/incidents/INC-20261123-9999")
    assert response.status_code == 404
    assert "見つかりません。" in response.get_data(as_text=True)
