"""/sms/status: the delivery record only moves forward and each final state counts once."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ivr import create_app, delivery, keys, undeliverable
from ivr.services import build_services
from tests.conftest import PUBLIC_BASE_URL, START, make_config, parse_twiml, sign
from tests.factories import add_customer, declare, new_message_sid

INCIDENT = "INC-20261123-0001"
PHONE = "+819012345678"
COUNTERS = ("calls", "affected_calls", "escalations", "sms_sent", "sms_delivered",
            "sms_failed")


def sent_message(svc: Any, phone: str = PHONE, **fields: str) -> str:
    """A message record as the sender job leaves it."""
    sid = new_message_sid()
    svc.redis.hset(keys.sms_message(sid), mapping={
        "incident_id": INCIDENT, "seq": "0", "to": phone, "status": "queued",
        "segments": "1", "created_at": START, **fields})
    svc.redis.expire(keys.sms_message(sid), keys.SMS_TTL)
    svc.redis.hset(keys.incident_counters(INCIDENT), mapping={c: 0 for c in COUNTERS})
    svc.redis.hincrby(keys.incident_counters(INCIDENT), "sms_sent", 1)
    return sid


@pytest.fixture
def callback(twilio_post: Any) -> Any:
    def post(sid: str, status: str, error_code: str | None = None, to: str = PHONE) -> Any:
        form = {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32,
                "MessageStatus": status, "SmsStatus": status, "To": to,
                "From": "+815012345678", "ApiVersion": "2010-04-01"}
        if error_code is not None:
            form["ErrorCode"] = error_code
        response = twilio_post("/sms/status", **form)
        assert list(parse_twiml(response)) == []  # 200, text/xml, an empty <Response/>
        return response

    return post


def record(svc: Any, sid: str) -> dict[str, str]:
    return svc.redis.hgetall(keys.sms_message(sid))


def counters(svc: Any) -> dict[str, int]:
    data = svc.redis.hgetall(keys.incident_counters(INCIDENT))
    return {"sent": int(data["sms_sent"]), "delivered": int(data["sms_delivered"]),
            "failed": int(data["sms_failed"])}


def resend_jobs(svc: Any) -> list[str]:
    return svc.sms_queue.scheduled_job_registry.get_job_ids()


def test_the_record_follows_the_message(svc, callback):
    sid = sent_message(svc)
    callback(sid, "sent")
    assert record(svc, sid)["status"] == "sent"
    assert counters(svc) == {"sent": 1, "delivered": 0, "failed": 0}

    callback(sid, "delivered")
    stored = record(svc, sid)
    assert stored["status"] == "delivered"
    assert stored["counted"] == "delivered"
    assert stored["status_at"] == "2026-11-23T01:00:00+00:00"
    assert counters(svc) == {"sent": 1, "delivered": 1, "failed": 0}
    assert 0 < svc.redis.ttl(keys.sms_message(sid)) <= keys.SMS_TTL


def test_duplicate_and_late_callbacks_never_count_twice_or_go_back(svc, callback):
    sid = sent_message(svc)
    callback(sid, "delivered")
    callback(sid, "delivered")
    callback(sid, "sent")  # late
    callback(sid, "queued")  # later still
    callback(sid, "undelivered", "30003")  # contradicts the first final state

    stored = record(svc, sid)
    assert stored["status"] == "delivered"
    assert stored["counted"] == "delivered"
    assert counters(svc) == {"sent": 1, "delivered": 1, "failed": 0}
    assert resend_jobs(svc) == []


def test_out_of_order_final_then_intermediate(svc, callback):
    sid = sent_message(svc)
    callback(sid, "undelivered", "30006")
    callback(sid, "sent")
    assert record(svc, sid)["status"] == "undelivered"
    assert record(svc, sid)["error_code"] == "30006"
    assert counters(svc) == {"sent": 1, "delivered": 0, "failed": 1}


@pytest.mark.parametrize("status", ["failed", "undelivered"])
def test_failures_count_as_failed(svc, callback, status):
    sid = sent_message(svc)
    callback(sid, status, "30007")
    callback(sid, status, "30007")
    assert counters(svc) == {"sent": 1, "delivered": 0, "failed": 1}
    assert record(svc, sid)["error_code"] == "30007"


def test_concurrent_duplicates_count_once(svc):
    sids = [sent_message(svc) for _ in range(5)]
    calls = [delivery.StatusCallback(sid, "delivered", None, PHONE) for sid in sids] * 8

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda cb: delivery.record_status(svc, cb), calls))

    assert sum(r.counted for r in results) == 5
    assert counters(svc)["delivered"] == 5


def test_21610_opts_the_number_out(svc, callback):
    sid = sent_message(svc)
    callback(sid, "failed", "21610")
    assert svc.redis.sismember(keys.sms_optout(), PHONE)
    assert counters(svc)["failed"] == 1
    assert not svc.redis.exists(keys.sms_undeliverable(PHONE))


def test_21610_uses_the_number_we_sent_to_not_the_form(svc, callback):
    sid = sent_message(svc)
    callback(sid, "failed", "21610", to="+819099999999")
    assert svc.redis.smembers(keys.sms_optout()) == {PHONE}


@pytest.mark.parametrize("code", ["30004", "30005", "30006"])
def test_carrier_refusals_mark_the_number_undeliverable(svc, callback, code):
    sid = sent_message(svc)
    callback(sid, "undelivered", code)
    assert undeliverable.get(svc, PHONE) == undeliverable.Mark(int(code), "2026-12-23T01:00:00Z")
    assert 29 * 86400 < svc.redis.ttl(keys.sms_undeliverable(PHONE)) <= 30 * 86400
    assert not svc.redis.sismember(keys.sms_optout(), PHONE)
    assert resend_jobs(svc) == []


@pytest.mark.parametrize("code", ["30003", "30008"])
def test_a_temporary_failure_schedules_exactly_one_resend(svc, callback, code):
    sid = sent_message(svc)
    callback(sid, "undelivered", code)
    callback(sid, "undelivered", code)
    callback(sid, "failed", code)

    assert resend_jobs(svc) == [f"resend-{sid}"]
    job = svc.sms_queue.fetch_job(f"resend-{sid}")
    assert job.func_name == "worker.sms.resend_message"
    assert job.args == (sid,)
    when = svc.sms_queue.scheduled_job_registry.get_scheduled_time(f"resend-{sid}")
    assert when == datetime(2026, 11, 23, 1, 15, tzinfo=UTC)
    assert record(svc, sid)["resend"] == "2026-11-23T01:00:00+00:00"
    assert counters(svc)["failed"] == 1
    assert not svc.redis.exists(keys.sms_undeliverable(PHONE))


def test_a_resent_message_is_not_resent_again(svc, callback):
    original = sent_message(svc)
    resent = sent_message(svc, seq="resend-0", resend_of=original)
    callback(resent, "undelivered", "30003")
    assert resend_jobs(svc) == []
    assert "resend" not in record(svc, resent)


def test_a_resend_is_scheduled_once_even_across_a_redelivery_much_later(svc, callback, clock):
    sid = sent_message(svc)
    callback(sid, "undelivered", "30008")
    clock.tick(timedelta(hours=1))
    callback(sid, "undelivered", "30008")
    assert resend_jobs(svc) == [f"resend-{sid}"]
    when = svc.sms_queue.scheduled_job_registry.get_scheduled_time(f"resend-{sid}")
    assert when == datetime(2026, 11, 23, 1, 15, tzinfo=UTC)


def halt_alerts(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ivr.delivery" and r.levelno == logging.ERROR]


@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_30007_halts_the_update_and_alerts_once(svc, callback, caplog, status):
    sid = sent_message(svc, seq="2")
    callback(sid, status, "30007")
    callback(sid, status, "30007")  # Twilio may post it twice

    assert svc.redis.get(keys.sms_halt(INCIDENT, 2)) == "30007"
    assert 0 < svc.redis.ttl(keys.sms_halt(INCIDENT, 2)) <= keys.SMS_TTL
    assert [k for k in svc.redis.scan_iter(keys.sms_halt(INCIDENT, "*"))] == [
        keys.sms_halt(INCIDENT, 2)]
    (alert,) = halt_alerts(caplog)
    assert alert.startswith(f"sms fan-out halted incident={INCIDENT} seq=2 code=30007 "
                            f"message_sid={sid}: ")
    assert counters(svc) == {"sent": 1, "delivered": 0, "failed": 1}
    assert resend_jobs(svc) == []
    assert not svc.redis.exists(keys.sms_undeliverable(PHONE))  # the number is fine


def test_30007_on_a_resend_halts_the_update_it_repeats(svc, callback):
    sid = sent_message(svc, seq="resend-1", resend_of=new_message_sid())
    callback(sid, "undelivered", "30007")
    assert svc.redis.get(keys.sms_halt(INCIDENT, 1)) == "30007"


def test_30007_on_a_one_off_message_alerts_without_halting_anything(svc, callback, caplog):
    sid = sent_message(svc, seq="subscribed")
    callback(sid, "undelivered", "30007")
    assert list(svc.redis.scan_iter(keys.sms_halt(INCIDENT, "*"))) == []
    (alert,) = halt_alerts(caplog)
    assert f"incident={INCIDENT} message=subscribed code=30007 message_sid={sid}" in alert


@pytest.mark.parametrize("code", [None, "30003", "30006", "21610"])
def test_other_outcomes_halt_nothing(svc, callback, caplog, code):
    sid = sent_message(svc)
    callback(sid, "delivered" if code is None else "undelivered", code)
    assert list(svc.redis.scan_iter(keys.sms_halt(INCIDENT, "*"))) == []
    assert halt_alerts(caplog) == []


def test_after_a_30007_the_rest_of_the_fan_out_is_not_sent(admin, svc, fake_twilio, callback,
                                                          run_jobs, clock, release_due_jobs):
    first, later = "+819012340001", "+819012340002"
    for phone in (first, later):
        add_customer(svc, phone)
    inc = declare(admin, scope={"numbers": [first]}, audience="affected")
    run_jobs()
    (message,) = fake_twilio.messages
    callback(message["sid"], "undelivered", "30007", to=first)
    assert svc.redis.get(keys.sms_halt(inc["id"], 0)) == "30007"

    # another batch of the same update (a retry, a late subscriber) is not sent…
    svc.sms_queue.enqueue("worker.sms.send_batch", inc["id"], 0, [later])
    run_jobs()
    # …and the sweep does not queue a recipient still without a message either
    svc.redis.sadd(keys.sms_audience(inc["id"], 0), later)
    clock.tick(15 * 60)
    release_due_jobs()
    run_jobs()

    assert fake_twilio.sent_to() == {first: 1}
    assert not svc.redis.exists(keys.sms_claim(inc["id"], 0, later))


def test_an_unknown_message_is_ignored_and_nothing_written(svc, callback, snapshot):
    sent_message(svc)
    before = snapshot()
    for status, code in (("delivered", None), ("failed", "21610"), ("undelivered", "30003"),
                         ("undelivered", "30005")):
        callback(new_message_sid(), status, code)
    assert snapshot() == before


@pytest.mark.parametrize(("what", "form"), [
    ("no MessageSid", {"MessageSid": None}),
    ("a garbled MessageSid", {"MessageSid": "SM../../x"}),
    ("a CallSid", {"MessageSid": "CA" + "0" * 32}),
    ("no status", {"MessageStatus": None}),
    ("an unknown status", {"MessageStatus": "exploded"}),
    ("a huge status", {"MessageStatus": "delivered" * 1000}),
])
def test_bad_callbacks_get_an_empty_answer_and_write_nothing(
        svc, twilio_post, what, form, snapshot):
    sid = sent_message(svc)
    fields = {"MessageSid": sid, "MessageStatus": "delivered", "To": PHONE, **form}
    fields = {k: v for k, v in fields.items() if v is not None}
    before = snapshot()

    response = twilio_post("/sms/status", **fields)

    assert list(parse_twiml(response)) == [], what
    assert snapshot() == before, what


@pytest.mark.parametrize("code", ["abc", "-1", "1234567", "0", ""])
def test_a_garbled_error_code_is_ignored_but_the_status_kept(svc, callback, code):
    sid = sent_message(svc)
    callback(sid, "undelivered", code)
    stored = record(svc, sid)
    assert stored["status"] == "undelivered"
    assert "error_code" not in stored
    assert counters(svc)["failed"] == 1


def test_wrong_method_is_refused(client, svc, snapshot):
    sent_message(svc)
    before = snapshot()
    assert client.get("/sms/status").status_code == 405
    assert client.delete("/sms/status").status_code == 405
    assert snapshot() == before


def test_unsigned_callbacks_get_403_and_change_nothing(client, svc, snapshot):
    sid = sent_message(svc)
    before = snapshot()
    form = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "21610", "To": PHONE}
    response = client.post("/sms/status", data=form, headers={
        "X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/sms/incoming", form)})
    assert response.status_code == 403
    assert snapshot() == before


def test_without_redis_the_callback_asks_twilio_to_retry(tmp_path, fake_twilio, content):
    config = make_config(f"unix://{tmp_path}/nothing-listens-here.sock", fake_twilio.url)
    services = build_services(config, **content)
    client = create_app(config, services=services).test_client()
    form = {"MessageSid": new_message_sid(), "MessageStatus": "delivered", "To": PHONE}
    try:
        response = client.post("/sms/status", data=form, headers={
            "X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/sms/status", form)})
        assert response.status_code == 503
        assert b"Traceback" not in response.get_data()
    finally:
        services.redis.close()
        services.rq_redis.close()
