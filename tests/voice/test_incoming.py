"""/voice/incoming: lookup, matching incidents, tags, announcement, then the purpose menu."""

from __future__ import annotations

import json

import pytest

from ivr import keys
from tests.conftest import PUBLIC_BASE_URL, parse_twiml
from tests.factories import add_customer, declare, new_sid, says, verbs

AFFECTED = "+819012345678"


def incoming(twilio_post, sid, from_=AFFECTED, **extra):
    return twilio_post("/voice/incoming", CallSid=sid, From=from_, To="+815012345678",
                       AccountSid="AC" + "0" * 32, CallStatus="ringing", **extra)


def test_affected_caller_hears_announcement_then_menu_and_is_tagged(admin, twilio_post, svc):
    inc = declare(admin)
    add_customer(svc, AFFECTED, tier="vip")
    sid = new_sid()
    root = parse_twiml(incoming(twilio_post, sid))

    assert verbs(root) == ["Say", "Say", "Gather", "Redirect"]
    welcome, announcement = root[0], root[1]
    assert welcome.attrib == {"language": "ja-JP", "voice": "Polly.Mizuki"}
    assert welcome.text == "お電話ありがとうございます。サポート窓口でございます。"
    assert announcement.text.startswith("現在、メールサービスがご利用いただけない状況です。")
    assert "現在確認中です" in announcement.text
    assert "次回のお知らせは11時00分ごろを予定しております。" in announcement.text
    gather = root[2]
    assert gather.attrib["action"] == f"{PUBLIC_BASE_URL}/voice/gather"
    assert gather.attrib["input"] == "speech dtmf"
    assert gather.attrib["language"] == "ja-JP"
    assert gather.attrib["speechTimeout"] == "auto"
    assert "speechModel" not in gather.attrib
    assert gather.find("Say").text.startswith("ご用件をお話しください。")
    assert root[3].text == f"{PUBLIC_BASE_URL}/voice/gather"

    record = svc.redis.hgetall(keys.call(sid))
    assert json.loads(record["tags"]) == ["affected", "vip", f"incident:{inc['id']}"]
    assert record["from"] == AFFECTED
    assert record["band"] == "1"
    counters = svc.redis.hgetall(keys.incident_counters(inc["id"]))
    assert (counters["calls"], counters["affected_calls"]) == ("1", "1")


def test_unaffected_caller_hears_nothing_of_an_affected_only_incident(admin, twilio_post, svc):
    inc = declare(admin)
    add_customer(svc, "+819011112222", services=["billing"], region="kansai")
    sid = new_sid()
    root = parse_twiml(incoming(twilio_post, sid, from_="+819011112222"))
    assert verbs(root) == ["Say", "Gather", "Redirect"]
    assert json.loads(svc.redis.hget(keys.call(sid), "tags")) == []
    assert svc.redis.hget(keys.incident_counters(inc["id"]), "calls") == "0"


def test_audience_all_reaches_unknown_callers_but_tags_only_the_affected(admin, twilio_post, svc):
    inc = declare(admin, audience="all", scope={"regions": ["kanto"]})
    sid = new_sid()
    root = parse_twiml(incoming(twilio_post, sid, from_="+819099998888"))
    assert says(root)[1].startswith("現在、メールサービスがご利用いただけない状況です。")
    assert json.loads(svc.redis.hget(keys.call(sid), "tags")) == []
    counters = svc.redis.hgetall(keys.incident_counters(inc["id"]))
    assert (counters["calls"], counters["affected_calls"]) == ("1", "0")


@pytest.mark.parametrize("scope", [{"numbers": ["090-1234-5678"]}, {"regions": ["kanto"]},
                                   {"services": ["mail"]}])
def test_each_kind_of_scope_marks_the_caller_affected(admin, twilio_post, svc, scope):
    declare(admin, scope=scope)
    add_customer(svc, AFFECTED)
    sid = new_sid()
    incoming(twilio_post, sid)
    assert "affected" in json.loads(svc.redis.hget(keys.call(sid), "tags"))


def test_number_scope_works_for_a_caller_who_is_not_a_customer(admin, twilio_post, svc):
    declare(admin, scope={"numbers": ["+819055556666"]})
    sid = new_sid()
    root = parse_twiml(incoming(twilio_post, sid, from_="09055556666"))
    assert verbs(root) == ["Say", "Say", "Gather", "Redirect"]
    assert "affected" in json.loads(svc.redis.hget(keys.call(sid), "tags"))


def test_english_customer_hears_english_with_the_english_voice(admin, twilio_post, svc, clock):
    declare(admin, eta="2026-11-23T13:30:00+09:00")
    add_customer(svc, AFFECTED, language="en")
    root = parse_twiml(incoming(twilio_post, new_sid()))
    assert root[0].attrib == {"language": "en-US", "voice": "Polly.Joanna"}
    assert root[1].text == ("Our mail service is currently unavailable. We expect service to be "
                            "restored by about 1:30 PM. Our next update is planned for about "
                            "11:00 AM.")
    assert root.find("Gather").attrib["language"] == "en-US"


def test_eta_is_spoken_in_tokyo_time(admin, twilio_post, svc):
    declare(admin, eta="2026-11-23T05:15:00Z")
    add_customer(svc, AFFECTED)
    root = parse_twiml(incoming(twilio_post, new_sid()))
    assert "復旧は14時15分ごろを見込んでおります。" in root[1].text


def test_published_recording_is_played_instead_of_the_text(admin, twilio_post, svc):
    url = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1.mp3"
    declare(admin, recordings={"ja": url})
    add_customer(svc, AFFECTED)
    root = parse_twiml(incoming(twilio_post, new_sid()))
    assert verbs(root) == ["Say", "Play", "Say", "Gather", "Redirect"]
    assert root[1].text == url
    assert "メールサービス" not in root[2].text
    assert root[2].text.startswith("復旧の見込みにつきましては、現在確認中です。")


def test_announcement_text_cannot_inject_twiml(admin, twilio_post, svc):
    evil = '</Say><Hangup/><Say>"&'
    declare(admin, announcement={"ja": evil})
    add_customer(svc, AFFECTED)
    root = parse_twiml(incoming(twilio_post, new_sid()))
    assert root.find("Hangup") is None
    assert verbs(root) == ["Say", "Say", "Gather", "Redirect"]
    assert root[1].text.startswith(evil)


def test_retried_webhook_is_answered_the_same_and_counted_once(admin, twilio_post, svc):
    inc = declare(admin)
    add_customer(svc, AFFECTED)
    sid = new_sid()
    first = incoming(twilio_post, sid).get_data()
    second = incoming(twilio_post, sid).get_data()
    assert first == second
    assert svc.redis.hget(keys.incident_counters(inc["id"]), "calls") == "1"
    assert svc.redis.zcard(keys.calls_recent()) == 1


def test_critical_incident_is_announced_before_a_minor_one(admin, twilio_post, svc):
    declare(admin, severity="minor", announcement={"ja": "軽微な遅延が発生しております。"})
    declare(admin, severity="critical", announcement={"ja": "重大な障害が発生しております。"})
    add_customer(svc, AFFECTED)
    root = parse_twiml(incoming(twilio_post, new_sid()))
    assert says(root)[1].startswith("重大な障害")
    assert says(root)[2].startswith("軽微な遅延")


def test_resolved_incident_is_no_longer_announced(admin, twilio_post, svc):
    inc = declare(admin)
    add_customer(svc, AFFECTED)
    admin.post(f"/api/incidents/{inc['id']}/resolve", json={"message": "復旧いたしました。"})
    root = parse_twiml(incoming(twilio_post, new_sid()))
    assert verbs(root) == ["Say", "Gather", "Redirect"]


@pytest.mark.parametrize("raw", ["anonymous", "", "+", "12345", "+266696687", "Restricted",
                                 "client:alice", "x" * 5000])
def test_withheld_and_odd_numbers_are_answered_as_unknown_callers(admin, twilio_post, svc, raw):
    declare(admin, audience="all")
    sid = new_sid()
    root = parse_twiml(incoming(twilio_post, sid, from_=raw))
    assert verbs(root) == ["Say", "Say", "Gather", "Redirect"]
    record = svc.redis.hgetall(keys.call(sid))
    assert record["from"] == ""
    assert record["withheld"] == "1"
    assert record["lang"] == "ja"


def test_missing_call_sid_still_queues_the_caller_and_writes_nothing(twilio_post, svc):
    before = svc.redis.dbsize()
    root = parse_twiml(twilio_post("/voice/incoming", From=AFFECTED))
    assert verbs(root) == ["Say", "Enqueue"]
    assert svc.redis.dbsize() == before


def test_huge_form_is_refused_before_anything_is_written(client, svc):
    before = svc.redis.dbsize()
    form = {"CallSid": "CA1", "SpeechResult": "あ" * 400_000}
    response = client.post("/voice/incoming", data=form)
    assert response.status_code == 413
    assert svc.redis.dbsize() == before


def test_speech_model_in_flows_replaces_auto_timeout(tmp_path, config, svc, twilio_post):
    import shutil

    from ivr import create_app
    from ivr.flows import load_flows
    from tests.conftest import sign

    flows = tmp_path / "flows"
    shutil.copytree(config["IVR_FLOWS_DIR"], flows)
    text = (flows / "call.yaml").read_text()
    text = text.replace("speech_timeout: auto", "speech_timeout: 2")
    text = text.replace("speech_model: null", "speech_model: phone_call")
    (flows / "call.yaml").write_text(text)
    svc.flows = load_flows(flows)
    app = create_app({**config, "IVR_FLOWS_DIR": str(flows)}, services=svc)
    form = {"CallSid": new_sid(), "From": AFFECTED}
    response = app.test_client().post(
        "/voice/incoming", data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/voice/incoming", form)})
    gather = parse_twiml(response).find("Gather")
    assert gather.attrib["speechModel"] == "phone_call"
    assert gather.attrib["speechTimeout"] == "2"


def test_without_an_incident_the_menu_does_not_mention_one(twilio_post):
    root = parse_twiml(twilio_post("/voice/incoming", CallSid=new_sid(), From=AFFECTED))
    menu = root.find("Gather").find("Say").text
    assert menu == ("ご用件をお話しください。"
                    "SMSでのお知らせを停止、または再開する場合は9を押してください。")
