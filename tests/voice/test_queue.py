"""The purpose step, the waiting line, hold announcements and the operator hand-off."""

from __future__ import annotations

import json

from ivr import keys
from tests.conftest import PUBLIC_BASE_URL, parse_twiml
from tests.factories import add_customer, declare, new_sid, verbs

HOLD = "https://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
OPERATOR = "+81312345678"


def call_in(twilio_post, sid, phone, **said):
    twilio_post("/voice/incoming", CallSid=sid, From=phone, To="+815012345678")
    return twilio_post("/voice/gather", CallSid=sid, **said)


def test_gather_records_what_was_said_and_enqueues(admin, twilio_post, svc):
    sid = new_sid()
    root = parse_twiml(call_in(twilio_post, sid, "+819012345678",
                               SpeechResult="メールが 届きません", Confidence="0.91"))
    assert verbs(root) == ["Say", "Enqueue"]
    assert root[0].text.startswith("ただいま電話が大変混み合っており")
    enq = root[1]
    assert enq.text == "support"
    assert enq.attrib == {"waitUrl": f"{PUBLIC_BASE_URL}/voice/queue-wait",
                          "waitUrlMethod": "POST"}
    record = svc.redis.hgetall(keys.call(sid))
    assert record["transcript"] == "メールが 届きません"
    assert record["confidence"] == "0.910"
    assert record["purpose"] == "speech"
    assert record["state"] == "queued"
    assert svc.redis.zscore(keys.waiting(), sid) is not None


def test_menu_key_records_the_purpose(twilio_post, svc):
    sid = new_sid()
    call_in(twilio_post, sid, "+819012345678", Digits="1")
    assert svc.redis.hget(keys.call(sid), "purpose") == "incident"
    sid = new_sid()
    call_in(twilio_post, sid, "+819012345679", Digits="2")
    assert svc.redis.hget(keys.call(sid), "purpose") == "other"


def test_bad_gather_input_is_bounded_and_ignored(twilio_post, svc):
    sid = new_sid()
    root = parse_twiml(call_in(twilio_post, sid, "+819012345678", Digits="1<Hangup/>",
                               SpeechResult="あ" * 5000, Confidence="NaNx"))
    assert verbs(root) == ["Say", "Enqueue"]
    record = svc.redis.hgetall(keys.call(sid))
    assert "digits" not in record
    assert "confidence" not in record
    assert len(record["transcript"]) == 1000


def test_retried_gather_keeps_the_callers_place(twilio_post, svc, clock):
    sid = new_sid()
    call_in(twilio_post, sid, "+819012345678", Digits="1")
    score = svc.redis.zscore(keys.waiting(), sid)
    clock.tick(30)
    twilio_post("/voice/gather", CallSid=sid, Digits="1")
    assert svc.redis.zscore(keys.waiting(), sid) == score


def test_gather_for_an_unknown_call_still_queues(twilio_post, svc):
    root = parse_twiml(twilio_post("/voice/gather", CallSid=new_sid(), Digits="1"))
    assert verbs(root) == ["Say", "Enqueue"]
    assert svc.redis.zcard(keys.waiting()) == 0


def test_waiting_order_is_priority_then_affected_or_vip_then_others(admin, twilio_post, svc,
                                                                     clock):
    declare(admin)
    add_customer(svc, "+819012340001", services=["web"], region="kansai")
    add_customer(svc, "+819012340002")
    add_customer(svc, "+819012340003", services=["web"], region="kansai", tier="vip")
    other, affected, vip = new_sid(), new_sid(), new_sid()
    call_in(twilio_post, other, "+819012340001", Digits="2")
    clock.tick(5)
    call_in(twilio_post, affected, "+819012340002", Digits="1")
    clock.tick(5)
    call_in(twilio_post, vip, "+819012340003", Digits="2")
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [affected, vip, other]

    root = parse_twiml(twilio_post("/voice/queue-wait", CallSid=other, QueuePosition="1",
                                   QueueTime="12"))
    assert verbs(root) == ["Say", "Play"]
    assert root[0].text.startswith("ただいま3番目にお待ちいただいております。")
    assert root[1].text == HOLD


def test_queue_wait_tells_the_latest_incident_status(admin, twilio_post, svc):
    inc = declare(admin)
    add_customer(svc, "+819012345678")
    sid = new_sid()
    call_in(twilio_post, sid, "+819012345678", Digits="1")
    root = parse_twiml(twilio_post("/voice/queue-wait", CallSid=sid, QueuePosition="1"))
    assert verbs(root) == ["Gather", "Play"]
    assert "障害の原因につきましては、現在確認中です。" in root[0].find("Say").text
    admin.post(f"/api/incidents/{inc['id']}/updates",
               json={"message": "原因を特定し、復旧作業を進めております。", "status": "identified"})
    root = parse_twiml(twilio_post("/voice/queue-wait", CallSid=sid, QueuePosition="1"))
    offer = root[0]
    assert offer.attrib == {"action": f"{PUBLIC_BASE_URL}/voice/queue-key", "input": "dtmf",
                            "method": "POST", "numDigits": "1", "timeout": "1"}
    assert offer.find("Say").text == ("ただいま1番目にお待ちいただいております。"
                                      "障害の最新状況をお知らせします。"
                                      "原因を特定し、復旧作業を進めております。"
                                      "お待たせして申し訳ございません。このままお待ちください。"
                                      "この障害の経過をSMSでお受け取りになる場合は、1を押してください。")


def test_operator_takes_the_highest_priority_caller_and_hears_context(admin, twilio_post, svc,
                                                                     clock, fake_twilio,
                                                                     run_jobs):
    declare(admin)
    add_customer(svc, "+819012340001", services=["web"], region="kansai", name="佐藤花子")
    add_customer(svc, "+819012340002", name="鈴木一郎", tier="vip")
    first_in, vip = new_sid(), new_sid()
    call_in(twilio_post, first_in, "+819012340001", Digits="2")
    clock.tick(90)
    call_in(twilio_post, vip, "+819012340002", SpeechResult="メールが届かない")
    clock.tick(120)

    agent = new_sid()
    root = parse_twiml(twilio_post("/voice/agent-line", CallSid=agent, From=OPERATOR))
    assert verbs(root) == ["Say", "Dial"]
    whisper = root[0].text
    assert whisper.startswith("鈴木一郎様からのお電話です。VIPのお客様です。"
                              "障害の影響を受けているお客様です。")
    assert "お客様のお話: メールが届かない。" in whisper
    assert "2分お待ちいただきました。" in whisper
    conf = root[1].find("Conference")
    assert conf.text == vip
    assert conf.attrib["startConferenceOnEnter"] == "true"
    assert conf.attrib["endConferenceOnExit"] == "false"
    assert svc.redis.hget(keys.call(vip), "state") == "connecting"
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [first_in]

    # the caller is moved out of the Twilio queue by a REST redirect, run by the worker
    assert fake_twilio.calls_updated() == []
    run_jobs()
    updates = fake_twilio.calls_updated()
    assert len(updates) == 1
    assert updates[0].path.endswith(f"/Calls/{vip}.json")
    assert updates[0].one("Url") == f"{PUBLIC_BASE_URL}/voice/connecting?join=1"

    # Twilio then fetches that URL for the caller: a cushion sentence and the same room
    root = parse_twiml(twilio_post("/voice/connecting?join=1", CallSid=vip))
    assert verbs(root) == ["Say", "Dial"]
    assert root[0].text == "お待たせいたしました。担当者におつなぎいたします。"
    conf = root[1].find("Conference")
    assert conf.text == vip
    assert conf.attrib["startConferenceOnEnter"] == "false"
    assert conf.attrib["endConferenceOnExit"] == "true"
    assert svc.redis.hget(keys.call(vip), "state") == "connected"


def test_retried_operator_webhook_gets_the_same_caller_and_one_redirect(twilio_post, svc,
                                                                       fake_twilio, run_jobs):
    a, b = new_sid(), new_sid()
    call_in(twilio_post, a, "+819012340001", Digits="1")
    call_in(twilio_post, b, "+819012340002", Digits="1")
    agent = new_sid()
    first = parse_twiml(twilio_post("/voice/agent-line", CallSid=agent, From=OPERATOR))
    again = parse_twiml(twilio_post("/voice/agent-line", CallSid=agent, From=OPERATOR))
    assert first[1].find("Conference").text == again[1].find("Conference").text == a
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [b]
    run_jobs()
    assert len(fake_twilio.calls_updated()) == 1


def test_caller_who_hung_up_is_skipped(twilio_post, svc, run_jobs):
    gone, waiting = new_sid(), new_sid()
    call_in(twilio_post, gone, "+819012340001", Digits="1")
    call_in(twilio_post, waiting, "+819012340002", Digits="1")
    twilio_post("/voice/status", CallSid=gone, CallStatus="completed", CallDuration="40")
    assert svc.redis.hget(keys.call(gone), "state") == "completed"
    assert svc.redis.zscore(keys.calls_active(), gone) is None
    root = parse_twiml(twilio_post("/voice/agent-line", CallSid=new_sid(), From=OPERATOR))
    assert root[1].find("Conference").text == waiting


def test_no_caller_waiting_tells_the_operator_and_looks_again(twilio_post):
    root = parse_twiml(twilio_post("/voice/agent-line", CallSid=new_sid(), From=OPERATOR))
    assert verbs(root) == ["Say", "Pause", "Redirect"]
    assert root[0].text == "現在お待ちのお客様はいらっしゃいません。このままお待ちください。"
    assert root[1].attrib == {"length": "10"}
    assert root[2].text == f"{PUBLIC_BASE_URL}/voice/agent-line"


def test_operator_line_refuses_numbers_not_on_the_list(tmp_path, config, svc, twilio_post):
    import shutil

    from ivr import create_app
    from ivr.flows import load_flows
    from tests.conftest import sign

    flows = tmp_path / "flows"
    shutil.copytree(config["IVR_FLOWS_DIR"], flows)
    text = (flows / "call.yaml").read_text().replace("allowed_from: []",
                                                     'allowed_from: ["+81312345678"]')
    (flows / "call.yaml").write_text(text)
    svc.flows = load_flows(flows)
    client = create_app({**config, "IVR_FLOWS_DIR": str(flows)}, services=svc).test_client()
    sid = new_sid()
    call_in(twilio_post, sid, "+819012340001", Digits="1")

    def operator(from_):
        form = {"CallSid": new_sid(), "From": from_}
        return parse_twiml(client.post("/voice/agent-line", data=form, headers={
            "X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/voice/agent-line", form)}))

    assert verbs(operator("+819099999999")) == ["Reject"]
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [sid]
    assert operator("03-1234-5678")[1].find("Conference").text == sid


def test_status_callback_closes_the_record_once_and_ignores_unknown_calls(twilio_post, svc):
    sid = new_sid()
    call_in(twilio_post, sid, "+819012345678", Digits="1")
    root = parse_twiml(twilio_post("/voice/status", CallSid=sid, CallStatus="completed",
                                   CallDuration="75"))
    assert list(root) == []
    record = svc.redis.hgetall(keys.call(sid))
    assert (record["state"], record["status"], record["duration"]) == ("completed", "completed",
                                                                     "75")
    assert svc.redis.zscore(keys.waiting(), sid) is None
    unknown = new_sid()
    parse_twiml(twilio_post("/voice/status", CallSid=unknown, CallStatus="completed"))
    assert not svc.redis.exists(keys.call(unknown))


def test_status_in_progress_changes_nothing(twilio_post, svc):
    sid = new_sid()
    call_in(twilio_post, sid, "+819012345678", Digits="1")
    twilio_post("/voice/status", CallSid=sid, CallStatus="in-progress")
    assert svc.redis.hget(keys.call(sid), "state") == "queued"


def test_taskrouter_mode_carries_tags_as_task_attributes(admin, config, svc, twilio_post):
    from ivr import create_app
    from tests.conftest import sign

    workflow = "WW" + "a" * 32
    client = create_app({**config, "TWILIO_WORKFLOW_SID": workflow}, services=svc).test_client()
    declare(admin)
    add_customer(svc, "+819012345678", tier="vip")
    sid = new_sid()

    def post(path, **form):
        return client.post(path, data=form, headers={
            "X-Twilio-Signature": sign(PUBLIC_BASE_URL + path, form)})

    post("/voice/incoming", CallSid=sid, From="+819012345678")
    root = parse_twiml(post("/voice/gather", CallSid=sid, Digits="1"))
    enq = root.find("Enqueue")
    assert enq.attrib["workflowSid"] == workflow
    task = enq.find("Task")
    assert task.attrib["priority"] == "50"
    attrs = json.loads(task.text)
    assert attrs["call_sid"] == sid
    assert attrs["tags"][:2] == ["affected", "vip"]
    assert attrs["purpose"] == "incident"

    reservation = "WR" + "b" * 32
    root = parse_twiml(post(f"/voice/agent-whisper?reservation={reservation}&call={sid}",
                            CallSid=new_sid()))
    assert verbs(root) == ["Say", "Dial"]
    assert root[0].text.startswith("山田太郎様からのお電話です。VIPのお客様です。")
    queue = root[1].find("Queue")
    assert queue.attrib["reservationSid"] == reservation
    assert queue.attrib["url"] == f"{PUBLIC_BASE_URL}/voice/connecting"
    assert queue.text == "support"


def test_agent_whisper_without_reservation_hangs_up(twilio_post):
    root = parse_twiml(twilio_post("/voice/agent-whisper?reservation=bogus", CallSid=new_sid()))
    assert verbs(root) == ["Say", "Hangup"]


def test_connecting_without_join_only_speaks(twilio_post):
    root = parse_twiml(twilio_post("/voice/connecting", CallSid=new_sid()))
    assert verbs(root) == ["Say"]


def test_fallback_answers_with_the_basic_voice_and_the_plain_queue(twilio_post):
    root = parse_twiml(twilio_post("/voice/fallback", CallSid=new_sid(), ErrorCode="11200"))
    assert verbs(root) == ["Say", "Enqueue"]
    assert root[0].attrib["voice"] == "Google.ja-JP-Standard-A"
    assert root[1].text == "support"


def test_calls_whose_last_status_callback_never_came_leave_the_line_after_a_day(
        admin, twilio_post, svc, clock):
    declare(admin, audience="all")
    add_customer(svc, "+819012345601", services=["mail"])  # affected: the middle band
    ghosts = [new_sid(), new_sid()]
    call_in(twilio_post, ghosts[0], "+819012345601", Digits="1")
    call_in(twilio_post, ghosts[1], "+819012345602", Digits="1")
    clock.tick(23 * 3600)
    waiting = new_sid()
    call_in(twilio_post, waiting, "+819012345603", Digits="1")
    assert svc.redis.zcard(keys.waiting()) == 3  # nothing pruned within the day

    clock.tick(3600 + 1)
    newest = new_sid()
    call_in(twilio_post, newest, "+819012345604", Digits="1")

    assert svc.redis.zrange(keys.waiting(), 0, -1) == [waiting, newest]
    assert set(svc.redis.zrange(keys.calls_active(), 0, -1)) == {waiting, newest}
    root = parse_twiml(twilio_post("/voice/queue-wait", CallSid=waiting, QueuePosition="3"))
    assert any("ただいま1番目にお待ちいただいております。" in (el.text or "")
               for el in root.iter("Say"))


def test_recent_calls_are_trimmed_to_the_newest_at_the_minute_sweep(
        twilio_post, svc, clock, monkeypatch):
    monkeypatch.setattr(keys, "RECENT_CALLS_MAX", 3)
    sids = []
    for n in range(5):
        sids.append(new_sid())
        twilio_post("/voice/incoming", CallSid=sids[-1], From=f"+81901234561{n}")
        clock.tick(1)
    assert svc.redis.zcard(keys.calls_recent()) == 5  # not at every call

    clock.tick(60)
    sids.append(new_sid())
    twilio_post("/voice/incoming", CallSid=sids[-1], From="+819012345619")

    assert svc.redis.zrange(keys.calls_recent(), 0, -1) == sids[2:]
