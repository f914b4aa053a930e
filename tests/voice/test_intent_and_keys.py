"""What the caller says or presses at the menu: manager requests become warm transfers,
declines do not; the SMS keys stop, restart and subscribe."""

from __future__ import annotations

import pytest

from ivr import keys
from tests.conftest import PUBLIC_BASE_URL, parse_twiml
from tests.factories import add_customer, declare, new_sid, put_roster, verbs

CALLER = "+819012345678"
SV = "+819011110001"
BILLING = "+819011110003"


@pytest.fixture
def roster(admin) -> None:
    put_roster(admin, ("高橋SV", SV, "general", 3), ("渡辺課長", BILLING, "billing", 3))


def start_call(twilio_post, phone=CALLER) -> str:
    sid = new_sid()
    twilio_post("/voice/incoming", CallSid=sid, From=phone, To="+815012345678")
    return sid


def test_menu_gather_carries_speech_hints_from_the_lexicon(twilio_post, svc):
    root = parse_twiml(twilio_post("/voice/incoming", CallSid=new_sid(), From=CALLER))
    hints = root.find("Gather").attrib["hints"].split(", ")
    assert "責任者" in hints
    assert 0 < len(hints) <= 500
    assert all(0 < len(h) <= 100 for h in hints)
    assert len(set(hints)) == len(hints)


@pytest.mark.parametrize("speech", ["責任者を出してください", "上の人に代わって",
                                    "せきにんしゃ だせ", "スーパーバイザーお願いします"])
def test_asking_for_a_manager_is_a_warm_transfer(roster, twilio_post, svc, fake_twilio, run_jobs,
                                                 speech):
    add_customer(svc, CALLER)
    sid = start_call(twilio_post)
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid, SpeechResult=speech,
                                   Confidence="0.88"))
    assert verbs(root) == ["Say", "Dial", "Say"]
    assert root[0].text == ("ご不快な思いをさせてしまい、誠に申し訳ございません。"
                            "責任者におつなぎいたします。少々お待ちいただけますでしょうか。")
    assert root[1].find("Conference").text == sid
    record = svc.redis.hgetall(keys.call(sid))
    assert "manager" in record["intent"].split(",")
    assert record["transcript"] == speech
    assert record["esc_trigger"] == "manager"
    assert svc.redis.zscore(keys.waiting(), sid) is None
    run_jobs()
    assert [leg.one("To") for leg in fake_twilio.calls_created()] == [SV]
    whisper = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0"))
    assert f"お客様のお話は、「{speech}」です。" in whisper[0].find("Say").text


def test_a_manager_request_about_a_refund_goes_to_billing(roster, twilio_post, svc, fake_twilio,
                                                         run_jobs):
    sid = start_call(twilio_post)
    twilio_post("/voice/gather", CallSid=sid, SpeechResult="返金の件で責任者を出してください")
    run_jobs()
    assert [leg.one("To") for leg in fake_twilio.calls_created()] == [BILLING]
    assert svc.redis.hget(keys.call(sid), "esc_reason") == "money"


@pytest.mark.parametrize("speech", ["マネージャーは結構です",
                                    "パスワードマネージャーの設定がわかりません",
                                    "責任者は出さなくていいです"])
def test_declines_and_other_meanings_go_to_the_queue(roster, twilio_post, svc, fake_twilio,
                                                     run_jobs, speech):
    sid = start_call(twilio_post)
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid, SpeechResult=speech))
    assert verbs(root) == ["Say", "Enqueue"]
    assert not svc.redis.hget(keys.call(sid), "esc_state")
    run_jobs()
    assert fake_twilio.calls_created() == []


def test_english_manager_request(roster, twilio_post, svc, run_jobs, fake_twilio):
    add_customer(svc, CALLER, language="en", name="Pat")
    sid = start_call(twilio_post)
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid,
                                   SpeechResult="let me speak to a supervisor please"))
    assert verbs(root) == ["Say", "Dial", "Say"]
    assert root[0].text == ("We are truly sorry for the frustration we have caused you. "
                            "A supervisor will take your call. Could you hold for a moment, "
                            "please?")
    assert root[0].attrib["language"] == "en-US"
    run_jobs()
    assert len(fake_twilio.calls_created()) == 1


def test_anger_and_money_reach_the_operator_whisper(twilio_post, svc):
    add_customer(svc, CALLER)
    sid = start_call(twilio_post)
    twilio_post("/voice/gather", CallSid=sid, SpeechResult="ふざけるな 返金しろ")
    root = parse_twiml(twilio_post("/voice/agent-line", CallSid=new_sid(), From="+81312345678"))
    whisper = root[0].text
    assert "強いお怒りが見られます。" in whisper
    assert "返金や料金のご相談です。" in whisper


def test_key_9_stops_then_restarts_sms_for_the_caller(twilio_post, svc):
    add_customer(svc, CALLER)
    sid = start_call(twilio_post)
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid, Digits="9"))
    assert verbs(root) == ["Say", "Gather", "Say", "Hangup"]
    assert root[0].text.startswith("SMSでのお知らせを停止いたしました。")
    assert svc.redis.sismember(keys.sms_optout(), CALLER)
    assert svc.redis.zscore(keys.waiting(), sid) is None
    action = root[1].get("action")
    assert action == f"{PUBLIC_BASE_URL}/voice/gather?turn=1"
    root = parse_twiml(twilio_post(action.removeprefix(PUBLIC_BASE_URL), CallSid=sid,
                                   Digits="9"))
    assert root[0].text == "SMSでのお知らせを再開いたしました。"
    assert not svc.redis.sismember(keys.sms_optout(), CALLER)
    assert root[1].get("action") == f"{PUBLIC_BASE_URL}/voice/gather?turn=2"


def test_key_9_retried_by_twilio_is_answered_again_without_flipping(twilio_post, svc):
    add_customer(svc, CALLER)
    sid = start_call(twilio_post)
    first = parse_twiml(twilio_post("/voice/gather", CallSid=sid, Digits="9"))
    again = parse_twiml(twilio_post("/voice/gather", CallSid=sid, Digits="9"))  # the retry
    assert first[0].text.startswith("SMSでのお知らせを停止いたしました。")
    assert again[0].text == first[0].text
    assert again[1].get("action") == f"{PUBLIC_BASE_URL}/voice/gather?turn=1"
    assert svc.redis.sismember(keys.sms_optout(), CALLER)
    later = parse_twiml(twilio_post("/voice/gather?turn=1", CallSid=sid, Digits="9"))
    retried_later = parse_twiml(twilio_post("/voice/gather?turn=1", CallSid=sid, Digits="9"))
    assert later[0].text == retried_later[0].text == "SMSでのお知らせを再開いたしました。"
    assert not svc.redis.sismember(keys.sms_optout(), CALLER)


def test_key_9_without_a_usable_number_changes_nothing(twilio_post, svc):
    sid = start_call(twilio_post, phone="anonymous")
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid, Digits="9"))
    assert root[0].text.startswith("申し訳ございません。")
    assert svc.redis.scard(keys.sms_optout()) == 0


def test_key_1_while_waiting_subscribes_and_confirms_once(admin, twilio_post, svc, fake_twilio,
                                                          run_jobs):
    inc = declare(admin, audience="all", scope={"regions": ["kansai"]})
    run_jobs()  # the first report went to the affected region, not to this caller
    svc.redis.sadd(keys.sms_optout(), CALLER)
    sid = start_call(twilio_post)
    twilio_post("/voice/gather", CallSid=sid, Digits="1")
    for _ in range(2):  # pressed twice: one confirmation SMS
        root = parse_twiml(twilio_post("/voice/queue-key", CallSid=sid, Digits="1"))
        assert verbs(root) == ["Say", "Redirect"]
        assert root[0].text.startswith("ご登録ありがとうございます。")
        assert root[1].text == f"{PUBLIC_BASE_URL}/voice/queue-wait"
    assert svc.redis.sismember(keys.incident_subscribers(inc["id"]), CALLER)
    assert not svc.redis.sismember(keys.sms_optout(), CALLER)
    run_jobs()
    sent = [m for m in fake_twilio.messages if m["to"] == CALLER]
    assert len(sent) == 1
    assert sent[0]["body"].startswith("【サポートセンター】メール障害の経過を、"
                                      "このSMSでお知らせいたします。")
    # later updates reach the subscriber like any affected customer
    admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "復旧作業中です。"})
    run_jobs()
    assert fake_twilio.sent_to() == {CALLER: 2}
    assert "復旧作業中です。" in fake_twilio.messages[-1]["body"]


@pytest.mark.parametrize("phone", ["+81312345678",   # a Tokyo landline
                                   "+81012345678"])  # E.164-shaped, refused by the plan
def test_numbers_that_cannot_take_an_sms_are_not_offered_or_subscribed(admin, twilio_post, svc,
                                                                       phone):
    inc = declare(admin, audience="all")
    sid = start_call(twilio_post, phone=phone)
    twilio_post("/voice/gather", CallSid=sid, Digits="1")

    root = parse_twiml(twilio_post("/voice/queue-wait", CallSid=sid, QueuePosition="1"))
    assert verbs(root) == ["Say", "Play"]  # no <Gather> offering the SMS
    assert "SMS" not in root[0].text
    root = parse_twiml(twilio_post("/voice/queue-key", CallSid=sid, Digits="1"))
    assert list(root) == []
    assert svc.redis.scard(keys.incident_subscribers(inc["id"])) == 0
    assert not [j for j in svc.sms_queue.job_ids if j.startswith("subscribed-")]


def test_other_keys_while_waiting_do_nothing(twilio_post, svc):
    sid = start_call(twilio_post)
    twilio_post("/voice/gather", CallSid=sid, Digits="1")
    root = parse_twiml(twilio_post("/voice/queue-key", CallSid=sid, Digits="5"))
    assert list(root) == []
