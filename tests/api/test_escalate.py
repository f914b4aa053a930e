"""Operator-initiated escalation over the API, and the outcome fed back to the operator."""

from __future__ import annotations

import json

import pytest

from ivr import keys
from tests.conftest import PUBLIC_BASE_URL, parse_twiml
from tests.factories import add_customer, new_sid, put_roster, verbs

CALLER = "+819012345678"
BILLING = "+819011110003"
GENERAL = "+819011110002"


@pytest.fixture
def roster(admin) -> None:
    put_roster(admin, ("伊藤主任", GENERAL, "general", 2), ("渡辺課長", BILLING, "billing", 3))


def waiting_caller(twilio_post, svc) -> str:
    add_customer(svc, CALLER)
    sid = new_sid()
    twilio_post("/voice/incoming", CallSid=sid, From=CALLER)
    twilio_post("/voice/gather", CallSid=sid, SpeechResult="返金してほしい")
    return sid


def caller_with_operator(twilio_post, svc) -> str:
    sid = waiting_caller(twilio_post, svc)
    twilio_post("/voice/agent-line", CallSid=new_sid(), From="+81312345678")
    twilio_post("/voice/connecting?join=1", CallSid=sid)
    assert svc.redis.hget(keys.call(sid), "state") == "connected"
    return sid


def test_sv_is_added_to_the_operators_room_with_the_note(admin, roster, twilio_post, svc,
                                                        fake_twilio, run_jobs):
    sid = caller_with_operator(twilio_post, svc)
    run_jobs()
    fake_twilio.reset()
    response = admin.post(f"/api/calls/{sid}/escalate",
                          json={"reason": "money", "note": "返金額の判断をお願いします"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["escalation"]["state"] == "dialing"
    assert body["escalation"]["raised_by"] == "bootstrap"
    assert body["escalation"]["reason"] == "money"
    assert body["context"]["why"] == {"trigger": "operator", "reason": "money",
                                      "note": "返金額の判断をお願いします"}
    run_jobs()
    legs = fake_twilio.calls_created()
    assert [leg.one("To") for leg in legs] == [BILLING]
    assert fake_twilio.calls_updated() == []  # the caller stays where they are

    whisper = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0"))
    text = whisper[0].find("Say").text
    assert "返金や料金に関するご相談です。" in text
    assert "オペレーターからのメモです。返金額の判断をお願いします" in text
    joined = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="1"))
    conf = joined[1].find("Conference")
    assert conf.text == sid
    assert conf.attrib["endConferenceOnExit"] == "false"  # the operator stays in the room


def test_a_waiting_caller_is_moved_into_a_conference_first(admin, roster, twilio_post, svc,
                                                          fake_twilio, run_jobs):
    sid = waiting_caller(twilio_post, svc)
    assert admin.post(f"/api/calls/{sid}/escalate", json={}).status_code == 202
    assert svc.redis.zscore(keys.waiting(), sid) is None
    run_jobs()
    moves = fake_twilio.calls_updated()
    assert [m.one("Url") for m in moves] == [f"{PUBLIC_BASE_URL}/voice/transfer?trigger=operator"]
    assert [leg.one("To") for leg in fake_twilio.calls_created()] == [GENERAL]
    root = parse_twiml(twilio_post("/voice/transfer?trigger=operator", CallSid=sid))
    assert verbs(root) == ["Say", "Dial", "Say"]
    assert root[0].text == "責任者におつなぎいたします。少々お待ちいただけますでしょうか。"
    assert root[1].find("Conference").text == sid


@pytest.fixture
def taskrouter_post(config, svc):
    """twilio_post against an app in TaskRouter mode (TWILIO_WORKFLOW_SID set)."""
    from ivr import create_app
    from tests.conftest import sign

    client = create_app({**config, "TWILIO_WORKFLOW_SID": "WW" + "c" * 32},
                        services=svc).test_client()

    def post(path, **form):
        return client.post(path, data=form, headers={
            "X-Twilio-Signature": sign(PUBLIC_BASE_URL + path, form)})

    return post


def test_taskrouter_bridged_caller_meets_the_sv_with_their_operator(admin, roster, svc,
                                                                   taskrouter_post,
                                                                   fake_twilio, run_jobs):
    sid = waiting_caller(taskrouter_post, svc)
    operator_leg = new_sid()
    whisper = parse_twiml(taskrouter_post(
        f"/voice/agent-whisper?reservation=WR{'d' * 32}&call={sid}", CallSid=operator_leg))
    assert whisper.find("Dial").attrib["action"] == \
        f"{PUBLIC_BASE_URL}/voice/agent-rejoin?call={sid}"
    taskrouter_post("/voice/connecting", CallSid=sid, DequeingCallSid=operator_leg)
    assert svc.redis.hget(keys.call(sid), "state") == "connected"

    response = admin.post(f"/api/calls/{sid}/escalate", json={"reason": "money"})
    assert response.status_code == 202, response.get_json()
    assert svc.redis.hget(keys.call(sid), "esc_with_operator") == "1"
    run_jobs()
    moves = fake_twilio.calls_updated()
    assert [m.path.rsplit("/", 1)[1] for m in moves] == [f"{sid}.json"]
    assert moves[0].one("Url") == f"{PUBLIC_BASE_URL}/voice/transfer?trigger=operator"
    assert [leg.one("To") for leg in fake_twilio.calls_created()] == [BILLING]

    # the bridge ends: the operator's <Dial action> takes them into the caller's room
    rejoin = parse_twiml(taskrouter_post(f"/voice/agent-rejoin?call={sid}",
                                         CallSid=operator_leg, DialCallStatus="completed"))
    assert verbs(rejoin) == ["Dial"]
    room = rejoin[0].find("Conference")
    assert room.text == sid
    assert room.attrib["startConferenceOnEnter"] == "true"
    assert room.attrib["endConferenceOnExit"] == "false"
    caller = parse_twiml(taskrouter_post("/voice/transfer?trigger=operator", CallSid=sid))
    assert verbs(caller) == ["Say", "Dial", "Say"]
    assert caller[1].find("Conference").text == sid
    joined = parse_twiml(taskrouter_post(f"/voice/sv-connect?call={sid}&attempt=0",
                                         Digits="1"))
    assert joined[1].find("Conference").attrib["endConferenceOnExit"] == "false"


def test_taskrouter_operator_leg_ends_when_the_caller_hangs_up(admin, roster, svc,
                                                              taskrouter_post):
    sid = waiting_caller(taskrouter_post, svc)
    taskrouter_post("/voice/connecting", CallSid=sid)
    taskrouter_post("/voice/status", CallSid=sid, CallStatus="completed")
    rejoin = parse_twiml(taskrouter_post(f"/voice/agent-rejoin?call={sid}",
                                         CallSid=new_sid(), DialCallStatus="completed"))
    assert verbs(rejoin) == ["Hangup"]


def test_outcome_reaches_the_operator_who_raised_it(admin, roster, twilio_post, svc, run_jobs):
    sid = caller_with_operator(twilio_post, svc)
    admin.post(f"/api/calls/{sid}/escalate", json={"reason": "manager", "note": "強いご不満"})
    run_jobs()
    twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="1")
    response = admin.post(f"/api/calls/{sid}/outcome",
                          json={"result": "resolved", "note": "次回請求で減額して解決"})
    assert response.status_code == 200
    listed = admin.get("/api/calls?raised_by=bootstrap").get_json()["calls"]
    assert [c["call_sid"] for c in listed] == [sid]
    esc = listed[0]["escalation"]
    assert esc["outcome"]["result"] == "resolved"
    assert esc["outcome"]["note"] == "次回請求で減額して解決"
    assert esc["supervisor"]["name"] == "伊藤主任"
    assert admin.get("/api/calls?raised_by=someone-else").get_json()["calls"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"reason": "refund"}, "reason"),
    ({"note": "x" * 501}, "note"),
    ({"note": 5}, "note"),
    ({"reason": "manager", "priority": 1}, "priority"),
])
def test_escalate_bad_input_names_the_field_and_starts_nothing(admin, roster, twilio_post, svc,
                                                              body, field):
    sid = waiting_caller(twilio_post, svc)
    before = svc.redis.hgetall(keys.call(sid))
    response = admin.post(f"/api/calls/{sid}/escalate", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert svc.redis.hgetall(keys.call(sid)) == before
    assert svc.rq_redis.llen("rq:queue:default") == 0


def test_escalate_refusals(admin, roster, twilio_post, svc):
    assert admin.post(f"/api/calls/CA{'9' * 32}/escalate", json={}).status_code == 404
    assert admin.post(f"/api/calls/{new_sid()}/escalate", data="x",
                      headers={"Content-Type": "text/plain"}).status_code == 415
    sid = waiting_caller(twilio_post, svc)
    assert admin.post(f"/api/calls/{sid}/escalate", json={}).status_code == 202
    again = admin.post(f"/api/calls/{sid}/escalate", json={})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "already_escalated"
    ended = waiting_caller(twilio_post, svc)
    twilio_post("/voice/status", CallSid=ended, CallStatus="completed")
    assert admin.post(f"/api/calls/{ended}/escalate", json={}).status_code == 409


def test_escalate_with_nobody_on_call_is_refused_and_writes_nothing(admin, twilio_post, svc):
    sid = waiting_caller(twilio_post, svc)
    before = svc.redis.hgetall(keys.call(sid))
    response = admin.post(f"/api/calls/{sid}/escalate", json={"reason": "technical"})
    assert response.status_code == 409
    assert response.get_json()["error"] == {
        "code": "no_supervisor", "field": "reason",
        "message": "no supervisor on call for technical; check GET /api/supervisors"}
    assert svc.redis.hgetall(keys.call(sid)) == before


def test_outcome_bad_input(admin, roster, twilio_post, svc):
    sid = waiting_caller(twilio_post, svc)
    response = admin.post(f"/api/calls/{sid}/outcome", json={"result": "resolved"})
    assert response.status_code == 409
    admin.post(f"/api/calls/{sid}/escalate", json={})
    for body, field in (({"result": "great"}, "result"), ({}, "result"),
                        ({"result": "resolved", "note": ["x"]}, "note")):
        response = admin.post(f"/api/calls/{sid}/outcome", json=body)
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] == field
    assert not svc.redis.hget(keys.call(sid), "esc_outcome_result")


def test_call_list_filters_validate(admin):
    for query, field in (("?raised_by=a%20b", "raised_by"), ("?active=2", "active"),
                         ("?limit=0", "limit"), ("?tag=%3Cx%3E", "tag")):
        response = admin.get(f"/api/calls{query}")
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] == field


def test_call_record_shows_context_and_tags(admin, roster, twilio_post, svc):
    sid = waiting_caller(twilio_post, svc)
    admin.post(f"/api/calls/{sid}/escalate", json={"reason": "money"})
    record = admin.get(f"/api/calls/{sid}").get_json()
    assert record["from"] == CALLER
    assert record["transcript"] == "返金してほしい"
    assert set(record["context"]) == {"who", "what", "where", "when", "how", "why"}
    assert record["context"]["what"]["transcript"] == "返金してほしい"
    assert not any(k.startswith("esc_") for k in record)
    assert json.loads(json.dumps(record))["escalation"]["candidates"] == ["渡辺課長"]


def test_a_caller_taken_on_the_redis_down_operator_line_cannot_be_escalated(
        admin, roster, twilio_post, svc, fake_twilio, run_jobs):
    """The operator line without Redis takes the caller with <Dial><Queue url=/voice/connecting>
    (tests/voice/test_redis_down.py): Twilio bridges the two directly, outside the caller's
    conference, and the call says so; an SV rung now would join an empty room: 409."""
    sid = waiting_caller(twilio_post, svc)
    root = parse_twiml(twilio_post("/voice/connecting", CallSid=sid))  # Redis is back
    assert verbs(root) == ["Say"]
    assert svc.redis.hmget(keys.call(sid), "state", "bridge") == ["connected", "direct"]
    run_jobs()
    fake_twilio.reset()
    before = svc.redis.hgetall(keys.call(sid))

    response = admin.post(f"/api/calls/{sid}/escalate", json={"reason": "money"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "not_in_conference"
    run_jobs()
    assert fake_twilio.calls_created() == []
    assert svc.redis.hgetall(keys.call(sid)) == before
