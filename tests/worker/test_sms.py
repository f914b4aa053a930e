"""SMS first report and progress updates, run by a real RQ worker against the fake Twilio."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ivr import keys
from tests.conftest import PUBLIC_BASE_URL, BurstWorker
from tests.factories import add_customer, declare

JA = "+819012340001"
EN = "+819012340002"
VIP = "+819012340003"
LANDLINE = "+81312345678"
OPTED_OUT = "+819012340004"
DECLINED = "+819012340005"
ELSEWHERE = "+819012340006"


@pytest.fixture
def customers(svc) -> None:
    add_customer(svc, JA)
    add_customer(svc, EN, language="en", name="Pat")
    add_customer(svc, VIP, tier="vip", services=["mail", "web"])
    add_customer(svc, LANDLINE, mobile=False)
    add_customer(svc, OPTED_OUT)
    svc.redis.sadd(keys.sms_optout(), OPTED_OUT)
    add_customer(svc, DECLINED, sms_opt_in=False)
    add_customer(svc, ELSEWHERE, services=["web"], region="kansai")
    for phone in (JA, EN, VIP, LANDLINE, OPTED_OUT, DECLINED):
        svc.redis.sadd(keys.customers_by_service("mail"), phone)
    svc.redis.sadd(keys.customers_by_service("web"), VIP, ELSEWHERE)


def bodies(fake_twilio) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for message in fake_twilio.messages:
        out.setdefault(message["to"], []).append(message["body"])
    return out


def test_first_report_goes_once_to_every_affected_mobile_that_wants_it(
        admin, customers, svc, fake_twilio, run_jobs):
    inc = declare(admin)
    assert inc["sms_preview"]["ja"]["segments"] >= 1
    run_jobs()
    sent = bodies(fake_twilio)
    assert sorted(sent) == sorted([JA, EN, VIP])
    ja = sent[JA][0].split("\n")
    assert ja[0] == "【サポートセンター】メール障害のお知らせ"
    assert ja[1] == "現在、メールサービスがご利用いただけない状況です。"
    assert "原因と影響範囲は現在確認中です。" in ja
    assert "復旧見込み: 現在確認中です" in ja
    assert "次回のお知らせ: 11時00分ごろ" in ja
    assert ja[-1].startswith(f"配信停止: {PUBLIC_BASE_URL}/u/")
    assert sent[EN][0].startswith("[サポートセンター] メール障害\nOur mail service is currently "
                                  "unavailable.")
    posts = fake_twilio.messages_sent()
    assert {p.one("StatusCallback") for p in posts} == {f"{PUBLIC_BASE_URL}/sms/status"}
    assert {p.one("From") for p in posts} == {"+815012345678"}
    shown = admin.get(f"/api/incidents/{inc['id']}").get_json()
    assert shown["counters"]["sms_sent"] == 3
    for message in fake_twilio.messages:
        record = svc.redis.hgetall(keys.sms_message(message["sid"]))
        assert (record["incident_id"], record["seq"]) == (inc["id"], "0")


def test_a_number_in_scope_with_no_customer_record_is_texted_only_if_mobile(
        admin, svc, fake_twilio, run_jobs):
    mobile, landline = "+819012349999", "+81312349999"
    declare(admin, scope={"numbers": [mobile, landline]}, audience="affected")
    run_jobs()
    assert fake_twilio.sent_to() == {mobile: 1}


def test_duplicate_enqueues_and_repeated_batches_send_nothing_twice(
        admin, customers, svc, fake_twilio, run_jobs):
    inc = declare(admin)
    run_jobs()
    svc.sms_queue.enqueue("worker.sms.fan_out", inc["id"], 0, job_id="again-1")
    svc.sms_queue.enqueue("worker.sms.send_batch", inc["id"], 0, [JA, EN, VIP],
                          job_id="again-2")
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1, EN: 1, VIP: 1}
    fan_out = svc.redis.hgetall(keys.sms_fanout(inc["id"], 0))  # the live view's counts
    assert (fan_out["sent"], fan_out.get("failed", "0")) == ("3", "0")
    assert fan_out["queued"] == str(svc.redis.scard(keys.sms_audience(inc["id"], 0)))
    assert 0 < svc.redis.ttl(keys.sms_fanout(inc["id"], 0)) <= keys.SMS_TTL


def test_an_update_resolved_before_it_went_out_is_not_sent(admin, customers, fake_twilio,
                                                          run_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    admin.post(f"/api/incidents/{inc['id']}/resolve", json={"message": "復旧しました。"})
    run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 1
    assert texts[0].startswith("【サポートセンター】メール障害は復旧いたしました")


def test_notify_false_sends_nothing(admin, customers, fake_twilio, run_jobs):
    declare(admin, notify=False)
    run_jobs()
    assert fake_twilio.messages == []


def test_a_claim_left_by_a_dead_worker_is_settled_from_twilios_record(
        admin, customers, svc, fake_twilio, run_jobs, clock):
    from ivr import progress
    from ivr.optout import optout_url

    inc = declare(admin, scope={"numbers": [JA]}, audience="affected", notify=False)
    doc = admin.get(f"/api/incidents/{inc['id']}").get_json()
    body = progress.sms_text(svc, doc, doc["timeline"][0], "ja", optout_url(svc.config, JA))
    # the worker died after Twilio took the message but before it stored the MessageSid
    fake_twilio.messages.append({"sid": "SM" + "a" * 32, "to": JA, "body": body,
                                 "status": "sent", "date_created": None})
    claim = keys.sms_claim(inc["id"], 0, JA)
    svc.redis.set(claim, f"pending:{int(clock.time_to_freeze.timestamp())}")
    clock.tick(120)
    svc.sms_queue.enqueue("worker.sms.send_batch", inc["id"], 0, [JA])
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1}
    assert len(fake_twilio.messages_sent()) == 0
    assert svc.redis.get(claim) == "SM" + "a" * 32


def test_a_stale_claim_with_nothing_at_twilio_is_sent_once(admin, customers, svc, fake_twilio,
                                                          run_jobs, clock):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected", notify=False)
    claim = keys.sms_claim(inc["id"], 0, JA)
    svc.redis.set(claim, f"pending:{int(clock.time_to_freeze.timestamp())}")
    svc.sms_queue.enqueue("worker.sms.send_batch", inc["id"], 0, [JA])
    run_jobs()
    assert fake_twilio.messages == []  # in flight elsewhere: not touched
    clock.tick(61)
    svc.sms_queue.enqueue("worker.sms.send_batch", inc["id"], 0, [JA])
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1}
    assert svc.redis.get(claim).startswith("SM")


class HeldUpRate:
    """A rate limiter that keeps the first sender waiting while `meanwhile` runs."""

    def __init__(self, meanwhile) -> None:
        self.meanwhile = meanwhile

    def acquire(self, count: int) -> float:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return 0.0


def test_a_sender_held_up_past_the_settle_time_sends_nothing_once_its_claim_is_taken(
        admin, customers, svc, fake_twilio, clock):
    from worker import sms

    inc = declare(admin, scope={"numbers": [JA]}, audience="affected", notify=False)

    def another_worker() -> None:
        clock.tick(61)  # the claim now looks abandoned, and Twilio has nothing
        assert sms._claim_and_send(svc, inc["id"], 0, JA, "本文", sms._rate(svc)) == "sent"

    assert sms._claim_and_send(svc, inc["id"], 0, JA, "本文", HeldUpRate(another_worker)) \
        == "skipped"
    assert fake_twilio.sent_to() == {JA: 1}
    assert svc.redis.hget(keys.incident_counters(inc["id"]), "sms_sent") == "1"


def test_a_message_settled_while_its_sender_waited_for_twilio_is_counted_once(
        admin, customers, svc, fake_twilio, clock):
    from ivr.delivery import StatusCallback, record_status
    from worker import sms

    inc = declare(admin, scope={"numbers": [JA]}, audience="affected", notify=False)
    claim = keys.sms_claim(inc["id"], 0, JA)

    def another_worker(message) -> None:
        # Twilio took the message; its sender has not heard back yet
        fake_twilio.on_message = None
        clock.tick(61)
        assert sms._claim_and_send(svc, inc["id"], 0, JA, "本文", sms._rate(svc)) == "skipped"
        assert svc.redis.get(claim) == message["sid"]  # settled from Twilio's record
        record_status(svc, StatusCallback(message["sid"], "delivered", None, JA))

    fake_twilio.on_message = another_worker
    assert sms._claim_and_send(svc, inc["id"], 0, JA, "本文", sms._rate(svc)) == "sent"

    (message,) = fake_twilio.messages
    assert svc.redis.get(claim) == message["sid"]
    assert svc.redis.hget(keys.sms_message(message["sid"]), "status") == "delivered"
    counters = svc.redis.hgetall(keys.incident_counters(inc["id"]))
    assert (counters["sms_sent"], counters["sms_delivered"]) == ("1", "1")
    assert svc.redis.hget(keys.metrics_sms(), "sent") == "1"
    fan_out = svc.redis.hgetall(keys.sms_fanout(inc["id"], 0))
    assert (fan_out["sent"], fan_out["delivered"]) == ("1", "1")


@pytest.mark.parametrize("code", [21211, 21408])  # refused for this number; halts the fan-out
def test_a_sender_answered_after_its_claim_was_taken_leaves_the_claim_alone(admin, customers,
                                                                            svc, code):
    from twilio.base.exceptions import TwilioRestException

    from worker import sms

    inc = declare(admin, scope={"numbers": [JA]}, audience="affected", notify=False)
    claim = keys.sms_claim(inc["id"], 0, JA)
    svc.redis.set(claim, "SM" + "c" * 32)  # another worker took over and sent meanwhile
    refused = TwilioRestException(400, "https://api.twilio.test", "refused", code=code)

    sms._refused(svc, inc["id"], 0, JA, claim, "pending:1:0a1b2c3d", refused)
    assert sms._release(svc, claim, "pending:1:0a1b2c3d", inc["id"]) is False

    assert svc.redis.get(claim) == "SM" + "c" * 32
    assert svc.redis.hget(keys.incident_counters(inc["id"]), "sms_failed") == "0"
    assert svc.redis.hget(keys.metrics_sms(), "failed") is None


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_transient_errors_are_retried(admin, customers, svc, fake_twilio, run_jobs, status, code):
    fake_twilio.fail_next.append((status, code))
    declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1}
    assert len(fake_twilio.messages_sent()) == 2


def test_permanent_errors_are_recorded_not_retried(admin, customers, svc, fake_twilio,
                                                   run_jobs):
    fake_twilio.fail_next.append((400, 21211))
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    assert fake_twilio.messages == []
    assert len(fake_twilio.messages_sent()) == 1
    assert svc.redis.get(keys.sms_claim(inc["id"], 0, JA)) == "failed:21211"
    assert admin.get(f"/api/incidents/{inc['id']}").get_json()["counters"]["sms_failed"] == 1
    assert svc.redis.hgetall(keys.metrics_sms()) == {"failed": "1"}


def test_21610_marks_the_number_opted_out(admin, customers, svc, fake_twilio, run_jobs):
    fake_twilio.fail_next.append((400, 21610))
    declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    assert svc.redis.sismember(keys.sms_optout(), JA)


def test_21408_halts_the_fan_out_and_keeps_the_rest_unsent(admin, customers, svc, fake_twilio,
                                                           run_jobs):
    fake_twilio.fail_next.append((400, 21408))
    inc = declare(admin)
    run_jobs()
    assert fake_twilio.messages == []
    assert len(fake_twilio.messages_sent()) == 1
    assert svc.redis.get(keys.sms_halt(inc["id"], 0)) == "21408"
    for phone in (JA, EN, VIP):
        assert not svc.redis.exists(keys.sms_claim(inc["id"], 0, phone))


@pytest.mark.parametrize("code", [21211, 21614, 21635])
def test_a_number_twilio_refuses_for_good_is_not_tried_again_by_later_updates(
        admin, customers, svc, fake_twilio, run_jobs, code):
    fake_twilio.fail_next.append((400, code))
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "調査中です。"})
    run_jobs()
    assert len(fake_twilio.messages_sent()) == 1
    assert json.loads(svc.redis.get(keys.sms_undeliverable(JA))) == {
        "error_code": code, "until": "2026-12-23T01:00:00Z"}  # flows/sms.yaml: 30 days
    assert 29 * 86400 < svc.redis.ttl(keys.sms_undeliverable(JA)) <= 30 * 86400


@pytest.mark.parametrize("way_back", ["upsert", "import"])
def test_an_upsert_or_import_of_the_customer_lets_a_refused_number_be_tried_again(
        admin, customers, svc, fake_twilio, run_jobs, way_back):
    fake_twilio.fail_next.append((400, 21211))
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    assert svc.redis.exists(keys.sms_undeliverable(JA))

    if way_back == "upsert":  # ops corrected or confirmed the number
        assert admin.put("/api/customers", json={"phone": JA}).status_code == 200
    else:
        assert admin.post("/api/customers/import", data=f"phone\n{JA}\n".encode(),
                          content_type="text/csv").status_code == 200
    admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "調査中です。"})
    run_jobs()

    assert len(fake_twilio.messages_sent()) == 2
    assert fake_twilio.sent_to() == {JA: 1}


def test_a_number_twilio_cannot_reach_now_is_tried_again_by_the_next_update(
        admin, customers, svc, fake_twilio, run_jobs):
    fake_twilio.fail_next.append((400, 21612))
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "調査中です。"})
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1}
    assert svc.redis.get(keys.sms_claim(inc["id"], 0, JA)) == "failed:21612"


@pytest.mark.parametrize(("status", "code"), [(401, 20003), (400, 21606), (404, 20404),
                                              (400, 21408), (403, 99999)])
def test_a_refusal_not_about_the_number_halts_the_fan_out_for_a_resume(
        admin, app, customers, svc, fake_twilio, run_jobs, status, code):
    fake_twilio.fail_next.extend([(status, code)] * 3)
    inc = declare(admin)
    run_jobs()
    assert len(fake_twilio.messages_sent()) == 1
    assert svc.redis.get(keys.sms_halt(inc["id"], 0)) == str(code)
    for phone in (JA, EN, VIP):
        assert not svc.redis.exists(keys.sms_claim(inc["id"], 0, phone))
    assert admin.get(f"/api/incidents/{inc['id']}").get_json()["counters"]["sms_failed"] == 0
    assert list(svc.redis.scan_iter(keys.sms_undeliverable("*"))) == []
    fake_twilio.fail_next.clear()  # ops fixed the account, and resume
    resumed = resume_cli(app, inc["id"], "0")
    assert resumed.exit_code == 0, resumed.output
    assert f"halted by Twilio error {code}" in resumed.output
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1, EN: 1, VIP: 1}
    again = resume_cli(app, inc["id"], "0")
    assert again.exit_code == 1
    assert "is not halted" in again.output


def resume_cli(app: Any, *args: str) -> Any:
    """`ivr sms-resume ...` against the test app."""
    from click.testing import CliRunner
    from flask.cli import ScriptInfo

    from ivr.cli import cli

    return CliRunner().invoke(cli, ["sms-resume", *args], obj=ScriptInfo(create_app=lambda: app))


@pytest.mark.parametrize("code", [21266, 21265, 21611, 99999])
def test_a_refusal_of_one_odd_number_fails_that_number_and_the_others_get_theirs(
        admin, customers, svc, fake_twilio, run_jobs, code):
    """The sender's own number, a short code, a code Twilio adds tomorrow: about that number
    only, so the rest of the update still goes out and nothing waits for a resume."""
    fake_twilio.fail_next.append((400, code))
    inc = declare(admin)
    run_jobs()
    assert not svc.redis.exists(keys.sms_halt(inc["id"], 0))
    assert len(fake_twilio.messages_sent()) == 3
    failed = [p for p in (JA, EN, VIP)
              if svc.redis.get(keys.sms_claim(inc["id"], 0, p)) == f"failed:{code}"]
    assert len(failed) == 1
    assert not svc.redis.exists(keys.sms_undeliverable(failed[0]))


def test_announcement_over_the_segment_limit_is_refused_and_nothing_written(admin, svc):
    before = svc.redis.dbsize()
    response = admin.post("/api/incidents", json={
        "title": "障害", "severity": "major", "announcement": {"ja": "あ" * 300}})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "announcement.ja"
    assert "over the limit of 4" in error["message"]
    assert "shorten it by" in error["message"]
    assert svc.redis.dbsize() == before
    assert svc.sms_queue.count == 0


def test_update_is_sent_at_once_and_restarts_the_clock(admin, customers, svc, fake_twilio,
                                                      run_jobs, clock, release_due_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    clock.tick(30 * 60)  # 10:30
    response = admin.post(f"/api/incidents/{inc['id']}/updates",
                          json={"message": "原因を特定しました。", "status": "identified"})
    assert response.status_code == 201
    assert response.get_json()["incident"]["next_update_at"] == "2026-11-23T02:30:00Z"
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 2
    assert "原因を特定しました。" in bodies(fake_twilio)[JA][1]
    assert "次回のお知らせ: 11時30分ごろ" in bodies(fake_twilio)[JA][1]
    clock.tick(30 * 60)  # 11:00, the first due time, now superseded
    release_due_jobs()
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 2


def test_no_news_sends_still_working_with_the_next_time(admin, customers, svc, fake_twilio,
                                                       run_jobs, clock, release_due_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    clock.tick(60 * 60)  # 11:00
    release_due_jobs()
    run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 2
    assert "引き続き対応中です。" in texts[1]
    assert "次回のお知らせ: 12時00分ごろ" in texts[1]
    doc = admin.get(f"/api/incidents/{inc['id']}").get_json()
    assert doc["next_update_at"] == "2026-11-23T03:00:00Z"
    assert doc["timeline"][-1]["kind"] == "auto"


def _fails_once(monkeypatch, name: str) -> None:
    """progress.`name` raises once, as if Redis went away (or the worker died) right there."""
    from redis.exceptions import ConnectionError

    from ivr import progress

    real = getattr(progress, name)
    failed: list[bool] = []

    def fails_once(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise ConnectionError("connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(progress, name, fails_once)


@pytest.mark.parametrize("step", ["queue_fan_out", "schedule"])
def test_a_clock_job_that_fails_after_posting_its_update_sends_it_and_rearms_when_retried(
        admin, customers, svc, fake_twilio, run_jobs, clock, release_due_jobs, monkeypatch,
        step):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    _fails_once(monkeypatch, step)
    clock.tick(60 * 60)  # 11:00
    release_due_jobs()
    run_jobs()  # the update is recorded, then the job fails
    clock.tick(5)
    release_due_jobs()
    run_jobs()  # RQ's retry
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 2
    assert "引き続き対応中です。" in texts[1]
    kinds = [e["kind"] for e in admin.get(f"/api/incidents/{inc['id']}").get_json()["timeline"]]
    assert kinds == ["declared", "auto"]
    clock.move_to("2026-11-23T03:00:00Z")  # 12:00: the clock still runs
    release_due_jobs()
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 3


def test_a_clock_job_that_fails_after_holding_for_quiet_hours_rearms_when_retried(
        admin, customers, svc, fake_twilio, run_jobs, clock, release_due_jobs, monkeypatch):
    clock.move_to("2026-11-23T10:59:00Z")  # 19:59 in Tokyo
    declare(admin, scope={"numbers": [JA]}, audience="affected")  # major: due 20:59
    run_jobs()
    _fails_once(monkeypatch, "schedule")
    clock.move_to("2026-11-23T12:00:30Z")  # the job runs late, at 21:00:30: held to 08:00,
    release_due_jobs()  # then it fails
    run_jobs()
    clock.tick(5)
    release_due_jobs()
    run_jobs()  # RQ's retry arms 08:00
    assert len(bodies(fake_twilio)[JA]) == 1
    clock.move_to("2026-11-23T23:00:00Z")  # 08:00
    release_due_jobs()
    run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 2
    assert "引き続き対応中です。" in texts[1]


def test_a_minor_incident_made_critical_sends_its_next_update_on_the_critical_cadence(
        admin, customers, svc, fake_twilio, run_jobs, clock, release_due_jobs):
    inc = declare(admin, severity="minor", scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    clock.tick(10 * 60)
    admin.patch(f"/api/incidents/{inc['id']}", json={"severity": "critical"})
    clock.move_to("2026-11-23T01:30:00Z")  # 10:30, not 12:00
    release_due_jobs()
    run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 2
    assert "引き続き対応中です。" in texts[1]
    assert "次回のお知らせ: 11時00分ごろ" in texts[1]


def test_supervisor_is_reminded_ten_minutes_before(admin, customers, svc, fake_twilio, run_jobs,
                                                  clock, release_due_jobs):
    admin.put("/api/supervisors", json=[{"name": "高橋", "phone": "+819011110001",
                                         "skills": ["general"], "level": 3, "on_call": True,
                                         "order": 1}])
    declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    clock.tick(49 * 60)
    release_due_jobs()
    run_jobs()
    assert "+819011110001" not in bodies(fake_twilio)
    clock.tick(60)  # 10:50
    release_due_jobs()
    run_jobs()
    reminder = bodies(fake_twilio)["+819011110001"]
    assert reminder == ["【サポートセンター】メール障害: 次回の経過報告は11時00分です（あと10分）。"
                        "新しい情報があれば、それまでに更新を登録してください。"
                        "登録がない場合は「引き続き対応中です」と送信されます。"]


def test_quiet_hours_hold_routine_updates_but_not_first_reports(admin, customers, svc,
                                                               fake_twilio, run_jobs, clock,
                                                               release_due_jobs):
    clock.move_to("2026-11-23T12:30:00Z")  # 21:30 in Tokyo
    inc = declare(admin, severity="minor", scope={"numbers": [JA]}, audience="affected")
    assert inc["next_update_at"] == "2026-11-23T23:00:00Z"  # 08:00 next morning
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 1  # the first report is never held
    admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "調査を継続しています。"})
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 1  # the update waits for the morning
    clock.move_to("2026-11-23T23:00:00Z")
    release_due_jobs()
    run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert "調査を継続しています。" in texts[1]


def test_an_update_held_for_quiet_hours_restarts_the_clock_from_the_morning(
        admin, customers, svc, fake_twilio, run_jobs, clock, release_due_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")  # major, 10:00
    run_jobs()
    clock.move_to("2026-11-23T13:00:00Z")  # 22:00 in Tokyo
    response = admin.post(f"/api/incidents/{inc['id']}/updates",
                          json={"message": "原因を特定しました。"})
    assert response.get_json()["incident"]["next_update_at"] == "2026-11-24T00:00:00Z"
    assert response.get_json()["update"]["held_until"] == "2026-11-23T23:00:00Z"
    run_jobs()
    clock.move_to("2026-11-23T23:00:30Z")  # 08:00:30: the held update, and nothing else
    for _ in range(2):
        release_due_jobs()
        run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 2
    assert "原因を特定しました。" in texts[1]
    assert "次回のお知らせ: 9時00分ごろ" in texts[1]
    clock.move_to("2026-11-24T00:00:00Z")  # 09:00: no news since, so the automatic update
    release_due_jobs()
    run_jobs()
    texts = bodies(fake_twilio)[JA]
    assert len(texts) == 3
    assert "引き続き対応中です。" in texts[2]


def test_critical_updates_and_closing_messages_ignore_quiet_hours(admin, customers, svc,
                                                                 fake_twilio, run_jobs, clock,
                                                                 release_due_jobs):
    clock.move_to("2026-11-23T13:00:00Z")  # 22:00 in Tokyo
    inc = declare(admin, severity="critical", scope={"numbers": [JA]}, audience="affected")
    assert inc["next_update_at"] == "2026-11-23T13:30:00Z"
    run_jobs()
    clock.tick(30 * 60)
    release_due_jobs()
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 2
    minor = declare(admin, severity="minor", scope={"numbers": [EN]}, audience="affected")
    run_jobs()
    response = admin.post(f"/api/incidents/{minor['id']}/resolve",
                          json={"message": {"en": "Mail is back."}})
    assert response.status_code == 200
    run_jobs()
    assert bodies(fake_twilio)[EN][-1].startswith("[サポートセンター] Resolved: メール障害\n"
                                                  "Mail is back.")


def test_resolution_stops_the_clock(admin, customers, svc, fake_twilio, run_jobs, clock,
                                    release_due_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    admin.post(f"/api/incidents/{inc['id']}/resolve", json={"message": "復旧しました。"})
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 2
    assert bodies(fake_twilio)[JA][1].startswith("【サポートセンター】メール障害は復旧いたしました")
    clock.tick(2 * 3600)
    release_due_jobs()
    run_jobs()
    assert len(bodies(fake_twilio)[JA]) == 2


def test_sweep_requeues_a_recipient_whose_batch_was_lost(admin, customers, svc, fake_twilio,
                                                         run_jobs, clock, release_due_jobs):

    declare(admin)
    BurstWorker([svc.sms_queue], connection=svc.rq_redis).work(burst=True, max_jobs=1)
    assert svc.sms_queue.get_job_ids()  # the fan-out queued its batches…
    svc.sms_queue.empty()  # …and they are lost (say, out of retries)
    assert fake_twilio.messages == []
    clock.tick(10 * 60)
    release_due_jobs()
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1, EN: 1, VIP: 1}


def resolve_then_run_what_falls_due(admin, inc, fake_twilio, run_jobs, clock, release_due_jobs,
                                    *, minutes: int) -> list[str]:
    """Resolve the incident, then run every job due within `minutes` (a sweep, a resend):
    what JA was sent in all."""
    admin.post(f"/api/incidents/{inc['id']}/resolve", json={"message": "復旧しました。"})
    run_jobs()
    clock.tick(minutes * 60)
    release_due_jobs()
    run_jobs()
    return bodies(fake_twilio)[JA]


def test_a_sweep_after_the_resolution_does_not_send_the_old_update(
        admin, customers, svc, fake_twilio, run_jobs, clock, release_due_jobs):
    from rq.job import Job

    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    seq = admin.post(f"/api/incidents/{inc['id']}/updates",
                     json={"message": "調査中です。"}).get_json()["update"]["seq"]
    Job.fetch(f"fanout-{inc['id']}-{seq}", connection=svc.rq_redis).perform()
    svc.sms_queue.empty()  # the update's batches are lost; its sweep is armed
    texts = resolve_then_run_what_falls_due(admin, inc, fake_twilio, run_jobs, clock,
                                            release_due_jobs, minutes=10)
    assert len(texts) == 2
    assert texts[-1].startswith("【サポートセンター】メール障害は復旧いたしました")


def test_a_resend_after_the_resolution_does_not_send_the_old_update(
        admin, customers, svc, fake_twilio, run_jobs, clock, twilio_post, release_due_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    admin.post(f"/api/incidents/{inc['id']}/updates", json={"message": "調査中です。"})
    run_jobs()
    update = fake_twilio.messages[-1]["sid"]
    twilio_post("/sms/status", MessageSid=update, MessageStatus="undelivered",
                ErrorCode="30003", To=JA, AccountSid="AC" + "0" * 32)
    texts = resolve_then_run_what_falls_due(admin, inc, fake_twilio, run_jobs, clock,
                                            release_due_jobs, minutes=15)
    assert len(texts) == 3
    assert texts[-1].startswith("【サポートセンター】メール障害は復旧いたしました")


def test_a_temporary_carrier_failure_is_resent_once_later(admin, customers, svc, fake_twilio,
                                                         run_jobs, clock, twilio_post,
                                                         release_due_jobs):
    inc = declare(admin, scope={"numbers": [JA]}, audience="affected")
    run_jobs()
    first = fake_twilio.messages[0]["sid"]
    for _ in range(2):  # a duplicated callback still resends once
        twilio_post("/sms/status", MessageSid=first, MessageStatus="undelivered",
                    ErrorCode="30003", To=JA, AccountSid="AC" + "0" * 32)
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 1}  # not at once…
    clock.tick(15 * 60)
    release_due_jobs()
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 2}  # …but once, later, with the same text
    assert fake_twilio.messages[1]["body"] == fake_twilio.messages[0]["body"]
    second = fake_twilio.messages[1]["sid"]
    assert svc.redis.hget(keys.sms_message(second), "resend_of") == first
    twilio_post("/sms/status", MessageSid=second, MessageStatus="undelivered",
                ErrorCode="30003", To=JA, AccountSid="AC" + "0" * 32)
    clock.tick(15 * 60)
    release_due_jobs()
    run_jobs()
    assert fake_twilio.sent_to() == {JA: 2}  # a resend is never resent
    counters = admin.get(f"/api/incidents/{inc['id']}").get_json()["counters"]
    assert counters["sms_failed"] == 2


SEEN_BY_VOICE_JOB: list[int] = []
FAKE: list = []


def voice_job() -> None:
    """Stands for an SV dial-out: notes how many SMS had gone out when it ran."""
    SEEN_BY_VOICE_JOB.append(len(FAKE[0].messages))


def test_a_batch_hands_its_worker_back_when_a_voice_job_waits(admin, customers, svc,
                                                              fake_twilio, run_jobs):
    from worker.sms import send_batch

    inc = declare(admin)
    svc.sms_queue.empty()  # the fan-out job; this test runs the batch itself
    FAKE[:], SEEN_BY_VOICE_JOB[:] = [fake_twilio], []
    svc.queue.enqueue(voice_job)

    assert send_batch(inc["id"], 0, [JA, EN, VIP]) == {"sent": 1, "handed_back": 2}

    (rest,) = svc.sms_queue.get_jobs()
    assert rest.args == (inc["id"], 0, [EN, VIP])
    run_jobs()
    assert SEEN_BY_VOICE_JOB == [1]  # the voice job ran before the rest of the batch
    assert fake_twilio.sent_to() == {JA: 1, EN: 1, VIP: 1}
