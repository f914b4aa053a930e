"""Warm transfers driven the way Twilio drives them: signed webhooks in, SV legs and call
redirects out through the fake REST server, jobs in a real RQ worker."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler

from ivr import keys
from ivr import services as services_module
from tests.conftest import PUBLIC_BASE_URL, forget_worker_services, free_port, parse_twiml, sign
from tests.factories import (
    add_customer,
    declare,
    new_sid,
    put_roster,
    repeat_caller,
    ring,
    verbs,
)

CALLER = "+819012345678"
SV_GENERAL_3 = "+819011110001"
SV_GENERAL_2 = "+819011110002"
SV_BILLING_3 = "+819011110003"
HOLD = "https://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"


@pytest.fixture
def roster(admin) -> None:
    put_roster(admin, ("高橋SV", SV_GENERAL_3, "general", 3),
               ("伊藤主任", SV_GENERAL_2, "general", 2), ("渡辺課長", SV_BILLING_3, "billing", 3))


def release_due_jobs(svc) -> None:
    """What `rq worker --with-scheduler` does each tick: move due scheduled jobs to the queue."""
    scheduler = RQScheduler([svc.queue], connection=svc.rq_redis)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()


def call_in(twilio_post, sid, phone=CALLER):
    return ring(twilio_post, sid, phone)


def sv_legs(fake_twilio) -> list[Any]:
    return fake_twilio.calls_created()


def assert_transfer_twiml(root, sid, cushion_start="") -> None:
    assert verbs(root)[-3:] == ["Say", "Dial", "Say"]
    assert root[-3].text.endswith("責任者におつなぎいたします。少々お待ちいただけますでしょうか。")
    assert root[-3].text.startswith(cushion_start)
    conf = root[-2].find("Conference")
    assert conf.text == sid
    assert conf.attrib["startConferenceOnEnter"] == "false"
    assert conf.attrib["endConferenceOnExit"] == "true"
    assert conf.attrib["waitUrl"] == HOLD
    assert root.find("Gather") is None


def test_third_call_in_24_hours_goes_straight_to_an_sv(admin, roster, twilio_post, svc, clock,
                                                       fake_twilio, run_jobs):
    declare(admin)
    add_customer(svc, CALLER)
    first, second = new_sid(), new_sid()
    assert verbs(call_in(twilio_post, first))[-2:] == ["Gather", "Redirect"]
    clock.tick(3600)
    assert verbs(call_in(twilio_post, second))[-2:] == ["Gather", "Redirect"]
    clock.tick(3600)
    third = new_sid()
    root = call_in(twilio_post, third)
    assert verbs(root)[:2] == ["Say", "Say"]  # welcome and the announcement come first
    assert_transfer_twiml(root, third, "何度もお電話をいただき、大変申し訳ございません。")
    record = svc.redis.hgetall(keys.call(third))
    assert "repeat" in json.loads(record["tags"])
    assert record["call_number"] == "3"
    assert record["esc_state"] == "dialing"

    run_jobs()
    legs = sv_legs(fake_twilio)
    assert len(legs) == 1
    leg = legs[0]
    assert leg.one("To") == SV_GENERAL_2  # the repeat ladder starts at level 2
    assert leg.one("From") == "+815012345678"
    assert leg.one("Url") == f"{PUBLIC_BASE_URL}/voice/sv-whisper?call={third}&attempt=0"
    assert leg.one("StatusCallback") == (f"{PUBLIC_BASE_URL}/voice/escalation-status"
                                         f"?call={third}&attempt=0")
    assert leg.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert leg.one("Timeout") == "20"
    assert "MachineDetection" not in leg.form
    assert svc.redis.hget(keys.call(third), "esc_state") == "ringing"


def test_window_edge_a_call_older_than_24_hours_no_longer_counts(twilio_post, svc, clock,
                                                                 roster):
    call_in(twilio_post, new_sid())
    clock.tick(3600)
    call_in(twilio_post, new_sid())
    clock.tick(23 * 3600 + 1)  # the first call is now 24 h + 1 s old
    sid = new_sid()
    assert verbs(call_in(twilio_post, sid))[-2:] == ["Gather", "Redirect"]
    assert svc.redis.hget(keys.call(sid), "call_number") == "2"
    clock.tick(60)
    sid = new_sid()
    assert verbs(call_in(twilio_post, sid))[-2] == "Dial"
    assert svc.redis.hget(keys.call(sid), "call_number") == "3"


def test_a_lone_call_older_than_the_window_is_forgotten(twilio_post, svc, clock, roster):
    # Redis's own TTL runs on real time, so under the frozen clock the number's old entry
    # is still there and the script itself must drop it.
    call_in(twilio_post, new_sid())
    clock.tick(24 * 3600 + 1)
    sid = new_sid()
    call_in(twilio_post, sid)
    record = svc.redis.hgetall(keys.call(sid))
    assert record["call_number"] == "1"
    assert record["first_call_at"] == str(int(svc.now().timestamp()))
    assert svc.redis.zcard(keys.caller_calls(CALLER)) == 1


def test_a_call_whose_record_is_gone_and_whose_entry_left_the_window_counts_anew(
        twilio_post, svc, clock, roster):
    sid, now = new_sid(), int(svc.now().timestamp())
    svc.redis.zadd(keys.caller_calls(CALLER), {sid: now - 25 * 3600, "CA" + "e" * 32: now - 60})
    assert verbs(call_in(twilio_post, sid))[-2:] == ["Gather", "Redirect"]  # not the apology
    assert svc.redis.hget(keys.call(sid), "call_number") == "2"


def test_exactly_24_hours_still_counts(twilio_post, svc, clock, roster):
    call_in(twilio_post, new_sid())
    clock.tick(12 * 3600)
    call_in(twilio_post, new_sid())
    clock.tick(12 * 3600)
    sid = new_sid()
    call_in(twilio_post, sid)
    assert svc.redis.hget(keys.call(sid), "call_number") == "3"


def test_retried_webhook_counts_once_and_dials_once(twilio_post, svc, clock, roster,
                                                    fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    again = call_in(twilio_post, sid)
    assert_transfer_twiml(again, sid, "何度も")
    assert svc.redis.zcard(keys.caller_calls(CALLER)) == 3
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 1


def test_an_escalation_counts_once_on_each_of_the_callers_incidents(admin, roster, twilio_post,
                                                                   svc, clock):
    mail = declare(admin)
    everyone = declare(admin, title="全体のお知らせ", audience="all", scope={"regions": ["kyushu"]})
    elsewhere = declare(admin, title="他地域", scope={"regions": ["kyushu"]})
    add_customer(svc, CALLER)
    sid = repeat_caller(twilio_post, clock, CALLER)
    call_in(twilio_post, sid)  # Twilio retries the webhook

    counted = {inc["id"]: svc.redis.hget(keys.incident_counters(inc["id"]), "escalations")
               for inc in (mail, everyone, elsewhere)}
    assert counted == {mail["id"]: "1", everyone["id"]: "1", elsewhere["id"]: "0"}


def test_two_calls_at_once_from_one_number_count_twice(config, svc, clock):
    from ivr import create_app

    app = create_app(config, services=svc)
    barrier = threading.Barrier(4)
    sids = [new_sid() for _ in range(4)]

    def ring(sid: str) -> None:
        form = {"CallSid": sid, "From": CALLER}
        client = app.test_client()
        barrier.wait()
        client.post("/voice/incoming", data=form, headers={
            "X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/voice/incoming", form)})

    threads = [threading.Thread(target=ring, args=(sid,)) for sid in sids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert svc.redis.zcard(keys.caller_calls(CALLER)) == 4
    numbers = sorted(int(svc.redis.hget(keys.call(s), "call_number")) for s in sids)
    assert numbers == [1, 2, 3, 4]


def test_withheld_numbers_are_never_repeat_callers(twilio_post, svc, clock, roster):
    for _ in range(4):
        root = call_in(twilio_post, new_sid(), phone="anonymous")
        assert verbs(root)[-2:] == ["Gather", "Redirect"]


def test_sv_hears_the_context_first_and_the_caller_never_does(admin, roster, twilio_post, svc,
                                                             clock, fake_twilio, run_jobs):
    declare(admin)
    add_customer(svc, CALLER, tier="vip", services=["mail", "web"])
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    leg = sv_legs(fake_twilio)[0]
    sv_leg_sid = "CA" + "5" * 32
    root = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0",
                                   CallSid=sv_leg_sid, To=leg.one("To")))
    assert verbs(root) == ["Gather", "Say", "Hangup"]
    gather = root[0]
    assert gather.attrib["numDigits"] == "1"
    assert gather.attrib["action"] == f"{PUBLIC_BASE_URL}/voice/sv-connect?call={sid}&attempt=0"
    whisper = gather.find("Say").text
    assert whisper.startswith("エスカレーションのご連絡です。"
                              "繰り返しお電話をいただいているお客様です。")
    assert "山田太郎様、VIPのお客様、24時間以内に3回目のお電話です。" in whisper
    assert "ご利用サービスはmail、webです。" in whisper
    assert "障害は10時00分から発生しています。" in whisper
    assert "最初のお電話は10時00分です。" in whisper
    assert whisper.endswith("お客様におつなぎする場合は1を、お断りする場合は2を押してください。")
    context = json.loads(svc.redis.hget(keys.call(sid), "context"))
    assert context["who"] == {"name": "山田太郎", "tier": "vip", "registered": True,
                              "call_number": 3}
    assert context["why"]["trigger"] == "repeat"


def test_accept_joins_the_sv_to_the_callers_room(roster, twilio_post, svc, clock, fake_twilio,
                                                 run_jobs, admin):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    clock.tick(25)
    root = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="1",
                                   CallSid="CA" + "5" * 32))
    assert verbs(root) == ["Say", "Dial"]
    assert root[0].text == "お客様におつなぎします。"
    conf = root[1].find("Conference")
    assert conf.text == sid
    assert conf.attrib["startConferenceOnEnter"] == "true"
    assert conf.attrib["endConferenceOnExit"] == "true"
    record = admin.get(f"/api/calls/{sid}").get_json()
    esc = record["escalation"]
    assert esc["state"] == "accepted"
    assert esc["wait_seconds"] == 25
    assert esc["supervisor"] == {"name": "伊藤主任", "phone": SV_GENERAL_2}
    assert esc["attempts"][-1]["result"] == "accepted"
    # a second key press, or a late one from another SV, cannot take it again
    root = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="1"))
    assert verbs(root) == ["Say", "Hangup"]
    # the leg's completed callback after joining moves nothing
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="completed")
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 1


def test_decline_rings_the_next_sv(roster, twilio_post, svc, clock, fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    root = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="2"))
    assert verbs(root) == ["Say", "Hangup"]
    assert root[0].text == "承知しました。次の担当者にお回しします。"
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="completed")
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2, SV_GENERAL_3]


def test_other_keys_repeat_the_whisper(roster, twilio_post, svc, clock, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    root = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="7"))
    assert verbs(root) == ["Redirect"]
    assert root[0].text == f"{PUBLIC_BASE_URL}/voice/sv-whisper?call={sid}&attempt=0"


def test_no_answer_chain_ends_in_the_priority_queue(roster, twilio_post, svc, clock,
                                                   fake_twilio, run_jobs):
    waiting = new_sid()
    call_in(twilio_post, waiting, "+819099990000")
    twilio_post("/voice/gather", CallSid=waiting, Digits="1")
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="no-answer")
    run_jobs()
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=1", CallStatus="busy")
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2, SV_GENERAL_3]
    # a duplicate callback for an attempt already given up changes nothing
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="no-answer")
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 2
    redirects = fake_twilio.calls_updated()
    assert [r.path.rsplit("/", 1)[1] for r in redirects] == [f"{sid}.json"]
    assert redirects[0].one("Url") == f"{PUBLIC_BASE_URL}/voice/requeue"
    assert svc.redis.hget(keys.call(sid), "esc_state") == "exhausted"

    root = parse_twiml(twilio_post("/voice/requeue", CallSid=sid))
    assert verbs(root) == ["Say", "Enqueue"]
    assert root[0].text.startswith("大変お待たせして申し訳ございません。")
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [sid, waiting]
    agent = parse_twiml(twilio_post("/voice/agent-line", CallSid=new_sid(), From="+81312345678"))
    assert agent[1].find("Conference").text == sid


def test_watchdog_moves_on_when_no_callback_arrives(roster, twilio_post, svc, clock,
                                                   fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    registry = ScheduledJobRegistry(queue=svc.queue)
    assert registry.get_job_ids() == [f"esc-watch-{sid}-0"]
    clock.tick(59)
    release_due_jobs(svc)
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 1
    clock.tick(2)
    release_due_jobs(svc)
    run_jobs()
    legs = sv_legs(fake_twilio)
    assert [leg.one("To") for leg in legs] == [SV_GENERAL_2, SV_GENERAL_3]
    ended = fake_twilio.calls_updated()
    assert len(ended) == 1 and ended[0].one("Status") == "completed"
    assert json.loads(svc.redis.lindex(keys.escalation_log(sid), 0))["result"] == "timeout"


def test_caller_hanging_up_stops_the_ladder(roster, twilio_post, svc, clock, fake_twilio,
                                            run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    twilio_post("/voice/status", CallSid=sid, CallStatus="completed", CallDuration="30")
    assert svc.redis.hget(keys.call(sid), "esc_state") == "abandoned"
    root = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0",
                                   CallSid="CA" + "5" * 32))
    assert verbs(root) == ["Say", "Hangup"]
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="completed")
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 1


def test_a_refused_sv_number_moves_to_the_next(roster, twilio_post, svc, clock, fake_twilio,
                                              run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    fake_twilio.fail_next.append((400, 21215))
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2, SV_GENERAL_3]
    log = json.loads(svc.redis.lindex(keys.escalation_log(sid), 0))
    assert log["result"] == "failed:21215"


def test_twilio_5xx_leaves_the_attempt_to_retry(roster, twilio_post, svc, clock, fake_twilio,
                                               run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    fake_twilio.fail_next.append((503, 20500))
    run_jobs()
    assert not svc.redis.exists(keys.escalation_leg(sid, 0))
    assert svc.redis.hget(keys.call(sid), "esc_attempt") == "0"


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_twilio_error_that_may_have_placed_the_call_never_rings_the_sv_again(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, status):
    sid = repeat_caller(twilio_post, clock, CALLER)
    fake_twilio.fail_next.append((status, 20500))
    run_jobs()
    assert svc.redis.get(keys.escalation_leg(sid, 0)) == "pending"
    assert ScheduledJobRegistry(queue=svc.queue).get_job_ids() == [f"esc-watch-{sid}-0"]
    clock.tick(61)  # the watchdog moves on to the next SV; the first is asked once only
    release_due_jobs(svc)
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2, SV_GENERAL_3]


def test_nobody_on_call_goes_straight_to_the_priority_queue(twilio_post, svc, clock,
                                                           fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    root = call_in(twilio_post, sid)
    assert verbs(root)[-2:] == ["Say", "Enqueue"]
    assert root[-2].text.startswith("大変お待たせして申し訳ございません。")
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [sid]
    run_jobs()
    assert sv_legs(fake_twilio) == []


def test_english_caller_and_english_sv(admin, twilio_post, svc, clock, fake_twilio, run_jobs):
    admin.put("/api/supervisors", json=[{"name": "Alex", "phone": SV_GENERAL_2,
                                         "skills": ["general"], "level": 2, "on_call": True,
                                         "order": 1, "lang": "en"}])
    add_customer(svc, CALLER, language="en", name="Pat Smith")
    sid = repeat_caller(twilio_post, clock, CALLER)
    root = call_in(twilio_post, sid)
    assert root[-3].text == ("We are very sorry you have had to call us again. A supervisor will "
                             "take your call. Could you hold for a moment, please?")
    assert root[-3].attrib["language"] == "en-US"
    run_jobs()
    whisper = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0"))
    text = whisper[0].find("Say").text
    assert text.startswith("Escalation. A repeat caller. Pat Smith, call number 3 within 24 hours.")
    assert whisper[0].find("Say").attrib["language"] == "en-US"


def test_sv_webhooks_refuse_bad_targets(twilio_post):
    for query in ("", "?call=bogus&attempt=0", f"?call=CA{'1' * 32}&attempt=x",
                  f"?call=CA{'1' * 32}&attempt=99999"):
        root = parse_twiml(twilio_post(f"/voice/sv-whisper{query}"))
        assert verbs(root) == ["Say", "Hangup"]
        root = parse_twiml(twilio_post(f"/voice/sv-connect{query}", Digits="1"))
        assert verbs(root) == ["Say", "Hangup"]
        assert list(parse_twiml(twilio_post(f"/voice/escalation-status{query}",
                                            CallStatus="busy"))) == []




def exhaust_ladder(twilio_post, sid, run_jobs) -> None:
    """Neither SV of the repeat ladder answers: the caller is back at the front of the queue."""
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="no-answer")
    run_jobs()
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=1", CallStatus="no-answer")
    run_jobs()
    parse_twiml(twilio_post("/voice/requeue", CallSid=sid))


def test_escalating_the_same_call_again_rings_an_sv_again(roster, twilio_post, svc, clock,
                                                          fake_twilio, run_jobs, admin):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    exhaust_ladder(twilio_post, sid, run_jobs)
    assert svc.redis.hget(keys.call(sid), "esc_state") == "exhausted"
    assert len(sv_legs(fake_twilio)) == 2
    clock.tick(120)

    response = admin.post(f"/api/calls/{sid}/escalate", json={"note": "再度お願いします"})
    assert response.status_code == 202, response.get_json()
    run_jobs()
    legs = sv_legs(fake_twilio)
    assert len(legs) == 3
    # attempts count on from the first escalation (0, 1, and 2 found the list exhausted)
    assert legs[2].one("Url") == f"{PUBLIC_BASE_URL}/voice/sv-whisper?call={sid}&attempt=3"
    assert svc.redis.hget(keys.call(sid), "esc_state") == "ringing"
    assert f"esc-watch-{sid}-3" in ScheduledJobRegistry(queue=svc.queue).get_job_ids()
    # a late callback of the first escalation's legs moves nothing
    twilio_post(f"/voice/escalation-status?call={sid}&attempt=0", CallStatus="no-answer")
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 3
    leg_sid = svc.redis.hget(keys.call(sid), "esc_sv_call_sid")
    root = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=3", Digits="1",
                                   CallSid=leg_sid))
    assert verbs(root) == ["Say", "Dial"]
    assert root[1].find("Conference").text == sid


def test_a_call_escalated_again_shows_none_of_the_first_escalations_sv_or_outcome(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, admin):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    exhaust_ladder(twilio_post, sid, run_jobs)
    admin.post(f"/api/calls/{sid}/outcome", json={"result": "unresolved", "note": "不在"})
    clock.tick(120)

    admin.post(f"/api/calls/{sid}/escalate", json={"note": "再度お願いします"})

    esc = admin.get(f"/api/calls/{sid}").get_json()["escalation"]
    assert (esc["state"], esc["supervisor"], esc["outcome"]) == ("dialing", None, None)


def test_a_second_escalation_is_not_blocked_by_the_first_ones_leg_claims(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, admin):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    exhaust_ladder(twilio_post, sid, run_jobs)
    for job_key in svc.rq_redis.keys(b"rq:job:esc-*"):  # RQ's results expired long ago
        svc.rq_redis.delete(job_key)
    clock.tick(900)
    assert admin.post(f"/api/calls/{sid}/escalate", json={}).status_code == 202
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 3
    assert svc.redis.get(keys.escalation_leg(sid, 3)) == svc.redis.hget(keys.call(sid),
                                                                       "esc_sv_call_sid")


def test_no_connection_to_twilio_dials_the_same_sv_once_on_the_jobs_retry(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, monkeypatch):
    sid = repeat_caller(twilio_post, clock, CALLER)
    monkeypatch.setenv("TWILIO_API_BASE_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    forget_worker_services()
    run_jobs()
    assert not svc.redis.exists(keys.escalation_leg(sid, 0))
    assert sorted(ScheduledJobRegistry(queue=svc.queue).get_job_ids()) == sorted(
        [f"esc-{sid}-0", f"esc-watch-{sid}-0"])  # the dial's retry, and the watchdog anyway

    monkeypatch.setenv("TWILIO_API_BASE_URL", fake_twilio.url)
    forget_worker_services()
    clock.tick(2)
    release_due_jobs(svc)
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2]
    record = svc.redis.hgetall(keys.call(sid))
    assert (record["esc_state"], record["esc_attempt"]) == ("ringing", "0")


def test_twilio_unreachable_on_every_try_the_watchdog_still_moves_on(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, monkeypatch):
    sid = repeat_caller(twilio_post, clock, CALLER)
    monkeypatch.setenv("TWILIO_API_BASE_URL", f"http://127.0.0.1:{free_port()}")
    forget_worker_services()
    for wait in (0, 2, 5, 10):  # the first try and the three retries all fail
        clock.tick(wait)
        release_due_jobs(svc)
        run_jobs()
    assert svc.redis.hget(keys.call(sid), "esc_attempt") == "0"
    monkeypatch.setenv("TWILIO_API_BASE_URL", fake_twilio.url)
    forget_worker_services()
    clock.tick(60 - 17)
    release_due_jobs(svc)
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_3]
    assert json.loads(svc.redis.lindex(keys.escalation_log(sid), 0))["result"] == "timeout"


def test_a_dial_out_with_an_unknown_outcome_is_never_placed_again(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, monkeypatch):
    sid = repeat_caller(twilio_post, clock, CALLER)
    patient = services_module.TWILIO_TIMEOUT
    monkeypatch.setattr(services_module, "TWILIO_TIMEOUT", 0.2)
    forget_worker_services()
    # Twilio holds the request (gate closed) and never answers it while the worker waits, so
    # the worker's read timeout always expires, however slowly the fake's thread takes it up
    fake_twilio.gate.clear()
    run_jobs()
    assert svc.redis.get(keys.escalation_leg(sid, 0)) == "pending"
    assert ScheduledJobRegistry(queue=svc.queue).get_job_ids() == [f"esc-watch-{sid}-0"]
    fake_twilio.wait_until(lambda: fake_twilio.held == 1, "the dial-out held")
    fake_twilio.gate.set()  # ...and places the call after all
    fake_twilio.wait_until(lambda: len(sv_legs(fake_twilio)) == 1, "the held dial-out placed")
    assert svc.redis.get(keys.escalation_leg(sid, 0)) == "pending"
    monkeypatch.setattr(services_module, "TWILIO_TIMEOUT", patient)  # no timeouts from here
    forget_worker_services()
    svc.queue.enqueue("worker.escalation.dial_supervisor", sid, 0)  # a redelivered job
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 1

    clock.tick(61)
    release_due_jobs(svc)
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2, SV_GENERAL_3]


def test_a_retried_key_press_joins_the_accepting_sv_again(roster, twilio_post, svc, clock,
                                                         fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    leg_sid = svc.redis.hget(keys.call(sid), "esc_sv_call_sid")
    path = f"/voice/sv-connect?call={sid}&attempt=0"
    first = parse_twiml(twilio_post(path, Digits="1", CallSid=leg_sid))
    again = parse_twiml(twilio_post(path, Digits="1", CallSid=leg_sid))  # Twilio retries it
    assert verbs(again) == ["Say", "Dial"]
    assert again[0].text == "お客様におつなぎします。"
    assert again[1].find("Conference").text == sid
    assert again[1].find("Conference").attrib == first[1].find("Conference").attrib
    logged = [json.loads(x)["result"] for x in svc.redis.lrange(keys.escalation_log(sid), 0, -1)]
    assert logged == ["accepted"]  # accepted and counted once
    # another leg pressing 1 for the same attempt is still turned away
    other = parse_twiml(twilio_post(path, Digits="1", CallSid="CA" + "6" * 32))
    assert verbs(other) == ["Say", "Hangup"]


def test_a_retried_key_press_joins_again_when_the_dial_out_never_learned_its_leg(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs):
    """The dial-out's answer timed out (or its worker died after placing the call), so the
    record has no leg CallSid: the leg that pressed 1 is the one that accepted."""
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    leg_sid = svc.redis.hget(keys.call(sid), "esc_sv_call_sid")
    svc.redis.hdel(keys.call(sid), "esc_sv_call_sid")
    path = f"/voice/sv-connect?call={sid}&attempt=0"
    assert verbs(parse_twiml(twilio_post(path, Digits="1", CallSid=leg_sid))) == ["Say", "Dial"]
    again = parse_twiml(twilio_post(path, Digits="1", CallSid=leg_sid))  # Twilio retries it
    assert verbs(again) == ["Say", "Dial"]
    assert again[1].find("Conference").text == sid
    other = parse_twiml(twilio_post(path, Digits="1", CallSid="CA" + "6" * 32))
    assert verbs(other) == ["Say", "Hangup"]


def test_a_retried_call_with_nobody_on_call_escalates_once(admin, twilio_post, svc, clock):
    inc = declare(admin)
    add_customer(svc, CALLER)
    waiting = new_sid()
    call_in(twilio_post, waiting, "+819099990000")
    twilio_post("/voice/gather", CallSid=waiting, Digits="1")
    sid = repeat_caller(twilio_post, clock, CALLER)
    place = svc.redis.zscore(keys.waiting(), sid)
    clock.tick(5)
    root = call_in(twilio_post, sid)  # Twilio retries /voice/incoming
    assert verbs(root)[-2:] == ["Say", "Enqueue"]
    assert root[-2].text.startswith("大変お待たせして申し訳ございません。")
    assert svc.redis.hget(keys.incident_counters(inc["id"]), "escalations") == "1"
    assert svc.redis.hgetall(keys.metrics_escalations()) == {"repeat|exhausted": "1"}
    assert svc.redis.hget(keys.metrics_calls_by_kinds(), "priority") == "1"
    assert svc.redis.zscore(keys.waiting(), sid) == place
    assert svc.redis.zrange(keys.waiting(), 0, -1) == [sid, waiting]


def test_a_retried_manager_request_with_nobody_on_call_escalates_once(twilio_post, svc, clock):
    sid = new_sid()
    call_in(twilio_post, sid)
    twilio_post("/voice/gather", CallSid=sid, SpeechResult="責任者を出して")
    place = svc.redis.zscore(keys.waiting(), sid)
    clock.tick(5)
    root = parse_twiml(twilio_post("/voice/gather", CallSid=sid, SpeechResult="責任者を出して"))
    assert verbs(root) == ["Say", "Enqueue"]
    assert svc.redis.hgetall(keys.metrics_escalations()) == {"manager|exhausted": "1"}
    assert svc.redis.zscore(keys.waiting(), sid) == place


def test_without_a_from_number_the_sv_is_rung_from_the_number_the_caller_dialled(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs, monkeypatch):
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "")  # SMS go through a Messaging Service
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "0" * 32)
    forget_worker_services()
    support_line = "+815098765432"
    for _ in range(3):
        sid = new_sid()
        parse_twiml(twilio_post("/voice/incoming", CallSid=sid, From=CALLER, To=support_line))
        clock.tick(600)
    run_jobs()
    assert [(leg.one("To"), leg.one("From")) for leg in sv_legs(fake_twilio)] == [
        (SV_GENERAL_2, support_line)]


def test_a_configured_from_number_is_the_svs_caller_id(roster, twilio_post, svc, clock,
                                                      fake_twilio, run_jobs):
    for _ in range(3):
        sid = new_sid()
        parse_twiml(twilio_post("/voice/incoming", CallSid=sid, From=CALLER,
                                To="+815098765432"))
        clock.tick(600)
    run_jobs()
    assert [leg.one("From") for leg in sv_legs(fake_twilio)] == ["+815012345678"]


def test_the_watchdog_gives_an_sv_who_answered_the_join_timeout_from_the_answer(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    leg_sid = svc.redis.hget(keys.call(sid), "esc_sv_call_sid")
    clock.tick(18)  # the SV answers and hears the whisper
    parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0", CallSid=leg_sid))
    clock.tick(43)  # 61 s after the dial-out: the first watchdog is due
    release_due_jobs(svc)
    run_jobs()
    assert fake_twilio.calls_updated() == []
    assert len(sv_legs(fake_twilio)) == 1
    root = parse_twiml(twilio_post(f"/voice/sv-connect?call={sid}&attempt=0", Digits="1",
                                   CallSid=leg_sid))
    assert verbs(root) == ["Say", "Dial"]
    clock.tick(60)
    release_due_jobs(svc)
    run_jobs()
    assert svc.redis.hget(keys.call(sid), "esc_state") == "accepted"
    assert fake_twilio.calls_updated() == []


def test_an_sv_who_answered_but_never_presses_a_key_is_let_go_join_timeout_later(
        roster, twilio_post, svc, clock, fake_twilio, run_jobs):
    sid = repeat_caller(twilio_post, clock, CALLER)
    run_jobs()
    leg_sid = svc.redis.hget(keys.call(sid), "esc_sv_call_sid")
    clock.tick(18)
    whisper = f"/voice/sv-whisper?call={sid}&attempt=0"
    parse_twiml(twilio_post(whisper, CallSid=leg_sid))
    clock.tick(43)
    release_due_jobs(svc)
    run_jobs()
    assert len(sv_legs(fake_twilio)) == 1  # still listening 43 s after answering
    clock.tick(10)
    parse_twiml(twilio_post(whisper, CallSid=leg_sid))  # a stray key: the whisper again
    clock.tick(7)  # 60 s after the answer; the repeated whisper did not push it back
    release_due_jobs(svc)
    run_jobs()
    assert [leg.one("To") for leg in sv_legs(fake_twilio)] == [SV_GENERAL_2, SV_GENERAL_3]
    ended = fake_twilio.calls_updated()
    assert [e.path.rsplit("/", 1)[1] for e in ended] == [f"{leg_sid}.json"]
    assert ended[0].one("Status") == "completed"
    assert json.loads(svc.redis.lindex(keys.escalation_log(sid), 0))["result"] == "timeout"


def test_the_whisper_counts_calls_in_the_repeat_window_of_the_flows(roster, twilio_post, svc,
                                                                   clock):
    repeat = {**svc.flows.escalation["repeat"], "window_hours": 48}
    svc.flows = dataclasses.replace(
        svc.flows, escalation={**svc.flows.escalation, "repeat": repeat})
    sid = repeat_caller(twilio_post, clock, CALLER)
    whisper = parse_twiml(twilio_post(f"/voice/sv-whisper?call={sid}&attempt=0"))
    assert "未登録のお客様、48時間以内に3回目のお電話です。" in whisper[0].find("Say").text
